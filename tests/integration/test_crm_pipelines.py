"""CRM round trips: poll a CRM (its local fake, through the real SDK), score, write the score back.

Each test runs the real command (``junction run`` through Typer, ``junction serve`` as a process)
against a fake that speaks the vendor's wire format, and checks the fake's records afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from junction.cli.main import app
from tests.fakes.hubspot import PRIVATE_TOKEN, HubSpotFake
from tests.fakes.server import serve_app
from tests.integration.helpers import rows_of, scalar
from tests.serve.helpers import Serve, wait_for

T0 = 1_772_355_600_000  # 2026-03-01T09:00:00Z
SCORE_FIELDS = ["junction_score", "junction_grade", "junction_factors"]

HUBSPOT = """\
store: "{store}"
models_dir: {models}
pipelines:
  hubspot-leads:
    source:
      connector: hubspot
      streams: [contacts]
      base_url: "{base}"
      access_token: "{token}"
      objects: [contacts]
      properties:
        contacts: [email, firstname, lastname, company, jobtitle, industry, country,
                   hs_analytics_num_page_views, hs_analytics_num_visits, numemployees]
{schedule}    mapping: hubspot.lead
    scoring: {{model: lead-score}}
    routes:
      - otherwise: [crm.hubspot-score]
channels:
  crm.hubspot-score:
    system: hubspot
    connection: {{base_url: "{base}", access_token: "{token}", timeout_s: 5}}
    object: contacts
    match: id
    fields:
      score.value_pct: junction_score
      score.grade: junction_grade
      score.top_factors: junction_factors
delivery:
  schedule_s: [0.2, 0.5, 1]
api:
  port: 0
  signing_key: "test-signing-key-0123456789abcdefghijklmnop"
"""


@pytest.fixture
def hubspot(tmp_path: Path) -> Iterator[tuple[HubSpotFake, str]]:
    fake = HubSpotFake(custom_properties={"contacts": SCORE_FIELDS})
    for i in range(30):
        fake.put(
            "contacts",
            updated=T0 + i * 1000,
            email=f"lead{i}@example.com",
            firstname=f"Lead{i}",
            company="Acme",
            industry="software" if i % 2 else "retail",
            hs_analytics_num_page_views=str(i * 3),
            hs_analytics_num_visits=str(i),
        )
    with serve_app(fake.app) as base:
        yield fake, base


def _config(root: Path, store: str, models: Path, base: str, schedule: str | None = None) -> Path:
    cfg = root / "junction.yaml"
    cfg.write_text(
        HUBSPOT.format(
            store=store,
            models=models,
            base=base,
            token=PRIVATE_TOKEN,
            schedule=f'      schedule: "{schedule}"\n' if schedule else "",
        )
    )
    return cfg


def _scored(fake: HubSpotFake) -> dict[str, dict]:
    return {
        rid: r.properties
        for rid, r in fake.objects["contacts"].items()
        if r.properties.get("junction_score") is not None
    }


def _run_once(cfg: Path) -> str:
    result = CliRunner().invoke(
        app, ["run", str(cfg), "--once", "--drain-wait", "2"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_hubspot_poll_score_and_write_back_through_junction_run(
    tmp_path: Path, store_url: str, models_dir: Path, hubspot
) -> None:
    fake, base = hubspot
    cfg = _config(tmp_path, store_url, models_dir, base)
    out = _run_once(cfg)
    assert "hubspot-leads: read 30, stored 30" in out
    assert "30 delivered" in out
    scored = _scored(fake)
    assert len(scored) == 30
    grades = {p["junction_grade"] for p in scored.values()}
    assert grades <= {"A", "B", "C", "D"}
    assert all(0 <= int(p["junction_score"]) <= 100 for p in scored.values())
    assert all(p["junction_factors"] for p in scored.values())
    stored = dict(
        rows_of(
            store_url, "SELECT source_key, value FROM scores s JOIN records r ON r.id = s.record_id"
        )
    )
    for rid, props in scored.items():
        assert int(props["junction_score"]) == round(stored[rid] * 100)
    # batched: 30 writes in at most a few calls of at most 100
    updates = [b for kind, b in fake.batch_bodies if kind == "update"]
    assert sum(len(b["inputs"]) for b in updates) == 30
    assert len(updates) <= 3

    # the write-back bumped every record's modification time: the next poll reads 30 new
    # versions, which change nothing routed, so nothing is written again (no echo loop)
    again = _run_once(cfg)
    assert "hubspot-leads: read 30, stored 30" in again
    assert scalar(store_url, "SELECT count(*) FROM deliveries") == 30
    assert len([b for kind, b in fake.batch_bodies if kind == "update"]) == len(updates)

    # a real change in the CRM is scored and written back again
    hot = next(iter(scored))
    fake.touch("contacts", hot, hs_analytics_num_page_views="400", hs_analytics_num_visits="90")
    third = _run_once(cfg)
    assert "hubspot-leads: read 1, stored 1" in third
    assert scalar(store_url, "SELECT count(*) FROM deliveries") == 31
    (latest,) = rows_of(
        store_url,
        "SELECT s.value FROM scores s JOIN record_heads h ON h.record_id = s.record_id "
        f"WHERE h.source_key = '{hot}'",
    )
    assert int(fake.objects["contacts"][hot].properties["junction_score"]) == round(latest[0] * 100)
    last = [b for kind, b in fake.batch_bodies if kind == "update"][-1]
    assert [i["id"] for i in last["inputs"]] == [hot]


def test_hubspot_write_back_under_junction_serve(
    tmp_path: Path, store_url: str, models_dir: Path, hubspot
) -> None:
    fake, base = hubspot
    cfg = _config(tmp_path, store_url, models_dir, base, schedule="* * * * * */1")
    with Serve(cfg) as serve:
        serve.wait_ready()
        wait_for(lambda: len(_scored(fake)) == 30, 30, "every contact scored in HubSpot")
        fake.faults.fail_next("rate_limit", 1, path_contains="/batch/update")
        new = fake.put("contacts", updated=fake.now_ms(), email="late@example.com", company="X")
        wait_for(lambda: new in _scored(fake), 30, "the new contact written back after a 429")
        assert serve.stop() == 0
    assert fake.faults.served == [("rate_limit", "/crm/v3/objects/contacts/batch/update")]
    assert scalar(store_url, "SELECT count(*) FROM deliveries WHERE status = 'delivered'") == 31
    assert scalar(store_url, "SELECT count(*) FROM attempts WHERE outcome = 'retry'") >= 1


SALESFORCE = """\
store: "{store}"
models_dir: {models}
pipelines:
  sf-leads:
    source:
{options}
{schedule}    mapping: salesforce.lead
    workers: 0
    scoring: {{model: lead-score}}
    routes:
      - otherwise: [crm.sf-score]
