"""The dashboard over real HTTP (no browser): pages per role, sign-in, headers, RBAC and CSRF."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from junction.api.dashboard.cache import cached
from junction.store import queries
from junction.store import tables as t
from junction.store.clients import ClientStore
from junction.store.crypto_rows import enable_privacy
from tests.dashboard.conftest import Ui
from tests.dashboard.support import csrf_of, login, write_leads

PAGES = [
    "/ui/",
    "/ui/?hours=1",
    "/ui/pipelines",
    "/ui/pipelines/leads",
    "/ui/records",
    "/ui/records?pipeline=leads",
    "/ui/records?key=L-1001",
    "/ui/quarantine",
    "/ui/quarantine?pipeline=leads&stage=validate&code=rule_failed",
    "/ui/deliveries",
    "/ui/deliveries?status=pending",
    "/ui/models",
]


def _open_entries(ui: Ui) -> dict[str, int]:
    rows, _ = queries.list_quarantine(ui.api.ctx.store)
    return {r["error_code"]: r["id"] for r in rows}


def _check_headers(r: httpx.Response) -> None:
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert re.search(r"script-src 'self' 'nonce-[A-Za-z0-9_-]{16,}'", csp)
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "same-origin"
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("role", ["admin", "operator", "viewer"])
def test_every_page_renders_for_each_reading_role(ui: Ui, role: str) -> None:
    with login(ui.url, *ui.creds[role]) as http:
        for path in PAGES:
            r = http.get(path)
            assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:300]}"
            assert r.headers["content-type"].startswith("text/html")
            _check_headers(r)
            # the script is ours and carries the page's nonce
            nonce = re.search(r"'nonce-([^']+)'", r.headers["content-security-policy"])
            assert nonce
            assert f'nonce="{nonce.group(1)}"' in r.text
        record = next(iter(queries.list_records(ui.api.ctx.store, "leads")[0]))
        r = http.get(f"/ui/records/leads/{quote(record['id'], safe='')}")
        assert r.status_code == 200
        assert "webhook.sales" in r.text
        # personal fields are masked on the journey page, as in the API
        assert "ann.lee@example.com" not in r.text
        for qid in _open_entries(ui).values():
            assert http.get(f"/ui/quarantine/{qid}").status_code == 200
        r = http.get("/ui/models/lead-score/versions/1")
        assert r.status_code == 200


def test_every_page_renders_on_both_stores(ui_any: Ui) -> None:
    ui = ui_any
    with login(ui.url, *ui.creds["admin"]) as http:
        for path in [*PAGES, "/ui/models/lead-score/versions/1"]:
            r = http.get(path)
            assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:300]}"
        record = queries.list_records(ui.api.ctx.store, "leads")[0][0]
        r = http.get(f"/ui/records/leads/{quote(record['id'], safe='')}")
        assert r.status_code == 200
        for qid in _open_entries(ui).values():
            page = http.get(f"/ui/quarantine/{qid}")
            assert page.status_code == 200
            token = csrf_of(page.text)
        replayed = http.post(f"/ui/quarantine/{qid}/replay", data={"csrf": token})
        assert replayed.status_code == 303


def test_overview_draws_the_flow_as_inline_svg(ui: Ui) -> None:
    with login(ui.url, *ui.creds["viewer"]) as http:
        page = http.get("/ui/").text
    assert page.count("<svg") == 5
    assert "Records per stage" in page
    assert "received (5)" not in page  # three stored, not five read
    assert "received (3)" in page
    assert "quarantined (2)" in page
    assert "Pending deliveries per channel" in page


def test_assets_are_served_by_the_app_and_nothing_comes_from_elsewhere(ui: Ui) -> None:
    with httpx.Client(base_url=ui.url) as http:
        css = http.get("/ui/static/app.css")
        js = http.get("/ui/static/app.js")
        assert http.get("/ui/static/other.js").status_code == 404
    assert css.status_code == js.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert js.headers["content-type"].startswith("text/javascript")
    with login(ui.url, *ui.creds["viewer"]) as http:
        page = http.get("/ui/").text
    assert not re.search(r"""(src|href)=["']https?://""", page)


