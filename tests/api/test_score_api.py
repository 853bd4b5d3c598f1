"""Synchronous scoring over real HTTP: one lead, batches with per-record errors, model choice."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from junction.store.audit import AuditLog
from scoring.synthetic import TRUE_LOGIT
from tests.api.harness import ApiHarness, running_api, write_api_config


def _best(table: Mapping[str, float]) -> str:
    return max(table, key=lambda k: table[k])


def _worst(table: Mapping[str, float]) -> str:
    return min(table, key=lambda k: table[k])


# the strongest and weakest signals of the generator the model was trained on
STRONG: dict[str, Any] = {
    "external_id": "L-strong",
    "email": "ada@analytical-engines.example",
    "phone": "+442079460018",
    "title": "CEO",
    "lead_source": _best(TRUE_LOGIT.lead_source),
    "industry": _best(TRUE_LOGIT.industry),
    "country": _best(TRUE_LOGIT.country),
    "employees": 5000,
    "page_views": 40,
    "visits": 12,
    "email_opens": 9,
}
WEAK: dict[str, Any] = {
    "external_id": "L-weak",
    "email": "someone@gmail.com",
    "title": "Intern",
    "lead_source": _worst(TRUE_LOGIT.lead_source),
    "industry": _worst(TRUE_LOGIT.industry),
    "country": _worst(TRUE_LOGIT.country),
    "employees": 1,
}
# the same strong lead as a raw CSV export row, mapped by the built-in csv.lead spec
STRONG_ROW: dict[str, Any] = {
    "lead_id": "L-strong",
    "email": "  ADA@analytical-engines.example ",
    "phone": "+44 20 7946 0018",
    "title": "CEO",
    "lead_source": "Referral",
    "industry": "Software",
    "country": "United States",
    "employees": "5,000",
    "page_views": "40",
    "visits": "12",
    "email_opens": "9",
}
NEXT = {"A": "call_within_1_hour", "B": "call_today", "C": "nurture_email", "D": "no_action"}


def _score(api: ApiHarness, body: Any, **params: str) -> Any:
    with api.http() as h:
        return h.post("/api/v1/score-lead", json=body, params=params, headers=api.headers("ingest"))


def test_score_lead_answers_score_grade_factors_and_next_action(api_sqlite: ApiHarness) -> None:
    r = _score(api_sqlite, STRONG)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {
        "score",
        "grade",
        "top_factors",
        "next_action",
        "model",
        "model_version",
        "variant",
    }
    assert 0.0 <= body["score"] <= 1.0
    assert body["next_action"] == NEXT[body["grade"]]
    assert (body["model"], body["model_version"], body["variant"]) == (
        "lead-score",
        "1",
        "production",
    )
    assert 1 <= len(body["top_factors"]) <= 3
    assert all(set(f) == {"feature", "contribution"} for f in body["top_factors"])
    magnitudes = [abs(f["contribution"]) for f in body["top_factors"]]
    assert magnitudes == sorted(magnitudes, reverse=True)


def test_strong_signals_score_higher_than_weak_ones(api_sqlite: ApiHarness) -> None:
    strong = _score(api_sqlite, STRONG).json()
    weak = _score(api_sqlite, WEAK).json()
    assert strong["score"] > 0.75 > 0.25 > weak["score"]
    assert (strong["grade"], strong["next_action"]) == ("A", "call_within_1_hour")
    assert (weak["grade"], weak["next_action"]) == ("D", "no_action")
    top = strong["top_factors"][0]
    assert top["contribution"] > 0
    assert any(f["feature"] == "lead_source=referral" for f in strong["top_factors"])


def test_a_source_payload_is_mapped_then_scored_like_the_canonical_lead(
    api_sqlite: ApiHarness,
) -> None:
    canonical = _score(api_sqlite, {**STRONG, "country": "US"}).json()
    mapped = _score(api_sqlite, {"payload": STRONG_ROW, "mapping": "csv.lead"})
    assert mapped.status_code == 200, mapped.text
    assert mapped.json() == canonical


@pytest.mark.parametrize(
    "mapping", ["nope.lead", "/etc/passwd", "../../mappings/specs/csv/lead.yaml", "csv.contact"]
)
def test_only_built_in_lead_mappings_are_accepted(api_sqlite: ApiHarness, mapping: str) -> None:
    r = _score(api_sqlite, {"payload": STRONG_ROW, "mapping": mapping})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "unknown_mapping"


def test_invalid_bodies_are_problems_that_do_not_echo_values(api_sqlite: ApiHarness) -> None:
    secret_email = "private.person@example.org"
    cases: list[tuple[Any, str | None]] = [
        ({**STRONG, "email": secret_email, "country": "Narnia"}, "invalid_request"),
        ({**STRONG, "email": secret_email, "shoe_size": 44}, "invalid_request"),
        ([STRONG], "invalid_request"),
        ({"payload": "not an object", "mapping": "csv.lead"}, "invalid_request"),
        ({"payload": {**STRONG_ROW, "email": secret_email + "@@"}, "mapping": "csv.lead"}, None),
    ]
    for body, code in cases:
        r = _score(api_sqlite, body)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        if code is not None:
            assert r.json()["code"] == code
        assert "private.person" not in r.text
    with api_sqlite.http() as h:
        broken = h.post(
            "/api/v1/score-lead",
            content=b"{not json",
            headers={**api_sqlite.headers("ingest"), "content-type": "application/json"},
        )
    assert broken.status_code == 400  # malformed syntax, not an unprocessable record
    assert broken.headers["content-type"] == "application/problem+json"
    assert broken.json()["code"] == "invalid_json"
    assert broken.json()["errors"] == [{"loc": ["body"], "type": "json_invalid"}]


# maps to an int no float can hold: the schema's bound on head counts refuses it first
HUGE = {**STRONG_ROW, "employees": "1" + "0" * 400}


def test_a_number_no_float_holds_is_a_record_error_not_a_crash(api_sqlite: ApiHarness) -> None:
    r = _score(api_sqlite, {"payload": HUGE, "mapping": "csv.lead"})
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "schema_invalid"
    # JSON numbers beyond 64 bits are refused by the parser, as invalid JSON (400)
    too_big = _score(api_sqlite, {**STRONG, "employees": 10**400})
    assert too_big.status_code == 400
    assert too_big.json()["code"] == "invalid_json"


def test_batch_answers_each_record_in_order_with_per_record_errors(
    api_sqlite: ApiHarness,
) -> None:
    body = [
        STRONG,
        {**STRONG, "country": "Narnia"},
        {"payload": STRONG_ROW, "mapping": "csv.lead"},
        {"payload": {**STRONG_ROW, "lead_id": ""}, "mapping": "csv.lead"},
        {"payload": STRONG_ROW, "mapping": "no.such"},
        {"payload": HUGE, "mapping": "csv.lead"},
        WEAK,
    ]
    with api_sqlite.http() as h:
        r = h.post("/api/v1/score", json=body, headers=api_sqlite.headers("ingest"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["scored"], out["failed"]) == (3, 4)
    assert out["model"] == "lead-score"
    results = out["results"]
    assert [x["index"] for x in results] == list(range(len(body)))
    errors = {x["index"]: x["error"]["code"] for x in results if "error" in x}
    assert errors == {
        1: "invalid_request",
        3: "mapping_error",
        4: "unknown_mapping",
        5: "schema_invalid",
    }
    assert "country" in results[1]["error"]["message"]
    single = _score(api_sqlite, STRONG).json()
    for i in (0, 2):
        assert results[i]["score"] == pytest.approx(single["score"], abs=1e-12)
        assert results[i]["grade"] == single["grade"]
        assert results[i]["next_action"] == single["next_action"]
        assert [f["feature"] for f in results[i]["top_factors"]] == [
            f["feature"] for f in single["top_factors"]
        ]
    assert results[6]["grade"] == "D"


def test_batch_limits(api_sqlite: ApiHarness) -> None:
    with api_sqlite.http() as h:
        headers = api_sqlite.headers("ingest")
        too_many = h.post("/api/v1/score", json=[WEAK] * 1001, headers=headers)
        empty = h.post("/api/v1/score", json=[], headers=headers)
        not_a_list = h.post("/api/v1/score", json=STRONG, headers=headers)
        full = h.post("/api/v1/score", json=[WEAK] * 1000, headers=headers)
    assert [too_many.status_code, empty.status_code, not_a_list.status_code] == [422] * 3
    assert full.status_code == 200
    assert full.json()["scored"] == 1000


def test_scoring_needs_a_scoring_role(api_sqlite: ApiHarness) -> None:
    with api_sqlite.http() as h:
        anonymous = h.post("/api/v1/score-lead", json=STRONG)
        viewer = h.post("/api/v1/score-lead", json=STRONG, headers=api_sqlite.headers("viewer"))
        key = h.post(
            "/api/v1/score-lead", json=STRONG, headers={"X-API-Key": api_sqlite.api_key("ingest")}
        )
    assert anonymous.status_code == 401
    assert viewer.status_code == 403
    assert key.status_code == 200


def test_the_model_comes_from_the_pipeline_when_asked(tmp_path: Path, models_dir: Path) -> None:
    cfg = write_api_config(tmp_path, store=f"sqlite:///{tmp_path / 'j.db'}", models=models_dir)
    text = cfg.read_text(encoding="utf-8")
    # a second pipeline with stricter grade thresholds, and one that does not score
    extra = (
        "  strict:\n"
        "    source: {connector: csv_file, path: strict/*.csv, settle_seconds: 0}\n"
        "    mapping: csv.lead\n"
        "    scoring: {model: lead-score, thresholds: [0.99999, 0.99998, 0.99997]}\n"
        "  plain:\n"
        "    source: {connector: csv_file, path: plain/*.csv, settle_seconds: 0}\n"
        "    mapping: csv.lead\n"
    )
    cfg.write_text(text.replace("pipelines:\n", "pipelines:\n" + extra, 1), encoding="utf-8")
    with running_api(cfg) as api:
        default = _score(api, STRONG).json()
        leads = _score(api, STRONG, pipeline="leads").json()
        strict = _score(api, STRONG, pipeline="strict").json()
        unknown = _score(api, STRONG, pipeline="nope")
        plain = _score(api, STRONG, pipeline="plain")
    assert default == leads
    assert strict["score"] == pytest.approx(default["score"])
    assert (default["grade"], strict["grade"]) == ("A", "D")
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "pipeline_not_found"
    assert plain.status_code == 409
    assert plain.json()["code"] == "not_scored"


def test_every_score_is_an_audited_decision_without_personal_data(api: ApiHarness) -> None:
    with api.http() as h:
        h.post("/api/v1/score-lead", json=STRONG, headers=api.headers("ingest"))
        h.post(
            "/api/v1/score",
            json=[WEAK, {"email": "anon@example.org"}, {"country": "??"}],
            headers=api.headers("ingest"),
        )
    audit = AuditLog(api.ctx.store)
    deadline = time.monotonic() + 10
    while len(entries := audit.query(action="score")) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    by_target = {e.target: e for e in entries}
    assert len(entries) == 3
    assert set(by_target) >= {"lead:L-strong", "lead:L-weak"}
    anon = next(t for t in by_target if t not in ("lead:L-strong", "lead:L-weak"))
    assert "anon@example.org" not in anon
    assert by_target["lead:L-strong"].detail == {
        "model": "lead-score",
        "model_version": "1",
        "variant": "production",
        "grade": "A",
    }
    assert by_target["lead:L-weak"].detail["grade"] == "D"
