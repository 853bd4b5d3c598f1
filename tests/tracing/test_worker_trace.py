"""A file split across worker processes is one trace: a span per share, a span per batch.

The runner's process opens the file's ``junction.file`` span; each share (in a spawned worker
or in the runner's process) continues it from the W3C ``traceparent`` the dispatcher passes with
the share, so its ``junction.share`` span is the file span's child, and every batch of the share
is a ``junction.batch`` span under it.  The workers configure their tracer from the runner's
settings and export over OTLP/HTTP to a collector on 127.0.0.1 (an in-memory exporter cannot
cross processes); every record a worker writes stores the file's trace id and its batch's span.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from junction.core import tracing
from junction.pipeline.hub import Hub
from scoring.synthetic import write_lead_csv
from tests.fakes.server import serve_app
from tests.integration.helpers import rows_of, write_config
from tests.tracing.test_exporters import Collector

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ROWS = 3000


def _spans(requests: list[ExportTraceServiceRequest]) -> list[dict[str, Any]]:
    """Every received span: name, trace id, span id, parent span id (hex), attributes."""
    out = []
    for req in requests:
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for s in ss.spans:
                    out.append(
                        {
                            "name": s.name,
                            "trace": s.trace_id.hex(),
                            "span": s.span_id.hex(),
                            "parent": s.parent_span_id.hex(),
                            "attrs": {
                                a.key: a.value.int_value or a.value.string_value
                                for a in s.attributes
                            },
                        }
                    )
    return out


def _ingest(
    root: Path, store_url: str, models: Path, tracing_yaml: str, share: bool, quoted: bool = False
) -> Any:
    cfg = write_config(
        root, store=store_url, url="http://127.0.0.1:9", secret=SECRET, models=models,
        batch=150, workers=2,
    )  # fmt: skip
    with cfg.open("a", encoding="utf-8") as f:
        f.write(tracing_yaml)
    path = root / "inbox" / "leads.csv"
    write_lead_csv(path, ROWS, seed=31, messy=True)
    if quoted:  # quoted fields from the first row on: not cut into parts, read in strides
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        for i in range(1, len(lines), 7):
            lines[i] = re.sub(r",(\w[^,]*(?:Inc\.|GmbH|Ltd)),", r',"\1",', lines[i], count=1)
        path.write_text("".join(lines), encoding="utf-8")
    hub = Hub.from_file(cfg)
    try:
        runner = hub.runner("leads")
        runner.shares_work = share  # False: every share runs in a spawned worker process
        [summary] = hub.run_once()
    finally:
        hub.close()  # stops the workers, waiting for them: their exit flushes their spans
        tracing.shutdown()  # flushes this process's
    assert summary.read == ROWS
    assert summary.stored > 0
    return summary


def _provenance(store_url: str) -> list[dict[str, Any]]:
    return [json.loads(p) for (p,) in rows_of(store_url, "SELECT provenance FROM records")]


@pytest.mark.parametrize("share", [False, True], ids=["workers-only", "runner-shares-too"])
def test_a_split_files_run_is_one_trace_with_a_span_per_share(
    tmp_path: Path, store_url: str, models_dir: Path, share: bool
) -> None:
    if share and not store_url.startswith("sqlite"):
        pytest.skip("the mixed case is covered on SQLite; PostgreSQL runs the workers-only one")
    collector = Collector()
    with serve_app(collector.app) as url:
        yaml = f"tracing:\n  exporter: otlp\n  endpoint: {url}/v1/traces\n"
        summary = _ingest(tmp_path, store_url, models_dir, yaml, share)
    spans = _spans(collector.requests)
    [file_span] = [s for s in spans if s["name"] == "junction.file"]
    assert file_span["parent"] == ""  # the root of the file's trace
    trace_id = file_span["trace"]
    assert {s["trace"] for s in spans} == {trace_id}  # one file, one trace

    shares = [s for s in spans if s["name"] == "junction.share"]
    assert len(shares) == file_span["attrs"]["junction.shares"] > 2  # the file was split
    assert {s["parent"] for s in shares} == {file_span["span"]}
    share_ids = {s["span"] for s in shares}

    batches = [s for s in spans if s["name"] == "junction.batch"]
    assert {b["parent"] for b in batches} <= share_ids
    assert sum(b["attrs"]["junction.read"] for b in batches) == ROWS
    batch_ids = {b["span"] for b in batches}
    assert len(batch_ids) == len(batches)
    for stage in ("junction.read", "junction.map", "junction.score", "junction.store"):
        children = [s for s in spans if s["name"] == stage]
        assert len(children) == len(batches), stage
        assert {s["parent"] for s in children} == batch_ids, stage
    stored = sum(
        s["attrs"].get("junction.records", 0) for s in spans if s["name"] == "junction.store"
    )
    assert stored == summary.stored == file_span["attrs"]["junction.records"]

    # every record the shares wrote stores the file's trace and the span of its batch
    provenance = _provenance(store_url)
    assert len(provenance) == summary.stored
    assert {p.get("trace_id") for p in provenance} == {trace_id}
    assert {p["span_id"] for p in provenance} <= batch_ids
    quarantined = [
        json.loads(p)
        for (p,) in rows_of(store_url, "SELECT provenance FROM quarantine")
        if p is not None
    ]
    assert {q.get("trace_id") for q in quarantined} <= {trace_id}


def test_with_tracing_off_the_workers_trace_nothing(tmp_path: Path, models_dir: Path) -> None:
    tracing.shutdown()
    store_url = f"sqlite:///{tmp_path / 'j.db'}"
    _ingest(tmp_path, store_url, models_dir, "", share=False)
    assert tracing.settings() is None
    provenance = _provenance(store_url)
    assert provenance
    assert not any("trace_id" in p or "span_id" in p for p in provenance)


def test_settings_travel_to_another_process_and_configure_it_once() -> None:
    tracing.shutdown()
    assert tracing.settings() is None
    assert tracing.configure("console", service_name="svc", sample_ratio=0.5)
    settings = tracing.settings()
    assert settings == tracing.Settings("console", None, "svc", 0.5)
    try:
        tracing.shutdown()
        assert tracing.configure_from(settings)
        assert tracing.settings() == settings
        live = tracing.span("junction.batch")
        assert tracing.configure_from(settings)  # unchanged: the same provider stays
        assert tracing.settings() is settings
        assert live is not tracing.NO_SPAN
        # "none": on without an exporter of its own, so records still store their trace
        assert tracing.configure_from(tracing.Settings())
        with tracing.span("junction.batch"):
            assert tracing.current_ids() is not None
        assert not tracing.configure_from(None)
        assert not tracing.enabled()
    finally:
        tracing.shutdown()


def test_a_split_file_the_sampler_leaves_out_stores_no_trace(
    tmp_path: Path, models_dir: Path
) -> None:
    collector = Collector()
    store_url = f"sqlite:///{tmp_path / 'j.db'}"
    with serve_app(collector.app) as url:
        yaml = f"tracing:\n  exporter: otlp\n  endpoint: {url}/v1/traces\n  sample_ratio: 0\n"
        _ingest(tmp_path, store_url, models_dir, yaml, share=False)
    assert _spans(collector.requests) == []
    provenance = _provenance(store_url)
    assert provenance
    assert not any("trace_id" in p for p in provenance)  # ids of a trace no backend holds


def test_a_file_read_in_strides_is_one_trace_too(tmp_path: Path, models_dir: Path) -> None:
    collector = Collector()
    store_url = f"sqlite:///{tmp_path / 'j.db'}"
    with serve_app(collector.app) as url:
        yaml = f"tracing:\n  exporter: otlp\n  endpoint: {url}/v1/traces\n"
        _ingest(tmp_path, store_url, models_dir, yaml, share=False, quoted=True)
    spans = _spans(collector.requests)
    [file_span] = [s for s in spans if s["name"] == "junction.file"]
    shares = [s for s in spans if s["name"] == "junction.share"]
    # two striding shares, each reading the whole file and keeping every other batch
    assert len(shares) == 2
    assert all(s["attrs"]["junction.stride"] == 2 for s in shares)
    assert {s["parent"] for s in shares} == {file_span["span"]}
    batches = [s for s in spans if s["name"] == "junction.batch"]
    assert {b["parent"] for b in batches} == {s["span"] for s in shares}
    assert sum(b["attrs"]["junction.read"] for b in batches) == ROWS
    provenance = _provenance(store_url)
    assert {p.get("trace_id") for p in provenance} == {file_span["trace"]}
    assert {p["span_id"] for p in provenance} <= {b["span"] for b in batches}