def test_a_browser_without_a_session_is_sent_to_the_login_form(ui: Ui) -> None:
    with httpx.Client(base_url=ui.url, headers={"Accept": "text/html"}) as http:
        r = http.get("/ui/quarantine?code=rule_failed")
        assert r.status_code == 303
        assert r.headers["location"] == "/ui/login?next=%2Fui%2Fquarantine%3Fcode%3Drule_failed"
        _check_headers(r)
        r = http.get("/ui/login")
        assert r.status_code == 200
        _check_headers(r)
        # an expired session posting a form signs in again to the overview, not to the form
        r = http.post("/ui/quarantine/1/replay", data={"csrf": "x"})
        assert r.status_code == 303
        assert r.headers["location"] == "/ui/login?next=%2Fui%2F"


def test_a_script_without_credentials_gets_the_apis_401(ui: Ui) -> None:
    with httpx.Client(base_url=ui.url) as http:
        r = http.get("/ui/pipelines")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"]


def test_sign_in_sets_a_strict_httponly_cookie_and_goes_to_next(ui: Ui) -> None:
    client_id, secret = ui.creds["viewer"]
    with httpx.Client(base_url=ui.url, headers={"Accept": "text/html"}) as http:
        form = http.get("/ui/login?next=/ui/deliveries")
        token = re.search(r'name="token" value="([^"]+)"', form.text)
        assert token
        r = http.post(
            "/ui/login",
            data={
                "client_id": client_id,
                "secret": secret,
                "token": token.group(1),
                "next": "/ui/deliveries",
            },
        )
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/deliveries"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("junction_ui="))
    attrs = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/ui"} <= attrs


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/ui", "/api/v1/x"])
def test_sign_in_never_redirects_off_the_dashboard(ui: Ui, target: str) -> None:
    client_id, secret = ui.creds["viewer"]
    with httpx.Client(base_url=ui.url) as http:
        token = re.search(r'name="token" value="([^"]+)"', http.get("/ui/login").text)
        assert token
        r = http.post(
            "/ui/login",
            data={
                "client_id": client_id,
                "secret": secret,
                "token": token.group(1),
                "next": target,
            },
        )
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/"


def test_sign_in_refuses_bad_secrets_missing_tokens_and_roles_without_pages(ui: Ui) -> None:
    client_id, secret = ui.creds["viewer"]
    with httpx.Client(base_url=ui.url) as http:
        token = re.search(r'name="token" value="([^"]+)"', http.get("/ui/login").text)
        assert token
        bad = http.post(
            "/ui/login", data={"client_id": client_id, "secret": "nope", "token": token.group(1)}
        )
        assert bad.status_code == 401
        assert "junction_ui=" not in bad.headers.get("set-cookie", "")
        no_token = http.post("/ui/login", data={"client_id": client_id, "secret": secret})
        assert no_token.status_code == 403
        token = re.search(r'name="token" value="([^"]+)"', http.get("/ui/login").text)
        assert token
        ingest_id, ingest_secret = ui.creds["ingest"]
        ingest = http.post(
            "/ui/login",
            data={"client_id": ingest_id, "secret": ingest_secret, "token": token.group(1)},
        )
        assert ingest.status_code == 403
        assert "no dashboard role" in ingest.text


def test_an_api_key_signs_in_too(ui: Ui) -> None:
    _, key = ClientStore(ui.api.ctx.store).create("ui-key", ["viewer"], kind="apikey")
    with login(ui.url, "", key) as http:
        assert http.get("/ui/pipelines").status_code == 200


