"""A/B tests and outcomes through a real pipeline and store (SQLite and PostgreSQL).

A polled CRM stream (the ``fake`` connector) is scored by production (version 1) and a
challenger (version 2, another training seed) at a 50 % share.  A later poll returns the leads
again with their status (converted or disqualified): the pipeline's outcome rules record labels,
and ``junction model ab-report`` compares the variants.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from junction.api.app import API_PREFIX, create_app
from junction.api.context import ApiContext
from junction.cli.model import app as model_cli
from junction.pipeline.config import load_config
from junction.pipeline.hub import Hub
from junction.store.outcomes import scored_outcomes, training_rows
from junction.store.repo import Store
from scoring.ab import assign
from scoring.registry import ensure_default_model, save_model
from scoring.synthetic import generate_leads, write_lead_csv
from scoring.train import train_lead_model
from tests.api.harness import ApiHarness, write_api_config
from tests.contract.fixtures.fake import write_source
from tests.fakes.server import serve_app
from tests.integration.helpers import rows_of, run_once, scalar, write_config

SALT = "exp-1"
MAPPING = """\
id: test.fake_lead_status
entity: lead
source_key: id
fields:
  external_id: {from: id, required: true}
  email: {from: email, transforms: [trim, lower, email]}
  company: {from: company}
  page_views: {from: views, transforms: [int]}
  status: {from: status}
  updated_at: {from: updated_at, transforms: [{datetime: {tz: UTC}}]}
"""
CONFIG = """\
store: "{store}"
models_dir: {models}
pipelines:
  crm:
    source: {{connector: fake, path: source.jsonl, batch_size: 50, streams: [leads]}}
    mapping: lead_status.yaml
    scoring:
      model: lead-score
      version: "1"
      challenger: {{version: "2", share: 0.5, salt: {salt}}}
      outcome:
        kind: converted
        positive_when: 'record.status == "converted"'
        negative_when: 'lead.status == "disqualified"'
    routes:
      - otherwise: [webhook.sales]
channels:
  webhook.sales:
    url: "http://127.0.0.1:9/hook"
    secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"""
N = 400


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def ab_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with version 1 (the default model) and version 2 (another seed)."""
    root = tmp_path_factory.mktemp("ab-models")
    ensure_default_model(root, name="lead-score")
    leads = generate_leads(3000, 8)
    trained = train_lead_model(leads, [lead["converted"] for lead in leads], seed=8)
    save_model(trained, root, "lead-score", training_data={"seed": 8}, version="2")
    return root


def _views(i: int) -> int:
    return (i * 37) % 61


def _converted(i: int) -> bool:
    # more page views, more conversions (with noise): both models rank better than chance
    return _views(i) + random.Random(i).gauss(0, 15) > 30


def _lead(i: int, version: str, status: str) -> dict[str, Any]:
    return {
        "stream": "leads",
        "id": f"00Q{i:04d}",
        "updated_at": version,
        "email": f"lead{i}@example.com",
        "company": f"Acme {i % 7}",
        "views": _views(i),
        "status": status,
    }


@pytest.fixture
def crm(tmp_path: Path, store_url: str, ab_models: Path) -> tuple[Path, Path, str]:
    (tmp_path / "lead_status.yaml").write_text(MAPPING, encoding="utf-8")
    cfg = tmp_path / "junction.yaml"
    cfg.write_text(CONFIG.format(store=store_url, models=ab_models, salt=SALT))
    return tmp_path, cfg, store_url


def _first_poll(root: Path) -> None:
    write_source(root / "source.jsonl", [_lead(i, "2026-12-01T10:00:00Z", "new") for i in range(N)])


def _second_poll(root: Path) -> None:
    write_source(
        root / "source.jsonl",
        [
            _lead(i, "2026-12-01T12:00:00Z", "converted" if _converted(i) else "disqualified")
            for i in range(N)
        ],
    )


