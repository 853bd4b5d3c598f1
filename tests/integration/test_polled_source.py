"""Polled, versioned sources through the runner: cursors, resume after a failure, latest wins.

The ``fake`` connector stands in for a CRM stream (ids, versions, pages, injected faults); the
Salesforce and HubSpot connectors run the same path against their wire-format fakes.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from connectors.base import RawBatch
from junction.core.errors import RateLimitedError, UnavailableError
from junction.pipeline.hub import Hub
from junction.pipeline.runner import RunSummary
from tests.contract.fixtures.fake import write_lead_mapping, write_source
from tests.integration.helpers import rows_of, run_once, scalar

CONFIG = """\
store: "{store}"
models_dir: {models}
pipelines:
  crm:
    source: {{connector: fake, path: source.jsonl, batch_size: 2, streams: [leads]}}
    mapping: fake_lead.yaml
    scoring: {{model: lead-score}}
    routes:
      - otherwise: [webhook.sales]
channels:
  webhook.sales:
    url: "http://127.0.0.1:9/hook"
    secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"""


def _lead(i: int, version: str, views: int = 3) -> dict:
    return {
        "stream": "leads",
        "id": f"00Q{i}",
        "updated_at": version,
        "email": f"Lead{i}@Example.com",
        "company": "Acme",
        "views": views,
    }


@pytest.fixture
def crm(tmp_path: Path, store_url: str, models_dir: Path):
    write_lead_mapping(tmp_path)
    cfg = tmp_path / "junction.yaml"
    cfg.write_text(CONFIG.format(store=store_url, models=models_dir))
    return tmp_path, cfg, store_url


def test_polls_from_the_cursor_and_stores_each_version_once(crm):
    root, cfg, url = crm
    src = root / "source.jsonl"
    write_source(src, [_lead(i, f"2026-12-01T10:00:0{i}Z") for i in range(5)])
    first = run_once(cfg)
    assert (first.read, first.stored, first.routed) == (5, 5, 5)
    # nothing changed: the cursor stands after the last version, nothing is read
    assert run_once(cfg).read == 0
    # one lead changes at the source: only its new version is read, stored and routed
    leads = [_lead(i, f"2026-12-01T10:00:0{i}Z") for i in range(5)]
    leads[1] = _lead(1, "2026-12-01T11:00:00Z", views=40)
    write_source(src, leads)
    third = run_once(cfg)
    assert (third.read, third.stored, third.routed) == (1, 1, 1)
    assert scalar(url, "SELECT COUNT(*) FROM records") == 6
    assert scalar(url, "SELECT COUNT(*) FROM deliveries") == 6
    ids = [r[0] for r in rows_of(url, "SELECT id FROM records ORDER BY id")]
    assert "crm:00Q1@2026-12-01T11:00:00Z" in ids
    assert rows_of(url, "SELECT source_key, version FROM record_heads WHERE source_key='00Q1'") == [
        ("00Q1", "2026-12-01T11:00:00Z")
    ]
    cursor = rows_of(url, "SELECT stream, value FROM cursors")
    assert cursor == [("leads", orjson.dumps({"after": ["2026-12-01T11:00:00Z", "00Q1"]}).decode())]


def test_a_failure_mid_read_keeps_what_committed_and_the_next_run_resumes(crm):
    root, cfg, url = crm
    src = root / "source.jsonl"
    write_source(src, [_lead(i, f"2026-12-01T10:00:0{i}Z") for i in range(7)])
    # the source fails on its second page: the first page and its cursor are committed
    failing = root / "failing.yaml"
    failing.write_text(
        cfg.read_text().replace("streams: [leads]", "streams: [leads], fail_after_batches: 1")
    )
    hub = Hub.from_file(failing)
    try:
        with pytest.raises(UnavailableError):
            hub.run_once()
    finally:
        hub.close()
    assert scalar(url, "SELECT COUNT(*) FROM records") == 2
    assert rows_of(url, "SELECT status FROM runs") == [("failed",)]
    resumed = run_once(cfg)
    assert (resumed.read, resumed.stored) == (5, 5)
    assert scalar(url, "SELECT COUNT(*) FROM records") == 7
    assert scalar(url, "SELECT COUNT(DISTINCT record_id) FROM deliveries") == 7
    assert scalar(url, "SELECT COUNT(*) FROM deliveries") == 7


def test_an_injected_outage_fails_the_run_without_moving_the_cursor(crm):
    root, cfg, url = crm
    src = root / "source.jsonl"
    write_source(src, [_lead(i, f"2026-12-01T10:00:0{i}Z") for i in range(3)])
    src.with_name(src.name + ".faults").write_bytes(b'{"kind": "rate_limited", "remaining": 1}')
    hub = Hub.from_file(cfg)
    try:
        with pytest.raises(RateLimitedError) as info:
            hub.run_once()
        assert info.value.retry_after == 7
    finally:
        hub.close()
    assert scalar(url, "SELECT COUNT(*) FROM cursors") == 0
    assert run_once(cfg).stored == 3


def test_an_older_version_arriving_late_is_stored_but_not_routed(crm):
    root, cfg, url = crm
    write_source(root / "source.jsonl", [])
    hub = Hub.from_file(cfg)
    try:
        runner = hub.runner("crm")
        summary = RunSummary("crm", 0)

        def batch(version: str, views: int) -> RawBatch:
            rec = _lead(7, version, views)
            return RawBatch(
                stream="push:test",
                records=[rec],
                keys=[f"00Q7@{version}"],
                positions=[0],
                cursor={},
                versions=[version],
            )

        runner.process_batch(batch("2026-12-01T12:00:00Z", 50), summary, commit_cursor=False)
        runner.process_batch(batch("2026-12-01T09:00:00Z", 1), summary, commit_cursor=False)
        # the same newest version again: idempotent, nothing new
        runner.process_batch(batch("2026-12-01T12:00:00Z", 50), summary, commit_cursor=False)
    finally:
        hub.close()
    assert summary.held_back == 2  # the older version, and the same newest one again
    assert scalar(url, "SELECT COUNT(*) FROM records") == 2  # both versions are history
    assert rows_of(url, "SELECT record_id FROM deliveries") == [("crm:00Q7@2026-12-01T12:00:00Z",)]
    assert rows_of(url, "SELECT record_id FROM record_heads") == [
        ("crm:00Q7@2026-12-01T12:00:00Z",)
    ]


def test_versions_in_one_batch_route_only_the_newest(crm):
    root, cfg, url = crm
    write_source(root / "source.jsonl", [])
    hub = Hub.from_file(cfg)
    try:
        runner = hub.runner("crm")
        versions = ["2026-12-01T10:00:00Z", "2026-12-01T12:00:00Z", "2026-12-01T11:00:00Z"]
        runner.process_batch(
            RawBatch(
                stream="push:test",
                records=[_lead(8, v) for v in versions],
                keys=[f"00Q8@{v}" for v in versions],
                positions=[0, 1, 2],
                cursor={},
                versions=versions,
            ),
            RunSummary("crm", 0),
            commit_cursor=False,
        )
    finally:
        hub.close()
    assert rows_of(url, "SELECT record_id FROM deliveries") == [("crm:00Q8@2026-12-01T12:00:00Z",)]


def test_junction_run_once_keeps_going_when_one_source_is_down(crm, tmp_path: Path):
    from typer.testing import CliRunner

    from junction.cli.main import app
    from scoring.synthetic import write_lead_csv

    root, cfg, url = crm
    src = root / "source.jsonl"
    write_source(src, [_lead(i, f"2026-12-01T10:00:0{i}Z") for i in range(3)])
    src.with_name(src.name + ".faults").write_bytes(b'{"kind":"rate_limited","remaining":1}')
    # a second pipeline, a file drop, next to the CRM one
    (root / "inbox").mkdir()
    write_lead_csv(root / "inbox" / "leads.csv", 20, seed=3, messy=False)
    cfg.write_text(
        cfg.read_text().replace(
            "channels:",
            "  files:\n"
            "    source: {connector: csv_file, path: inbox/*.csv, settle_seconds: 0}\n"
            "    mapping: csv.lead\n"
            "    workers: 0\n"
            "channels:",
        )
    )
    result = CliRunner().invoke(app, ["run", str(cfg), "--once"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "crm: failed: RateLimitedError" in result.output
    assert "files: read 20, stored 20" in result.output
    assert scalar(url, "SELECT count(*) FROM records WHERE pipeline = 'files'") == 20
    assert rows_of(url, "SELECT pipeline, status FROM runs ORDER BY id") == [
        ("crm", "failed"),
        ("files", "succeeded"),
    ]
    # the next run reads the CRM from where it stood
    again = CliRunner().invoke(app, ["run", str(cfg), "--once"], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert "crm: read 3, stored 3" in again.output


def test_check_connect_reaches_each_source(crm):
    from typer.testing import CliRunner

    from junction.cli.main import app

    root, cfg, _url = crm
    write_source(root / "source.jsonl", [_lead(1, "2026-12-01T10:00:00Z")], token="t0ken-xyz")
    refused = CliRunner().invoke(app, ["check", str(cfg), "--connect"], catch_exceptions=False)
    assert refused.exit_code == 2
    assert "failed pipeline crm: source fake: the fake source refused the token" in (
        " ".join(refused.output.split())
    )
    assert "t0ken-xyz" not in refused.output
    text = cfg.read_text().replace("streams: [leads]", "streams: [leads], token: t0ken-xyz")
    cfg.write_text(text)
    ok = CliRunner().invoke(app, ["check", str(cfg), "--connect"], catch_exceptions=False)
    assert ok.exit_code == 0, ok.output
    assert "pipeline crm: source fake: 1 record(s)" in ok.output
    # without --connect the source is not contacted at all
    write_source(root / "source.jsonl", [], token="another")
    assert CliRunner().invoke(app, ["check", str(cfg)]).exit_code == 0


def test_a_new_version_that_changes_nothing_routed_is_stored_but_not_routed(crm):
    root, cfg, url = crm
    src = root / "source.jsonl"
    write_source(src, [_lead(1, "2026-12-01T10:00:00Z")])
    assert run_once(cfg).routed == 1
    # the CRM bumped the stamp (our own write-back did, say) and a field we do not map changed
    echo = {**_lead(1, "2026-12-01T10:05:00Z"), "Junction_Score__c": 88}
    write_source(src, [echo])
    second = run_once(cfg)
    assert (second.stored, second.routed, second.held_back) == (1, 0, 1)
    # a real change of a mapped field is routed again
    write_source(src, [{**_lead(1, "2026-12-01T10:10:00Z"), "company": "Globex"}])
    third = run_once(cfg)
    assert (third.stored, third.routed, third.held_back) == (1, 1, 0)
    assert scalar(url, "SELECT count(*) FROM records") == 3
    assert scalar(url, "SELECT count(*) FROM deliveries") == 2
    assert rows_of(url, "SELECT version FROM record_heads") == [("2026-12-01T10:10:00Z",)]