def test_a_tampered_or_revoked_session_is_signed_out(ui: Ui) -> None:
    client_id, secret = ui.creds["operator"]
    with login(ui.url, client_id, secret) as http:
        value = http.cookies["junction_ui"]
        body, mac = value.split(".")
        forged = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac
        with httpx.Client(
            base_url=ui.url, headers={"Accept": "text/html"}, cookies={"junction_ui": forged}
        ) as other:
            assert other.get("/ui/pipelines").status_code == 303
        assert http.get("/ui/pipelines").status_code == 200
        ClientStore(ui.api.ctx.store).revoke(client_id)
        r = http.get("/ui/pipelines")
        assert r.status_code == 303
        assert r.headers["location"].startswith("/ui/login")


def test_forms_without_the_csrf_token_are_refused(ui: Ui) -> None:
    qid = _open_entries(ui)["rule_failed"]
    with login(ui.url, *ui.creds["operator"]) as http:
        token = csrf_of(http.get(f"/ui/quarantine/{qid}").text)
        assert http.post(f"/ui/quarantine/{qid}/replay").status_code == 403
        assert http.post(f"/ui/quarantine/{qid}/replay", data={"csrf": "x" * 43}).status_code == 403
        cross = http.post(
            f"/ui/quarantine/{qid}/replay",
            data={"csrf": token},
            headers={"Origin": "https://evil.example"},
        )
        assert cross.status_code == 403
        assert "Form expired" in cross.text
        opaque = http.post(
            f"/ui/quarantine/{qid}/replay", data={"csrf": token}, headers={"Origin": "null"}
        )
        assert opaque.status_code == 403
        # another user's token does not pass either
        with login(ui.url, *ui.creds["admin"]) as admin:
            other = csrf_of(admin.get("/ui/").text)
        assert http.post(f"/ui/quarantine/{qid}/replay", data={"csrf": other}).status_code == 403
        assert _open_entries(ui)["rule_failed"] == qid  # still open: nothing happened
        ok = http.post(f"/ui/quarantine/{qid}/replay", data={"csrf": token})
        assert ok.status_code == 303
        page = http.get(ok.headers["location"]).text
        assert "Replay: record failed again" in page  # the row still has no email


def test_a_viewer_sees_no_repair_forms_and_the_server_refuses_them(ui: Ui) -> None:
    entries = _open_entries(ui)
    qid = entries["rule_failed"]
    with login(ui.url, *ui.creds["viewer"]) as http:
        page = http.get(f"/ui/quarantine/{qid}").text
        assert "/replay" not in page
        assert "/discard" not in page
        assert "Run now" not in http.get("/ui/pipelines").text
        assert "/disable" not in http.get("/ui/deliveries").text
        token = csrf_of(page)
        for path, data in [
            (f"/ui/quarantine/{qid}/replay", {}),
            ("/ui/quarantine/replay", {"ids": str(qid)}),
            (f"/ui/quarantine/{qid}/discard", {"reason": "spam"}),
            ("/ui/pipelines/leads/run", {}),
            ("/ui/pipelines/leads/pause", {}),
            ("/ui/channels/webhook.sales/disable", {"reason": "down"}),
            ("/ui/models/lead-score/rollback", {}),
        ]:
            r = http.post(path, data={"csrf": token, **data})
            assert r.status_code == 403, path
            assert r.headers["content-type"].startswith("text/html")
    assert _open_entries(ui) == entries


def test_an_operator_replays_but_only_an_admin_discards(ui: Ui) -> None:
    qid = _open_entries(ui)["mapping_error"]
    with login(ui.url, *ui.creds["operator"]) as http:
        page = http.get(f"/ui/quarantine/{qid}").text
        assert f"/ui/quarantine/{qid}/replay" in page
        assert "/discard" not in page
        token = csrf_of(page)
        r = http.post(f"/ui/quarantine/{qid}/discard", data={"csrf": token, "reason": "junk"})
        assert r.status_code == 403
    with login(ui.url, *ui.creds["admin"]) as http:
        token = csrf_of(http.get(f"/ui/quarantine/{qid}").text)
        empty = http.post(f"/ui/quarantine/{qid}/discard", data={"csrf": token, "reason": " "})
        assert empty.status_code == 422
        r = http.post(f"/ui/quarantine/{qid}/discard", data={"csrf": token, "reason": "test row"})
        assert r.status_code == 303
        assert "Entry discarded." in http.get(r.headers["location"]).text
    entry = ui.api.ctx.store.get_quarantine(qid)
    assert entry is not None
    assert entry["status"] == "discarded"