def test_every_score_has_its_variant_and_outcomes_feed_the_report(crm) -> None:
    root, cfg, url = crm
    _first_poll(root)
    first = run_once(cfg)
    assert (first.read, first.stored) == (N, N)
    rows = rows_of(url, "SELECT record_id, variant, model_version FROM scores ORDER BY record_id")
    assert len(rows) == N
    # each lead's variant is the stable hash of its lead id, with that variant's model version
    for rid, variant, version in rows:
        lead = rid.split("@")[0]
        assert variant == assign(lead, 0.5, SALT)
        assert version == ("2" if variant == "challenger" else "1")
    share = sum(v == "challenger" for _, v, _ in rows) / N
    assert 0.4 < share < 0.6
    # the delivery event's score carries the row's own variant and model version
    events = rows_of(url, "SELECT record_id, payload FROM deliveries")
    by_record = {rid: (v, mv) for rid, v, mv in rows}
    assert len(events) == N
    for rid, payload in events:
        score = json.loads(payload)["score"]
        assert (score["variant"], score["model_version"]) == by_record[rid]
    assert scalar(url, "SELECT COUNT(*) FROM outcomes") == 0  # status "new": not known yet

    # re-reading the same versions (cursor reset) changes nothing: same rows, same variants
    store = Store.open(url)
    try:
        with store.begin() as conn:
            conn.exec_driver_sql("DELETE FROM cursors")
    finally:
        store.close()
    again = run_once(cfg)
    assert again.read == N
    assert (
        rows_of(url, "SELECT record_id, variant, model_version FROM scores ORDER BY record_id")
        == rows
    )

    # the CRM's later poll: every lead has an outcome now
    _second_poll(root)
    second = run_once(cfg)
    assert second.stored == N
    outcomes = rows_of(url, "SELECT record_id, kind, label, source FROM outcomes")
    assert len(outcomes) == N
    expected = {f"crm:00Q{i:04d}": int(_converted(i)) for i in range(N)}
    assert {rid: label for rid, _, label, _ in outcomes} == expected
    assert {(kind, source) for _, kind, _, source in outcomes} == {("converted", "pipeline:crm")}
    observed = rows_of(url, "SELECT DISTINCT observed_at FROM outcomes")
    assert observed == [(_ts("2026-12-01T12:00:00Z"),)]  # the version's updated_at
    # a lead's later version stays in its variant
    later = rows_of(url, "SELECT record_id, variant FROM scores WHERE record_id LIKE '%12:00:00Z'")
    assert len(later) == N
    first_variant = {rid.split("@")[0]: v for rid, v, _ in rows}
    assert all(first_variant[rid.split("@")[0]] == v for rid, v in later)

    store = Store.open(url)
    try:
        scored = scored_outcomes(store, "crm")
        train = training_rows(store, "crm", model="lead-score")
    finally:
        store.close()
    # the report uses each lead's first score, made before the outcome was known
    assert len(scored) == N
    [(second_scored,)] = rows_of(
        url, "SELECT MIN(scored_at) FROM scores WHERE record_id LIKE '%12:00%'"
    )
    assert max(s.scored_at for s in scored) < second_scored
    assert len(train) == N
    assert {payload["status"] for payload, _ in train} == {"new"}

    result = CliRunner().invoke(
        model_cli, ["ab-report", "--pipeline", "crm", "--config", str(cfg), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    prod, chal = report["variants"]
    assert (prod["variant"], chal["variant"]) == ("production", "challenger")
    assert prod["n"] + chal["n"] == N
    assert prod["positives"] + chal["positives"] == sum(expected.values())
    assert (prod["model_versions"], chal["model_versions"]) == (["1"], ["2"])
    assert prod["auc"] > 0.6
    assert chal["auc"] > 0.6
    assert report["auc"]["p_value"] is not None
    assert report["verdict"]
    shown = CliRunner().invoke(model_cli, ["ab-report", "-p", "crm", "--config", str(cfg)])
    assert shown.exit_code == 0, shown.output
    assert "verdict:" in shown.output
    assert "challenger - production, auc" in shown.output

    # a later score in the other arm (a re-score, a re-drawn split) does not move a lead
    rid, variant, _ = rows[0]
    other = "production" if variant == "challenger" else "challenger"
    store = Store.open(url)
    try:
        with store.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO scores (record_id, model_version, model, value, grade, factors,"
                    " variant, scored_at) VALUES (:r, '9', 'lead-score', 0.5, 'B', '[]', :v, :t)"
                ),
                {"r": rid, "v": other, "t": second_scored + 1000},
            )
        again_scored = scored_outcomes(store, "crm")
        # leads first scored before the test began are left out
        assert scored_outcomes(store, "crm", since=second_scored + 1) == []
    finally:
        store.close()
    assert sorted((o.lead, o.variant) for o in again_scored) == sorted(
        (o.lead, o.variant) for o in scored
    )
    late = CliRunner().invoke(
        model_cli,
        ["ab-report", "-p", "crm", "--config", str(cfg), "--since", "2999-01-01T00:00:00Z"],
    )
    assert late.exit_code == 0, late.output
    assert "verdict: not enough outcomes" in late.output


def test_the_latest_observation_wins(crm) -> None:
    root, cfg, url = crm
    _first_poll(root)
    run_once(cfg)
    _second_poll(root)
    run_once(cfg)
    # an older version arriving late (e.g. a retried push) does not undo the newer outcome
    old = [
        _lead(i, "2026-12-01T11:00:00Z", "disqualified" if _converted(i) else "converted")
        for i in range(3)
    ]
    write_source(root / "source.jsonl", old)
    hub = Hub.from_file(cfg)
    try:
        runner = hub.runner("crm")
        from connectors.base import RawBatch
        from junction.pipeline.runner import RunSummary

        batch = RawBatch(
            stream="push:test",
            records=old,
            keys=[f"{r['id']}@{r['updated_at']}" for r in old],
            positions=[0, 1, 2],
            cursor={},
            versions=[r["updated_at"] for r in old],
        )
        runner.commit(runner.preparer.prepare(batch, None), RunSummary("crm", 0), with_cursor=False)
    finally:
        hub.close()
    labels = dict(
        rows_of(url, "SELECT record_id, label FROM outcomes WHERE record_id < 'crm:00Q0003'")
    )
    assert labels == {f"crm:00Q{i:04d}": int(_converted(i)) for i in range(3)}


def test_outcomes_import_csv(crm) -> None:
    root, cfg, url = crm
    _first_poll(root)
    run_once(cfg)
    csv_file = root / "outcomes.csv"
    csv_file.write_text(
        "record_id,pipeline,source_key,label,observed_at\n"
        "crm:00Q0001@2026-12-01T10:00:00Z,,,1,2026-12-02T09:00:00Z\n"
        ",crm,00Q0002,no,1796205600\n"
        "crm:00Q0003,,,true,\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        model_cli, ["outcomes", "import", str(csv_file), "--config", str(cfg)]
    )
    assert result.exit_code == 0, result.output
    assert "recorded 3 outcome(s)" in result.output
    got = rows_of(
        url, "SELECT record_id, kind, label, observed_at, source FROM outcomes ORDER BY record_id"
    )
    assert [g[:3] for g in got] == [
        ("crm:00Q0001", "converted", 1),  # a version's record id lands on its lead
        ("crm:00Q0002", "converted", 0),
        ("crm:00Q0003", "converted", 1),
    ]
    assert got[0][3] == _ts("2026-12-02T09:00:00Z")
    assert got[1][3] == 1796205600.0
    assert {g[4] for g in got} == {"csv"}
    bad = root / "bad.csv"
    bad.write_text("record_id,label\ncrm:00Q0004,1\ncrm:00Q0005,maybe\n", encoding="utf-8")
    failed = CliRunner().invoke(model_cli, ["outcomes", "import", str(bad), "--config", str(cfg)])
    assert failed.exit_code == 2
    assert "line 3" in failed.output
    assert scalar(url, "SELECT COUNT(*) FROM outcomes") == 3  # all or nothing


@contextmanager
def _api_with_outcomes(config_path: Path) -> Iterator[ApiHarness]:
    """The API as tests/api builds it, with the outcomes router (until app.py includes it)."""
    from junction.api.routes import outcomes

    cfg = load_config(config_path)
    hub = Hub(cfg)
    ctx = ApiContext(cfg=cfg, hub=hub, config_path=config_path)
    app = create_app(ctx)
    if not any(getattr(r, "path", "") == f"{API_PREFIX}/outcomes" for r in app.routes):
        app.include_router(outcomes.router, prefix=API_PREFIX)
    try:
        with serve_app(app) as url:
            yield ApiHarness(url, app, ctx, config_path.parent)
    finally:
        hub.close()


def test_post_outcomes_api(tmp_path: Path, store_url: str, models_dir: Path) -> None:
    with _api_with_outcomes(write_api_config(tmp_path, store=store_url, models=models_dir)) as api:

        def post(role: str, body: Any) -> httpx.Response:
            with api.http() as h:
                return h.post(f"{API_PREFIX}/outcomes", json=body, headers=api.headers(role))

        items = [
            {"record_id": "leads:L1", "label": 1, "observed_at": "2026-12-01T10:00:00Z"},
            {
                "pipeline": "leads",
                "source_key": "L2",
                "kind": "won",
                "label": 0,
                "observed_at": "2026-12-01T10:00:00+01:00",
            },
        ]
        for role in ("viewer", "ingest"):
            assert post(role, items).status_code == 403
        with api.http() as h:
            assert h.post(f"{API_PREFIX}/outcomes", json=items).status_code == 401
        r = post("operator", items)
        assert r.status_code == 200, r.text
        assert r.json() == {"received": 2, "recorded": 2}
        # an older observation does not replace a newer one; a newer one does
        older = [{"record_id": "leads:L1", "label": 0, "observed_at": "2026-11-30T10:00:00Z"}]
        assert post("operator", older).status_code == 200
        newer = [
            {
                "pipeline": "leads",
                "source_key": "L2",
                "kind": "won",
                "label": 1,
                "observed_at": "2026-12-03T00:00:00Z",
            }
        ]
        assert post("admin", newer).status_code == 200
        got = rows_of(
            store_url, "SELECT record_id, kind, label, source FROM outcomes ORDER BY record_id"
        )
        assert [g[:3] for g in got] == [("leads:L1", "converted", 1), ("leads:L2", "won", 1)]
        assert all(g[3].startswith("api:") for g in got)
        for bad in (
            [],
            [{"label": 1, "observed_at": "2026-12-01T10:00:00Z"}],
            [{"record_id": "leads:L1", "label": 2, "observed_at": "2026-12-01T10:00:00Z"}],
            [{"record_id": "leads:L1", "label": 1, "observed_at": "2026-12-01T10:00:00"}],
            [{"record_id": "leads:\x00", "label": 1, "observed_at": "2026-12-01T10:00:00Z"}],
            [{"pipeline": "leads", "label": 1, "observed_at": "2026-12-01T10:00:00Z"}],
            {"record_id": "leads:L1", "label": 1, "observed_at": "2026-12-01T10:00:00Z"},
        ):
            assert post("operator", bad).status_code == 422, bad
        audit = rows_of(store_url, "SELECT action FROM audit_log WHERE action = 'outcomes.record'")
        assert len(audit) == 3


def _csv_ingest(root: Path, models: Path, workers: int) -> tuple[list[tuple], list[tuple]]:
    store = f"sqlite:///{root / 'j.db'}"
    cfg = write_config(
        root,
        store=store,
        url="http://127.0.0.1:9",
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        models=models,
        batch=300,
        workers=workers,
    )
    scoring = (
        '{model: lead-score, version: "1", challenger: {version: "2", share: 0.3}, '
        "outcome: {positive_when: 'record.lead_source == \"referral\"', "
        "negative_when: 'record.lead_source != \"referral\"'}}"
    )
    text = cfg.read_text()
    assert "scoring: {model: lead-score}" in text
    cfg.write_text(text.replace("scoring: {model: lead-score}", f"scoring: {scoring}"))
    write_lead_csv(root / "inbox" / "same.csv", 3000, seed=17, messy=True)
    hub = Hub.from_file(cfg)
    try:
        [summary] = hub.run_once()
    finally:
        hub.close()
    assert summary.read == 3000
    scores = rows_of(
        store, "SELECT record_id, variant, model_version, value FROM scores ORDER BY record_id"
    )
    outcomes = rows_of(store, "SELECT record_id, kind, label FROM outcomes ORDER BY record_id")
    return scores, outcomes


def test_worker_processes_score_and_label_as_the_inline_path_does(
    tmp_path: Path, ab_models: Path
) -> None:
    inline = _csv_ingest(tmp_path / "inline", ab_models, workers=0)
    parallel = _csv_ingest(tmp_path / "parallel", ab_models, workers=2)
    assert parallel == inline
    scores, outcomes = inline
    assert {(v, mv) for _, v, mv, _ in scores} == {("production", "1"), ("challenger", "2")}
    assert 0.2 < sum(v == "challenger" for _, v, _, _ in scores) / len(scores) < 0.4
    assert outcomes
    assert {label for _, _, label in outcomes} == {0, 1}
