"""OpenTelemetry tracing, or nothing at all (ADR-0022).

Junction traces one ingest batch at a time (never one record): a ``junction.batch`` span with a
child span per stage it goes through, attributes that are counts and names (never a payload
value, never personal data).  Everything here is a no-op until :func:`configure` turns tracing
on, and it stays a no-op when the ``tracing`` extra (``opentelemetry-sdk``) is not installed:

* :func:`span` then returns one shared object whose ``__enter__`` does nothing;
* :func:`current_ids` returns ``None``, so no record stores a trace id and no delivery carries a
  ``traceparent`` header.

Junction keeps its own ``TracerProvider`` instead of installing the global one, so a host process
(or a test) may configure it more than once; the W3C ``traceparent`` format is parsed and
written here (it is four dash-separated hex fields), so the propagator is not needed.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from junction.core.errors import ConfigError

Exporter = Literal["none", "console", "otlp"]
AttrValue = str | int | float | bool

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16

# the live tracer (an opentelemetry.sdk Tracer) and its provider; None while tracing is off
_tracer: Any = None
_provider: Any = None


@dataclass(frozen=True)
class Settings:
    """How this process's tracing was configured, for another process to do the same.

    A worker process (spawned: it starts with tracing off) calls :func:`configure_from` with
    the settings of the process that hands it work.  ``exporter="none"`` is tracing on with no
    exporter of its own (the parent exports to one that cannot cross processes, e.g. an
    in-memory one): the child's spans go nowhere, but its records still store their trace.
    """

    exporter: Exporter = "none"
    endpoint: str | None = None
    service_name: str = "junction"
    sample_ratio: float = 1.0


_settings: Settings | None = None


class _NoSpan:
    """The span of disabled tracing: entering, leaving and setting attributes do nothing."""

    __slots__ = ()

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def set(self, key: str, value: AttrValue) -> None:
        """Do nothing (tracing is off)."""

    def link(self, traceparent: str | None) -> None:
        """Do nothing (tracing is off)."""

    @property
    def traceparent(self) -> str | None:
        """No span, no header."""
        return None


NO_SPAN = _NoSpan()


class _Span:
    """A live span, current in its context while the ``with`` block runs."""

    __slots__ = ("_otel", "_scope")

    def __init__(self, otel: Any) -> None:
        self._otel = otel
        self._scope: Any = None

    def __enter__(self) -> _Span:
        from opentelemetry import trace

        self._scope = trace.use_span(
            self._otel, end_on_exit=True, record_exception=False, set_status_on_exception=False
        )
        self._scope.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            from opentelemetry.trace import Status, StatusCode

            # the error's class only: a message may quote a payload value
            self._otel.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            self._otel.set_attribute("error.type", type(exc).__name__)
        self._scope.__exit__(kind, exc, tb)

    def set(self, key: str, value: AttrValue) -> None:
        """Set one attribute: a count or a name, never a payload value."""
        self._otel.set_attribute(key, value)

    def link(self, traceparent: str | None) -> None:
        """Link this span to another trace's span (a ``traceparent``; an invalid one is ignored).

        For work that gathers the results of several traces (a digest of many records' alerts).
        """
        remote = _remote(traceparent)
        if remote is not None:
            self._otel.add_link(remote)

    @property
    def traceparent(self) -> str | None:
        """This span as a W3C ``traceparent`` header value (what a receiver continues)."""
        ctx = self._otel.get_span_context()
        return _format(ctx.trace_id, ctx.span_id, bool(ctx.trace_flags & 1))


def configure(
    exporter: Exporter = "none",
    *,
    endpoint: str | None = None,
    service_name: str = "junction",
    sample_ratio: float = 1.0,
    span_exporter: Any = None,
) -> bool:
    """Turn tracing on (or off, with ``exporter="none"`` and no ``span_exporter``).

    Args:
        exporter: ``console`` prints spans, ``otlp`` sends them over OTLP/HTTP; ``none`` exports
            nothing (and turns tracing off unless ``span_exporter`` is given).
        endpoint: The OTLP/HTTP traces URL (``…/v1/traces``); ``None`` lets the SDK read
            ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``.
        service_name: The ``service.name`` resource attribute (``OTEL_SERVICE_NAME`` wins).
        sample_ratio: The share of batches traced (parent-based: a continued trace keeps its
            parent's decision).
        span_exporter: An SDK ``SpanExporter`` to use as well, exported synchronously (tests
            pass an ``InMemorySpanExporter``).

    Returns:
        Whether tracing is on.

    Raises:
        ConfigError: An exporter is asked for but the ``tracing`` extra is not installed.
    """
    shutdown()
    if exporter == "none" and span_exporter is None:
        return False
    return _start(Settings(exporter, endpoint, service_name, sample_ratio), span_exporter)


def configure_from(settings: Settings | None) -> bool:
    """Configure tracing as another process did (:func:`settings`); ``None`` turns it off.

    A no-op when this process is configured so already.  Returns whether tracing is on.

    Raises:
        ConfigError: An exporter is asked for but the ``tracing`` extra is not installed.
    """
    if settings == _settings:
        return _tracer is not None
    shutdown()
    if settings is None:
        return False
    return _start(settings, None)


def settings() -> Settings | None:
    """The settings tracing was configured with, or ``None`` while it is off."""
    return _settings


def _start(settings: Settings, span_exporter: Any) -> bool:
    global _tracer, _provider, _settings
    exporter, endpoint = settings.exporter, settings.endpoint
    service_name, sample_ratio = settings.service_name, settings.sample_ratio
    try:
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    except ImportError as exc:
        raise ConfigError(
            "tracing needs OpenTelemetry: pip install 'junction-hub[tracing]'",
            details=type(exc).__name__,
        ) from None
    resource = Resource.create({"service.name": service_name}).merge(
        OTELResourceDetector().detect()
    )
    provider = TracerProvider(
        resource=resource, sampler=ParentBased(TraceIdRatioBased(sample_ratio))
    )
    if exporter == "console":
        # stdout as it is now (the SDK's default is the stdout of its import)
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
    elif exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigError(
                "the otlp exporter needs opentelemetry-exporter-otlp-proto-http: "
                "pip install 'junction-hub[tracing]'",
                details=type(exc).__name__,
            ) from None
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    if span_exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    _provider, _tracer, _settings = provider, provider.get_tracer("junction"), settings
    return True


def shutdown() -> None:
    """Flush and stop the exporters; tracing is off afterwards."""
    global _tracer, _provider, _settings
    provider, _provider, _tracer, _settings = _provider, None, None, None
    if provider is not None:
        provider.shutdown()


def flush(timeout_ms: int = 5_000) -> bool:
    """Export the spans that ended so far (the batch processor otherwise waits)."""
    return bool(_provider.force_flush(timeout_ms)) if _provider is not None else True


def enabled() -> bool:
    """Whether spans are recorded (``configure`` turned tracing on)."""
    return _tracer is not None


def span(
    name: str,
    attrs: Mapping[str, AttrValue] | None = None,
    *,
    parent: str | None = None,
    start_ns: int | None = None,
    server: bool = False,
) -> _Span | _NoSpan:
    """A span named ``name``, child of the current span (or of ``parent``, a ``traceparent``).

    Use it as ``with tracing.span("junction.store", {"junction.records": n}) as sp: ...``; it
    becomes the current span inside the block, and ``sp.set(key, value)`` adds counts.

    Args:
        name: The span's name (``junction.<stage>``).
        attrs: Attributes to start with: counts and names only.
        parent: A W3C ``traceparent`` to continue (a Kafka or HTTP header, a stored record's
            trace); an invalid one is ignored and the current context is used.
        start_ns: When the span started (epoch nanoseconds), for work timed before the span.
        server: Whether this span answers a remote caller (an inbound HTTP request).
    """
    tracer = _tracer
    if tracer is None:
        return NO_SPAN
    from opentelemetry import trace

    context = None
    if parent is not None:
        remote = _remote(parent)
        if remote is not None:
            context = trace.set_span_in_context(trace.NonRecordingSpan(remote))
    kind = trace.SpanKind.SERVER if server else trace.SpanKind.INTERNAL
    otel = tracer.start_span(
        name,
        context=context,
        kind=kind,
        attributes=attrs,
        start_time=start_ns,
        record_exception=False,
        set_status_on_exception=False,
    )
    return _Span(otel)


def current_ids() -> tuple[str, str] | None:
    """The current span's (trace id, span id) in hex, or ``None``.

    ``None`` when tracing is off, outside a span, or in a batch the sampler left out (its ids
    would name a trace that no backend holds).
    """
    if _tracer is None:
        return None
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid or not ctx.trace_flags & 1:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def current_traceparent() -> str | None:
    """The current span as a ``traceparent`` header value, or ``None`` (tracing off, no span)."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return _format(ctx.trace_id, ctx.span_id, bool(ctx.trace_flags & 1))


def traceparent(trace_id: str, span_id: str, *, sampled: bool = True) -> str | None:
    """A ``traceparent`` header value from hex ids, or ``None`` when they are not valid ids."""
    value = f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"
    return value if parse_traceparent(value) is not None else None


def parse_traceparent(value: str | bytes | None) -> tuple[str, str, bool] | None:
    """(trace id, parent span id, sampled) of a version-00 ``traceparent``, else ``None``."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    m = _TRACEPARENT.match(value.strip())
    if m is None or m.group(1) == _ZERO_TRACE or m.group(2) == _ZERO_SPAN:
        return None
    return m.group(1), m.group(2), bool(int(m.group(3), 16) & 1)


def _remote(value: str | None) -> Any:
    """The remote ``SpanContext`` a ``traceparent`` names, or ``None`` (invalid, or none)."""
    parsed = parse_traceparent(value)
    if parsed is None:
        return None
    from opentelemetry import trace

    trace_id, span_id, sampled = parsed
    return trace.SpanContext(
        int(trace_id, 16),
        int(span_id, 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(1 if sampled else 0),
    )


def _format(trace_id: int, span_id: int, sampled: bool) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"