def test_the_quarantine_groups_by_error_and_masks_the_payload(ui: Ui) -> None:
    qid = _open_entries(ui)["mapping_error"]
    with login(ui.url, *ui.creds["admin"]) as http:
        page = http.get("/ui/quarantine").text
        entry = http.get(f"/ui/quarantine/{qid}").text
    assert "mapping_error" in page
    assert "rule_failed" in page
    # the stored detail names the spec line, the field and the fix
    assert "mappings/specs/csv/lead.yaml:11: field `external_id`: required value is missing" in page
    assert "— fix: fill `external_id` in the source" in entry
    assert "no.key@example.com" not in entry
    assert "&lt;masked str len=18&gt;" in entry


def test_bulk_replay_of_a_group(ui: Ui) -> None:
    with login(ui.url, *ui.creds["operator"]) as http:
        token = csrf_of(http.get("/ui/quarantine").text)
        r = http.post(
            "/ui/quarantine/replay",
            data={"csrf": token, "pipeline": "leads", "stage": "validate", "code": "rule_failed"},
        )
        assert r.status_code == 303
        page = http.get(r.headers["location"]).text
    assert "Replayed 1: 1: record failed again" in page
    rows, _ = queries.list_quarantine(ui.api.ctx.store, status="replayed")
    assert [r["error_code"] for r in rows] == ["rule_failed"]


def test_records_are_found_by_source_key_and_email_search_says_what_is_missing(ui: Ui) -> None:
    with login(ui.url, *ui.creds["viewer"]) as http:
        found = http.get("/ui/records", params={"key": "L-1002", "pipeline": "leads"}).text
        none = http.get("/ui/records", params={"key": "L-9999"}).text
        email = http.get("/ui/records", params={"email": "bo.chen@example.com"}).text
    assert "1 record with source key" in found
    assert "/ui/records/leads/" in found
    assert "No record matches." in none
    assert "Search by email needs encryption at rest" in email


def test_with_encryption_at_rest_records_are_found_by_email_pseudonym(
    ui: Ui, tmp_path: Path
) -> None:
    store = ui.api.ctx.store
    enable_privacy(store, kek=f"file:{tmp_path / 'kek'}")
    write_leads(tmp_path / "inbox" / "more.csv", [("L-3001", "Fay.Hill@Example.com", "01.12.2026")])
    assert ui.api.ctx.hub.runner("leads").run_once().stored == 1
    with login(ui.url, *ui.creds["viewer"]) as http:
        found = http.get("/ui/records", params={"email": " fay.hill@example.COM "}).text
        other = http.get("/ui/records", params={"email": "nobody@example.com"}).text
    assert "1 record of that person (matched by keyed pseudonym)" in found
    assert "L-3001" in found
    assert "No record matches." in other


def test_with_encryption_at_rest_a_records_journey_renders(ui: Ui, tmp_path: Path) -> None:
    enable_privacy(ui.api.ctx.store, kek=f"file:{tmp_path / 'kek'}")
    write_leads(tmp_path / "inbox" / "more.csv", [("L-3001", "fay.hill@example.com", "01.12.2026")])
    assert ui.api.ctx.hub.runner("leads").run_once().stored == 1
    with login(ui.url, *ui.creds["viewer"]) as http:
        found = http.get("/ui/records", params={"key": "L-3001"}).text
        link = re.search(r'href="(/ui/records/leads/[^"]+)"', found)
        assert link
        journey = http.get(link.group(1))
    assert journey.status_code == 200
    assert "fay.hill" not in journey.text.lower()


