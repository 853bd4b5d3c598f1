"""Stage workers over the real broker (tansu) keep one trace per ingest batch.

ingest → normalize → score → deliver, each its own worker in this process, SQLite: the stage
messages carry ``traceparent`` headers, each stage's span is a child of the one before, stored
records name their normalize span, and the webhook receiver gets the same trace.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from junction.core import tracing
from junction.pipeline.config import load_config
from junction.pipeline.hub import Hub
from junction.serve.stage_worker import run_ingest, run_stage_worker
from outbound.webhook.sink import WebhookSink, read_sink_file
from scoring.synthetic import write_lead_csv
from tests.fakes.kafka_broker import KafkaBroker
from tests.integration.helpers import rows_of
from tests.stages.support import SECRET, write_config

pytestmark = pytest.mark.timeout(240)
ROWS = 400


def _hex(span_id: int) -> str:
    return f"{span_id:016x}"


def _run(tmp_path: Path, models_dir: Path, broker: KafkaBroker) -> dict:
    with WebhookSink(SECRET, tmp_path / "sink.jsonl") as sink:
        cfg = write_config(
            tmp_path,
            store=f"sqlite:///{tmp_path / 'j.db'}",
            bootstrap=broker.bootstrap,
            models=models_dir,
            prefix=f"trace{tmp_path.name[-4:]}",
            sink=sink.url,
            batch=200,
        )
        write_lead_csv(tmp_path / "inbox" / "leads.csv", ROWS, seed=5)
        hub = Hub(load_config(cfg))
        try:
            ingest = run_ingest(hub, threading.Event(), once=True)
            assert ingest.read == ROWS
            for role in ("normalize", "score", "deliver"):
                run_stage_worker(hub, (role,), threading.Event(), idle_exit_s=2.0)
            hub.deliver(drain_wait_s=2.0)
        finally:
            hub.close()
    db = f"sqlite:///{tmp_path / 'j.db'}"
    return {
        "records": rows_of(db, "SELECT id, provenance FROM records"),
        "deliveries": dict(rows_of(db, "SELECT id, record_id FROM deliveries")),
        "sink": read_sink_file(tmp_path / "sink.jsonl"),
    }


def test_a_stage_worker_chain_keeps_one_trace_per_batch(
    tmp_path: Path, models_dir: Path, kafka_broker: KafkaBroker, spans: InMemorySpanExporter
) -> None:
    out = _run(tmp_path, models_dir, kafka_broker)
    finished = spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}
    roots = [s for s in finished if s.name == "junction.batch"]
    assert len(roots) == 2  # 400 rows in batches of 200
    traces = {s.context.trace_id for s in roots}
    assert len(traces) == 2
    # every span belongs to one of the batches' traces
    assert {s.context.trace_id for s in finished} == traces
    stages = [s for s in finished if s.name == "junction.stage"]
    chain = {"normalize": "junction.batch", "score": "normalize", "deliver": "score"}
    for s in stages:
        parent = by_id[s.parent.span_id]
        assert parent.context.trace_id == s.context.trace_id
        expected = chain[s.attributes["junction.roles"]]
        got = (
            parent.name if parent.name == "junction.batch" else parent.attributes["junction.roles"]
        )
        assert got == expected
        kids = {k.name for k in finished if k.parent and k.parent.span_id == s.context.span_id}
        role_span = {"normalize": "junction.map", "score": "junction.score"}
        assert role_span.get(s.attributes["junction.roles"], "junction.route") in kids
    per_role: dict[str, int] = {}
    for s in stages:
        role = s.attributes["junction.roles"]
        per_role[role] = per_role.get(role, 0) + s.attributes["junction.records"]
    assert per_role["normalize"] == ROWS
    # stored records name a normalize span of their batch's trace
    normalize_ids = {
        _hex(s.context.span_id): s for s in stages if s.attributes["junction.roles"] == "normalize"
    }
    trace_of = {}
    for rid, prov in out["records"]:
        p = json.loads(prov)
        span = normalize_ids[p["span_id"]]
        assert p["trace_id"] == f"{span.context.trace_id:032x}"
        trace_of[rid] = p["trace_id"]
    assert len(trace_of) > ROWS * 0.9
    # the receiver got each delivery with its record's trace
    assert out["sink"]
    for line in out["sink"]:
        parsed = tracing.parse_traceparent(line["traceparent"])
        assert parsed is not None
        assert parsed[0] == trace_of[out["deliveries"][line["webhook_id"]]]
        deliver = by_id[int(parsed[1], 16)]
        assert deliver.name == "junction.deliver"
