"""Sending a digest is traced and carries a ``traceparent`` (ADR-0022).

A digest is one message for many records, of many batches: its send is a ``junction.deliver``
span of a trace of its own, linked to its items' batch spans, and the receiver gets that span as
its ``traceparent``.  Found by review: the digest's delivery names no record, so it went out with
no span and no header.  Real HTTP to the webhook sink, which keeps the header it received.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link

from junction.core import tracing
from outbound.webhook.sink import read_sink_file
from tests.integration.helpers import rows_of
from tests.integration.test_alert_hygiene import Setup, Sink, hot_route

DIGEST = hot_route("digest: {window_s: 3600, max_items: 10, template: hot_digest}")


def _named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.name == name]


def _ids(span: ReadableSpan | Link) -> tuple[str, str]:
    """A span's (or a link's) trace id and span id in hex."""
    ctx = span.context
    assert ctx is not None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def _batches(store_url: str) -> set[tuple[str, str]]:
    """The (trace id, span id) of every stored record's batch."""
    out = set()
    for (prov,) in rows_of(store_url, "SELECT provenance FROM records"):
        p = json.loads(prov)
        out.add((p["trace_id"], p["span_id"]))
    return out


def _ten_leads_digested_and_sent(
    s: Setup, *, trace_from_flush: InMemorySpanExporter | None = None
) -> dict[str, Any]:
    """Two files (two batches) of hot leads, held, gathered into one digest and sent; tracing
    turned on after the ingest when ``trace_from_flush`` is given."""
    s.drop(*[(f"L-{n}", f"p{n}@example.com") for n in range(6)])
    s.run()
    s.drop(*[(f"L-{n}", f"p{n}@example.com") for n in range(6, 10)])
    s.run()
    if trace_from_flush is not None:
        tracing.configure(span_exporter=trace_from_flush)
    with s.sweeps() as sweeps:
        assert sweeps.flush_digests(time.time()) == 1
    s.deliver()
    [line] = read_sink_file(s.sink_file)
    assert line["webhook_id"].startswith("digest:")
    body = line["body"]
    assert (json.loads(body) if isinstance(body, str) else body)["count"] == 10
    return line


def test_a_digest_send_is_its_own_trace_linked_to_its_items_batches(
    tmp_path: Path, store_url: str, models_dir: Path, sink: Sink, spans: InMemorySpanExporter
) -> None:
    s = Setup(tmp_path, store_url, models_dir, sink, DIGEST)
    line = _ten_leads_digested_and_sent(s)
    [deliver] = _named(spans, "junction.deliver")
    parsed = tracing.parse_traceparent(line["traceparent"])
    assert parsed is not None
    assert parsed == (*_ids(deliver), True)  # the receiver got the send's span
    assert deliver.parent is None  # a trace of its own
    batches = _batches(store_url)
    assert len(batches) == 2  # two files, two batches
    assert {_ids(link) for link in deliver.links} == batches  # one link per batch span
    assert deliver.context.trace_id not in {int(tid, 16) for tid, _ in batches}
    # not the trace of the sweep that wrote the digest either (that span is not stored)
    [digest] = _named(spans, "junction.digest")
    assert digest.context.trace_id != deliver.context.trace_id
    assert dict(deliver.attributes or {}) == {
        "junction.channel": "webhook.a",
        "junction.attempt": 1,
        "junction.items": 10,
        "http.response.status_code": 200,
    }


def test_a_digest_of_untraced_records_still_sends_its_traceparent(
    tmp_path: Path, store_url: str, models_dir: Path, sink: Sink, no_tracing: None
) -> None:
    # the records were stored with tracing off; tracing is on when the digest is sent
    s = Setup(tmp_path, store_url, models_dir, sink, DIGEST)
    spans = InMemorySpanExporter()
    line = _ten_leads_digested_and_sent(s, trace_from_flush=spans)
    provenance = rows_of(store_url, "SELECT provenance FROM records")
    assert len(provenance) == 10
    assert all("trace_id" not in json.loads(p) for (p,) in provenance)
    [deliver] = _named(spans, "junction.deliver")
    assert tracing.parse_traceparent(line["traceparent"]) == (*_ids(deliver), True)
    assert deliver.parent is None
    assert list(deliver.links) == []  # no trace to link to
    assert (deliver.attributes or {})["junction.items"] == 10


def test_with_tracing_off_a_digest_sends_no_traceparent(
    tmp_path: Path, store_url: str, models_dir: Path, sink: Sink, no_tracing: None
) -> None:
    s = Setup(tmp_path, store_url, models_dir, sink, DIGEST)
    line = _ten_leads_digested_and_sent(s)
    assert not tracing.enabled()
    assert "traceparent" not in line
