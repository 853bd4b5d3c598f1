"""The configured exporters: OTLP/HTTP to a local receiver, the ``tracing:`` config section,
and the no-op without the SDK."""

from __future__ import annotations

import builtins
import json
import sys
import threading
from pathlib import Path

import pytest
from fastapi import FastAPI, Request, Response
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pydantic import ValidationError

from junction.core import tracing
from junction.core.errors import ConfigError
from junction.pipeline.config import HubConfig, TracingConfig
from junction.pipeline.hub import Hub
from outbound.webhook.config import generate_secret
from outbound.webhook.sink import WebhookSink
from scoring.synthetic import write_lead_csv
from tests.fakes.server import serve_app
from tests.integration.helpers import rows_of, write_config


class Collector:
    """An OTLP/HTTP traces endpoint on 127.0.0.1 that keeps what it is sent."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.content_types: list[str] = []
        self.got = threading.Event()
        self.app = FastAPI()

        @self.app.post("/v1/traces")
        async def traces(request: Request) -> Response:
            msg = ExportTraceServiceRequest()
            msg.ParseFromString(await request.body())
            self.requests.append(msg)
            self.content_types.append(request.headers.get("content-type", ""))
            self.got.set()
            return Response(status_code=200, content=b"", media_type="application/x-protobuf")

    def spans(self) -> list[tuple[str, str, dict]]:
        """(service.name, span name, attributes, trace id) of every span received."""
        out = []
        for req in self.requests:
            for rs in req.resource_spans:
                service = next(
                    a.value.string_value for a in rs.resource.attributes if a.key == "service.name"
                )
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        attrs = {
                            a.key: a.value.int_value or a.value.string_value
                            for a in span.attributes
                        }
                        out.append((service, span.name, attrs, span.trace_id.hex()))
        return out


def test_the_otlp_exporter_sends_a_runs_spans_to_the_configured_endpoint(
    tmp_path: Path, models_dir: Path
) -> None:
    collector = Collector()
    secret = generate_secret()
    with serve_app(collector.app) as url, WebhookSink(secret, tmp_path / "sink.jsonl") as sink:
        cfg_path = write_config(
            tmp_path,
            store=f"sqlite:///{tmp_path / 'j.db'}",
            url=sink.url,
            secret=secret,
            models=models_dir,
            batch=100,
        )
        with cfg_path.open("a", encoding="utf-8") as f:
            f.write(
                "tracing:\n"
                "  exporter: otlp\n"
                f"  endpoint: {url}/v1/traces\n"
                "  service_name: junction-test\n"
            )
        write_lead_csv(tmp_path / "inbox" / "leads.csv", 150, seed=3)
        hub = Hub.from_file(cfg_path)
        try:
            assert tracing.enabled()
            hub.run_once()
            hub.deliver(drain_wait_s=2)
            assert tracing.flush()
        finally:
            hub.close()
            tracing.shutdown()
    assert collector.got.is_set()
    assert set(collector.content_types) == {"application/x-protobuf"}
    received = collector.spans()
    assert {s[0] for s in received} == {"junction-test"}
    names = [s[1] for s in received]
    assert names.count("junction.batch") == 2
    for stage in ("junction.read", "junction.map", "junction.score", "junction.store"):
        assert names.count(stage) == 2
    assert names.count("junction.deliver") > 0
    batch_traces = {s[3] for s in received if s[1] == "junction.batch"}
    stored = {
        json.loads(p)["trace_id"]
        for (p,) in rows_of(f"sqlite:///{tmp_path / 'j.db'}", "SELECT provenance FROM records")
    }
    assert stored == batch_traces
    assert sum(s[2]["junction.read"] for s in received if s[1] == "junction.batch") == 150


def test_the_console_exporter_prints_spans(capfd: pytest.CaptureFixture[str]) -> None:
    assert tracing.configure("console")
    try:
        with tracing.span("junction.batch", {"junction.read": 3}):
            pass
        tracing.flush()
    finally:
        tracing.shutdown()
    printed = capfd.readouterr().out
    assert '"name": "junction.batch"' in printed
    assert '"junction.read": 3' in printed


def test_the_tracing_section_is_validated() -> None:
    assert HubConfig().tracing == TracingConfig()
    assert HubConfig().tracing.exporter == "none"
    cfg = HubConfig.model_validate(
        {
            "tracing": {
                "exporter": "otlp",
                "endpoint": "http://127.0.0.1:4318/v1/traces",
                "sample_ratio": 0.25,
            }
        }
    )
    assert cfg.tracing.sample_ratio == 0.25
    for bad in (
        {"exporter": "jaeger"},
        {"sample_ratio": 1.5},
        {"endpoint": "ftp://127.0.0.1/x"},
        {"unknown": 1},
    ):
        with pytest.raises(ValidationError):
            HubConfig.model_validate({"tracing": bad})


def test_a_hub_without_a_tracing_section_leaves_tracing_off(tmp_path: Path) -> None:
    tracing.shutdown()
    hub = Hub(HubConfig(store=f"sqlite:///{tmp_path / 'j.db'}"))
    hub.close()
    assert not tracing.enabled()
    assert tracing.span("junction.batch") is tracing.NO_SPAN
    assert tracing.current_ids() is None
    assert tracing.current_traceparent() is None


def test_without_the_sdk_tracing_is_a_no_op_and_an_exporter_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_import = builtins.__import__

    def no_sdk(name, *args, **kwargs):
        if name.startswith("opentelemetry.sdk"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    for mod in [m for m in sys.modules if m.startswith("opentelemetry.sdk")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(builtins, "__import__", no_sdk)
    assert tracing.configure("none") is False
    with tracing.span("junction.batch") as sp:
        sp.set("junction.read", 1)
        assert sp.traceparent is None
    with pytest.raises(ConfigError) as info:
        tracing.configure("otlp")
    assert "junction-hub[tracing]" in info.value.user_message
    assert not tracing.enabled()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", True),
        ),
        (
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", False),
        ),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", None),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", None),
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", None),
        (b"\xff", None),
        (None, None),
    ],
)
def test_traceparent_parsing(value, expected) -> None:
    assert tracing.parse_traceparent(value) == expected


def test_a_failing_stage_records_the_error_class_not_its_message(spans) -> None:
    from junction.core.errors import RecordError
    from tests.privacy_canaries import CANARY_EMAIL

    with pytest.raises(RecordError), tracing.span("junction.map"):
        raise RecordError(f"not an email: {CANARY_EMAIL}")
    [span] = spans.get_finished_spans()
    assert span.status.status_code.name == "ERROR"
    assert span.status.description == "RecordError"
    assert span.attributes["error.type"] == "RecordError"
    assert span.events == ()  # no exception event (it would carry the message)
    assert CANARY_EMAIL not in span.to_json()


def test_the_sdks_otel_variables_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    collector = Collector()
    with serve_app(collector.app) as url:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{url}/v1/traces")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
        monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
        assert tracing.configure("otlp", service_name="from-config")
        try:
            with tracing.span("junction.batch", {"junction.read": 1}):
                pass
            assert tracing.flush()
        finally:
            tracing.shutdown()
    [(service, name, attrs, _trace)] = collector.spans()
    assert (service, name, attrs) == ("from-env", "junction.batch", {"junction.read": 1})
    [req] = collector.requests
    resource = {a.key: a.value.string_value for a in req.resource_spans[0].resource.attributes}
    assert resource["deployment.environment"] == "test"
