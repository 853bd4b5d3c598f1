"""Rescoring and the digest and escalation sweeps are traced (ADR-0022).

An escalation continues its record's trace (a ``junction.escalate`` span, child of the record's
batch span); a digest is a trace of its own, linked to its items' batch spans; a refresh is one
``junction.rescore`` trace with a score and a store span per page.  A sweep with nothing due
makes no span.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from typer.testing import CliRunner

from junction.cli.main import app as cli
from junction.core import tracing
from junction.pipeline.hub import Hub
from junction.pipeline.rescore import rescore
from outbound.webhook.config import generate_secret
from scoring.synthetic import write_lead_csv
from tests.integration.helpers import rows_of, write_config
from tests.integration.test_alert_hygiene import AGE, ESCALATING, Setup, Sink, execute, hot_route


def _named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.name == name]


def _ids(store_url: str) -> dict[str, tuple[str, str]]:
    """Each record's (trace id, span id), by source key."""
    out = {}
    for key, prov in rows_of(store_url, "SELECT source_key, provenance FROM records"):
        p = json.loads(prov)
        out[key] = (p["trace_id"], p["span_id"])
    return out


def test_an_escalation_continues_its_records_trace(
    tmp_path: Path, store_url: str, models_dir: Path, sink: Sink, spans: InMemorySpanExporter
) -> None:
    s = Setup(tmp_path, store_url, models_dir, sink, ESCALATING)
    s.drop(("L-1", "ann@example.com"))
    s.run_and_deliver()
    assert s.escalate_due() == 0  # not due: no span
    assert _named(spans, "junction.escalate") == []
    execute(store_url, AGE)
    assert s.escalate_due() == 1
    [esc] = _named(spans, "junction.escalate")
    trace_id, span_id = _ids(store_url)["L-1"]
    assert f"{esc.context.trace_id:032x}" == trace_id
    assert esc.parent is not None
    assert f"{esc.parent.span_id:016x}" == span_id
    assert dict(esc.attributes or {}) == {
        "junction.pipeline": "leads",
        "junction.channel": "webhook.b",
        "junction.step": 1,
        "junction.escalated": 1,
    }


def test_a_digest_is_a_trace_linked_to_its_items_batches(
    tmp_path: Path, store_url: str, models_dir: Path, sink: Sink, spans: InMemorySpanExporter
) -> None:
    routes = hot_route("digest: {window_s: 3600, max_items: 10, template: hot_digest}")
    s = Setup(tmp_path, store_url, models_dir, sink, routes)
    s.drop(*[(f"L-{n}", f"p{n}@example.com") for n in range(6)])
    s.run()
    s.drop(*[(f"L-{n}", f"p{n}@example.com") for n in range(6, 10)])
    s.run()
    with s.sweeps() as sweeps:
        assert sweeps.flush_digests(time.time()) == 1
        assert sweeps.flush_digests(time.time()) == 0
    [digest] = _named(spans, "junction.digest")
    assert digest.parent is None  # a trace of its own
    assert dict(digest.attributes or {}) == {
        "junction.pipeline": "leads",
        "junction.channel": "webhook.a",
        "junction.items": 10,
    }
    batches = set(_ids(store_url).values())
    assert len(batches) == 2  # two files, two batches
    linked = {(f"{ln.context.trace_id:032x}", f"{ln.context.span_id:016x}") for ln in digest.links}
    assert linked == batches


def test_a_rescore_is_one_trace_with_a_span_per_page(
    tmp_path: Path, store_url: str, models_dir: Path, spans: InMemorySpanExporter
) -> None:
    cfg = write_config(
        tmp_path, store=store_url, url="http://127.0.0.1:9", secret=generate_secret(),
        models=models_dir, batch=100,
    )  # fmt: skip
    write_lead_csv(tmp_path / "inbox" / "leads.csv", 250, seed=5)
    hub = Hub.from_file(cfg)
    try:
        hub.run_once()
        spans.clear()
        summary = rescore(hub.store, hub.cfg, "leads", page=100)
    finally:
        hub.close()
    [root] = _named(spans, "junction.rescore")
    assert root.parent is None
    attrs = dict(root.attributes or {})
    assert attrs["junction.pipeline"] == "leads"
    assert attrs["junction.read"] == summary.read == 250
    assert attrs["junction.scores"] == summary.scored
    assert {"junction.model", "junction.model_version"} <= set(attrs)
    for name in ("junction.score", "junction.store"):
        pages = _named(spans, name)
        assert len(pages) == 3, name
        assert {p.parent.span_id for p in pages if p.parent} == {root.context.span_id}
    assert (
        sum(dict(p.attributes or {})["junction.scores"] for p in _named(spans, "junction.store"))
        == summary.scored
    )


def test_the_rescore_command_traces_with_the_configs_exporter(
    tmp_path: Path, models_dir: Path
) -> None:
    tracing.shutdown()
    cfg = write_config(
        tmp_path, store=f"sqlite:///{tmp_path / 'j.db'}", url="http://127.0.0.1:9",
        secret=generate_secret(), models=models_dir, batch=100,
    )  # fmt: skip
    write_lead_csv(tmp_path / "inbox" / "leads.csv", 120, seed=5)
    hub = Hub.from_file(cfg)
    try:
        hub.run_once()
    finally:
        hub.close()
    with cfg.open("a", encoding="utf-8") as f:
        f.write("tracing:\n  exporter: console\n")
    try:
        result = CliRunner().invoke(cli, ["model", "rescore", "-p", "leads", "--config", str(cfg)])
    finally:
        tracing.shutdown()
    assert result.exit_code == 0, result.output
    assert '"name": "junction.rescore"' in result.output
    assert '"junction.read": 120' in result.output
    assert not tracing.enabled()