def test_an_operator_runs_pauses_and_resumes_a_pipeline(ui: Ui) -> None:
    with login(ui.url, *ui.creds["operator"]) as http:
        token = csrf_of(http.get("/ui/pipelines/leads").text)
        r = http.post("/ui/pipelines/leads/run", data={"csrf": token})
        assert r.status_code == 303
        assert "finished: 0 read" in http.get(r.headers["location"]).text
        http.post("/ui/pipelines/leads/pause", data={"csrf": token})
        assert queries.is_paused(ui.api.ctx.store, "leads")
        assert "/ui/pipelines/leads/resume" in http.get("/ui/pipelines/leads").text  # not cached
        paused = http.post("/ui/pipelines/leads/run", data={"csrf": token})
        assert paused.status_code == 409
        assert "resume the pipeline first" in paused.text
        http.post("/ui/pipelines/leads/resume", data={"csrf": token})
        assert not queries.is_paused(ui.api.ctx.store, "leads")


def test_an_operator_disables_and_enables_a_channel(ui: Ui) -> None:
    with login(ui.url, *ui.creds["operator"]) as http:
        token = csrf_of(http.get("/ui/deliveries").text)
        r = http.post(
            "/ui/channels/webhook.sales/disable", data={"csrf": token, "reason": "maintenance"}
        )
        assert r.status_code == 303
        page = http.get("/ui/deliveries").text
        assert "maintenance" in page
        assert "/ui/channels/webhook.sales/enable" in page
        assert queries.endpoint_states(ui.api.ctx.store)["webhook.sales"]["disabled"]
        http.post("/ui/channels/webhook.sales/enable", data={"csrf": token})
        assert not queries.endpoint_states(ui.api.ctx.store)["webhook.sales"]["disabled"]
        assert http.post("/ui/channels/nope/enable", data={"csrf": token}).status_code == 404


def test_actions_from_the_dashboard_are_audited_as_the_signed_in_client(ui: Ui) -> None:
    client_id, secret = ui.creds["operator"]
    with login(ui.url, client_id, secret) as http:
        token = csrf_of(http.get("/ui/pipelines/leads").text)
        http.post("/ui/pipelines/leads/pause", data={"csrf": token})
    with ui.api.http() as api:
        r = api.get("/api/v1/audit", headers=ui.api.headers("admin"), params={"limit": 500})
    actions = {(e["actor"], e["action"]) for e in r.json()["items"]}
    assert (client_id, "dashboard.login") in actions
    assert (client_id, "pipeline.pause") in actions


def test_models_show_scores_variants_and_admin_only_stage_changes(ui: Ui) -> None:
    with login(ui.url, *ui.creds["operator"]) as http:
        page = http.get("/ui/models").text
        assert "Score distribution (all versions)" in page
        assert "No drift check yet" in page
        assert "/promote" not in page
        assert "/rollback" not in page
        token = csrf_of(page)
        assert http.post("/ui/models/lead-score/rollback", data={"csrf": token}).status_code == 403
    with login(ui.url, *ui.creds["admin"]) as http:
        page = http.get("/ui/models").text
        assert "/ui/models/lead-score/rollback" in page
        # the three stored leads were scored by the one version, in one variant
        assert re.search(r"<td>[a-z_]+</td><td>1</td><td class=\"num\">3</td>", page)
        refused = http.post("/ui/models/lead-score/rollback", data={"csrf": csrf_of(page)})
    assert refused.status_code == 409  # one version: nothing to roll back to
    assert "Conflict" in refused.text