channels:
  crm.sf-score:
    system: salesforce
    connection:
{connection}
    object: Lead
    match: id
    fields: {{score.value_pct: Score__c}}
delivery:
  schedule_s: [0.2, 0.5, 1]
api:
  port: 0
  signing_key: "test-signing-key-0123456789abcdefghijklmnop"
"""


@pytest.fixture
def salesforce() -> Iterator[tuple[object, str]]:
    from datetime import UTC, datetime, timedelta

    from tests.fakes.salesforce import FakeOrg
    from tests.fakes.salesforce_data import lead_fields

    org = FakeOrg()
    t0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    for i in range(25):
        org.insert("Lead", lead_fields(i), modstamp=t0 + timedelta(minutes=i))
    with serve_app(org.app()) as base:
        yield org, base


def _sf_config(root: Path, store: str, models: Path, org, base: str, schedule: str = "") -> Path:
    import orjson

    from tests.fakes.salesforce import options_for

    auth = options_for(org, base, "client_credentials")
    source = {"connector": "salesforce", "streams": ["Lead"], "page_size": 200, **auth}
    cfg = root / "junction.yaml"
    cfg.write_text(
        SALESFORCE.format(
            store=store,
            models=models,
            options="\n".join(f"      {k}: {orjson.dumps(v).decode()}" for k, v in source.items()),
            connection="\n".join(f"      {k}: {orjson.dumps(v).decode()}" for k, v in auth.items()),
            schedule=f'      schedule: "{schedule}"\n' if schedule else "",
        )
    )
    return cfg


def _sf_scored(org) -> dict[str, float]:
    return {
        rid: rec["Score__c"]
        for rid, rec in org.records["Lead"].items()
        if rec.get("Score__c") is not None
    }


def test_salesforce_poll_score_and_write_back_through_junction_run(
    tmp_path: Path, store_url: str, models_dir: Path, salesforce
) -> None:
    org, base = salesforce
    cfg = _sf_config(tmp_path, store_url, models_dir, org, base)
    out = _run_once(cfg)
    assert "sf-leads: read 25, stored 25" in out
    scored = _sf_scored(org)
    assert len(scored) == 25
    stored = dict(
        rows_of(
            store_url,
            "SELECT r.source_key, s.value FROM scores s JOIN records r ON r.id = s.record_id",
        )
    )
    assert all(scored[rid] == round(stored[rid] * 100) for rid in scored)
    writes = [p for m, p in org.requests if m == "PATCH" and "composite/sobjects" in p]
    assert 1 <= len(writes) <= 2  # 25 records in one or two collections calls

    # the session is revoked (expired); the next poll logs in again and goes on; our own
    # write-back bumped every SystemModstamp, so the 25 new versions route nothing
    org.revoke_tokens()
    again = _run_once(cfg)
    assert "sf-leads: read 25, stored 25" in again
    assert scalar(store_url, "SELECT count(*) FROM deliveries") == 25
    assert org.logins.count("client_credentials") >= 3  # run, write-back, run again

    # a lead changes in Salesforce: scored again and written back
    rid = next(iter(scored))
    org.update("Lead", rid, {"NumberOfEmployees": 4000, "Title": "VP Sales"})
    third = _run_once(cfg)
    assert "sf-leads: read 1, stored 1" in third
    assert scalar(store_url, "SELECT count(*) FROM deliveries") == 26


def test_salesforce_poll_backs_off_on_errors_under_junction_serve(
    tmp_path: Path, store_url: str, models_dir: Path, salesforce
) -> None:
    org, base = salesforce
    cfg = _sf_config(tmp_path, store_url, models_dir, org, base, schedule="* * * * * */1")
    # the first poll meets a 503 on its query; the scheduler retries later
    org.faults.fail_next("server_error", 1, path_contains="/query")
    with Serve(cfg) as serve:
        serve.wait_ready()
        failed = serve.wait_event("run failed", timeout=20)
        assert failed["code"] in ("unavailable", "retryable")
        wait_for(lambda: len(_sf_scored(org)) == 25, 40, "every lead scored in Salesforce")
        assert serve.stop() == 0
    assert scalar(store_url, "SELECT count(*) FROM records") >= 25
    assert scalar(store_url, "SELECT count(*) FROM deliveries WHERE status = 'delivered'") == 25
