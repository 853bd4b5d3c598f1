"""A polled source under ``junction serve``: cron polls read new versions; a source that answers
429 with Retry-After is not polled again before that time."""

from __future__ import annotations

import time
from pathlib import Path

from tests.contract.fixtures.fake import write_lead_mapping, write_source
from tests.integration.helpers import scalar
from tests.serve.helpers import Serve, wait_for, write_serve_config

PIPELINE = """\
  crm:
    source:
      connector: fake
      path: crm/source.jsonl
      streams: [leads]
      schedule: "* * * * * */1"
    mapping: fake_lead.yaml
    scoring: {model: lead-score}
    routes:
      - otherwise: [webhook.sales]
"""


def _lead(i: int, version: str) -> dict:
    return {"stream": "leads", "id": f"00Q{i}", "updated_at": version, "email": f"l{i}@a.example"}


def test_polls_pick_up_changes_and_honour_retry_after(
    tmp_path: Path, store_url: str, models_dir: Path
) -> None:
    write_lead_mapping(tmp_path)
    (tmp_path / "crm").mkdir()
    src = tmp_path / "crm" / "source.jsonl"
    write_source(src, [_lead(i, f"2026-12-01T10:00:0{i}Z") for i in range(3)])
    cfg = write_serve_config(tmp_path, store=store_url, models=models_dir, pipelines=PIPELINE)
    with Serve(cfg) as serve:
        serve.wait_ready()
        wait_for(lambda: scalar(store_url, "SELECT count(*) FROM records") == 3, 15, "first poll")
        write_source(src, [_lead(i, f"2026-12-01T10:00:0{i}Z") for i in range(4)])
        wait_for(lambda: scalar(store_url, "SELECT count(*) FROM records") == 4, 15, "new record")
        # the source starts answering 429 with Retry-After: 7 s
        src.with_name(src.name + ".faults").write_bytes(b'{"kind":"rate_limited","remaining":1}')
        failed = serve.wait_event("run failed", timeout=10)
        assert failed["code"] == "rate_limited"
        assert failed["retry_in_s"] >= 7
        fires = len(serve.find("schedule fired"))
        write_source(src, [_lead(i, f"2026-12-01T10:00:0{i}Z") for i in range(5)])
        time.sleep(3.0)
        assert len(serve.find("schedule fired")) == fires, "polled again before Retry-After"
        wait_for(lambda: scalar(store_url, "SELECT count(*) FROM records") == 5, 15, "resumed")
        assert serve.stop() == 0
    assert scalar(store_url, "SELECT count(*) FROM deliveries") == 5