def test_an_operator_replays_a_dead_delivery(ui: Ui) -> None:
    rows, _ = queries.list_deliveries(ui.api.ctx.store)
    target = rows[0]["id"]
    with ui.api.ctx.store.begin() as conn:
        conn.execute(t.deliveries.update().where(t.deliveries.c.id == target).values(status="dead"))
    with login(ui.url, *ui.creds["operator"]) as http:
        page = http.get("/ui/delivery", params={"id": target}).text
        assert "Replay delivery" in page
        r = http.post("/ui/delivery/replay", data={"csrf": csrf_of(page), "id": target})
        assert r.status_code == 303
        assert "Re-queued (was dead)." in http.get(r.headers["location"]).text
    assert queries.delivery_detail(ui.api.ctx.store, target)["status"] == "pending"


def test_aggregates_are_cached_for_their_ttl_only(ui: Ui) -> None:
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    ctx = ui.api.ctx
    assert cached(ctx, "k", compute, ttl=3600) == 1
    assert cached(ctx, "k", compute, ttl=3600) == 1
    assert cached(ctx, "k", compute, ttl=0) == 2
    assert cached(ctx, "other", compute, ttl=3600) == 3


def test_unknown_pages_are_404_pages_with_the_same_headers(ui: Ui) -> None:
    with login(ui.url, *ui.creds["viewer"]) as http:
        r = http.get("/ui/no/such/page")
    assert r.status_code == 404
    assert "Not found" in r.text
    _check_headers(r)


def test_sign_out_ends_the_session(ui: Ui) -> None:
    with login(ui.url, *ui.creds["viewer"]) as http:
        token = csrf_of(http.get("/ui/").text)
        r = http.post("/ui/logout", data={"csrf": token})
        assert r.status_code == 303
        assert r.headers["location"] == "/ui/login"
        assert "junction_ui" not in http.cookies
        assert http.get("/ui/").status_code == 303


def test_bulk_replay_of_ticked_entries(ui: Ui) -> None:
    ids = sorted(_open_entries(ui).values())
    with login(ui.url, *ui.creds["operator"]) as http:
        token = csrf_of(http.get("/ui/quarantine").text)
        r = http.post("/ui/quarantine/replay", data={"csrf": token, "ids": [str(i) for i in ids]})
        assert r.status_code == 303
        page = http.get(r.headers["location"]).text
    assert "Replayed 2: 2: record failed again" in page
    for qid in ids:
        entry = ui.api.ctx.store.get_quarantine(qid)
        assert entry is not None
        assert entry["status"] == "replayed"


def test_a_failed_sign_in_is_audited_without_what_was_typed(ui: Ui) -> None:
    with httpx.Client(base_url=ui.url) as http:
        token = re.search(r'name="token" value="([^"]+)"', http.get("/ui/login").text)
        assert token
        data = {"client_id": "ann.lee@example.com", "secret": "x", "token": token.group(1)}
        assert http.post("/ui/login", data=data).status_code == 401
    with ui.api.http() as api:
        r = api.get("/api/v1/audit", headers=ui.api.headers("admin"), params={"limit": 500})
    failed = [e for e in r.json()["items"] if e["action"] == "dashboard.login_failed"]
    assert [e["target"] for e in failed] == ["-"]
    assert "ann.lee" not in r.text


def test_stored_text_is_escaped_not_run(ui: Ui) -> None:
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    with ui.api.ctx.store.begin() as conn:
        conn.execute(
            t.quarantine.insert().values(
                pipeline="leads",
                stage="normalize",
                record_key=f"leads:{evil}",
                error_type="MappingError",
                error_code="mapping_error",
                message=evil,
                context='{"field": "<b>x</b>"}',
                provenance="{}",
                status="open",
                created_at=1.0,
            )
        )
    with login(ui.url, *ui.creds["viewer"]) as http:
        listing = http.get("/ui/quarantine").text
        qid = max(_open_entries_all(ui))
        entry = http.get(f"/ui/quarantine/{qid}").text
    for page in (listing, entry):
        assert "<script>alert(1)" not in page
        assert "<img src=x" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def _open_entries_all(ui: Ui) -> list[int]:
    rows, _ = queries.list_quarantine(ui.api.ctx.store, limit=500)
    return [r["id"] for r in rows]
