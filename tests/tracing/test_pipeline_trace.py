"""File drop → canonical → score → webhook: one trace per batch, stored and sent on.

Real stores (SQLite and PostgreSQL), the real webhook channel and the local sink on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from junction.core import tracing
from junction.pipeline.hub import Hub
from outbound.webhook.config import generate_secret
from outbound.webhook.sink import WebhookSink, read_sink_file
from scoring.synthetic import write_lead_csv
from tests.integration.helpers import rows_of, write_config

STAGES = ("junction.read", "junction.map", "junction.score", "junction.route", "junction.store")


def _run(tmp_path: Path, store_url: str, models_dir: Path, rows: int, batch: int) -> dict:
    secret = generate_secret()
    with WebhookSink(secret, tmp_path / "sink.jsonl") as sink:
        cfg = write_config(
            tmp_path, store=store_url, url=sink.url, secret=secret, models=models_dir, batch=batch
        )
        write_lead_csv(tmp_path / "inbox" / "leads.csv", rows, seed=7, messy=True)
        hub = Hub.from_file(cfg)
        try:
            [summary] = hub.run_once()
            stats = hub.deliver(drain_wait_s=5)
        finally:
            hub.close()
    return {
        "summary": summary,
        "stats": stats,
        "sink": read_sink_file(tmp_path / "sink.jsonl"),
        "records": rows_of(store_url, "SELECT id, provenance FROM records"),
        "quarantine": rows_of(store_url, "SELECT provenance FROM quarantine"),
        "deliveries": rows_of(store_url, "SELECT id, record_id FROM deliveries"),
    }


def test_one_trace_per_batch_stored_and_continued_by_the_receiver(
    tmp_path: Path, store_url: str, models_dir: Path, spans: InMemorySpanExporter
) -> None:
    out = _run(tmp_path, store_url, models_dir, rows=600, batch=250)
    finished = spans.get_finished_spans()
    roots = [s for s in finished if s.name == "junction.batch"]
    assert len(roots) == 3  # 600 rows in batches of 250
    by_trace = {f"{r.context.trace_id:032x}": r for r in roots}
    assert len(by_trace) == 3  # one trace per batch
    for root in roots:
        assert root.parent is None
        kids = [
            s
            for s in finished
            if s.parent is not None
            and s.parent.span_id == root.context.span_id
            and s.name != "junction.deliver"  # checked below, per delivery
        ]
        assert sorted(k.name for k in kids) == sorted(STAGES)
        assert all(k.context.trace_id == root.context.trace_id for k in kids)
        store = next(k for k in kids if k.name == "junction.store")
        read = next(k for k in kids if k.name == "junction.read")
        assert read.attributes["junction.read"] == root.attributes["junction.read"]
        assert (
            store.attributes["junction.records"] + store.attributes["junction.quarantined"]
            == read.attributes["junction.read"]
        )
        assert root.attributes["junction.pipeline"] == "leads"
    assert sum(r.attributes["junction.read"] for r in roots) == 600

    # every stored record (and quarantined row) names its batch's trace and span
    stored_per_trace: Counter[str] = Counter()
    for _rid, prov in out["records"]:
        p = json.loads(prov)
        root = by_trace[p["trace_id"]]
        assert p["span_id"] == f"{root.context.span_id:016x}"
        stored_per_trace[p["trace_id"]] += 1
    for tid, n in stored_per_trace.items():
        store_span = next(
            s
            for s in finished
            if s.name == "junction.store" and f"{s.context.trace_id:032x}" == tid
        )
        assert store_span.attributes["junction.records"] == n
    assert all(json.loads(p)["trace_id"] in by_trace for (p,) in out["quarantine"])

    # each delivery went out under a junction.deliver span, child of its record's batch span,
    # and the receiver got that span as its traceparent
    trace_of = {rid: json.loads(prov)["trace_id"] for rid, prov in out["records"]}
    record_of = dict(out["deliveries"])
    delivers = {s.context.span_id: s for s in finished if s.name == "junction.deliver"}
    assert len(out["sink"]) == len(out["deliveries"]) == out["stats"].delivered > 0
    for line in out["sink"]:
        parsed = tracing.parse_traceparent(line["traceparent"])
        assert parsed is not None
        trace_id, span_id, sampled = parsed
        assert sampled
        assert trace_id == trace_of[record_of[line["webhook_id"]]]
        deliver = delivers[int(span_id, 16)]
        assert deliver.parent.span_id == by_trace[trace_id].context.span_id
        assert deliver.attributes["http.response.status_code"] == 200
        assert deliver.attributes["junction.channel"] in ("webhook.sales", "webhook.nurture")


def test_tracing_off_records_nothing_and_sends_no_header(
    tmp_path: Path, store_url: str, models_dir: Path, no_tracing: None
) -> None:
    out = _run(tmp_path, store_url, models_dir, rows=200, batch=100)
    assert not tracing.enabled()
    assert out["records"]
    assert all("trace_id" not in json.loads(p) for _, p in out["records"])
    assert out["sink"]
    assert all("traceparent" not in line for line in out["sink"])


@pytest.mark.parametrize("ratio", [0.0])
def test_unsampled_batches_export_nothing(tmp_path: Path, models_dir: Path, ratio: float) -> None:
    exporter = InMemorySpanExporter()
    tracing.configure(span_exporter=exporter, sample_ratio=ratio)
    try:
        out = _run(tmp_path, f"sqlite:///{tmp_path / 'j.db'}", models_dir, rows=100, batch=100)
    finally:
        tracing.shutdown()
    assert exporter.get_finished_spans() == ()
    # a batch left out by the sampler stores no trace id, and its deliveries carry no header
    assert out["records"]
    assert all("trace_id" not in json.loads(p) for _, p in out["records"])
    assert out["sink"]
    assert all("traceparent" not in line for line in out["sink"])
