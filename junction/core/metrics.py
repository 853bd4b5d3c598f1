"""Prometheus metrics on Junction's own registry (prometheus-client).

The pipeline, the delivery worker, the scoring API and the service increment these through the
small ``observe_*`` functions below, so call sites stay one line and label sets stay consistent.
Figures that live in the store (the outbox lag) are computed at scrape time by a custom collector
that the API hands a query function to: this module imports nothing else from the repository.

Labels carry pipeline, stage, channel and error-code names only: never record contents.
"""

from __future__ import annotations

import contextlib
from collections import Counter as _Tally
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "CONTENT_TYPE_LATEST",
    "REGISTRY",
    "STAGES",
    "ApiLoadCollector",
    "OutboxLagCollector",
    "exposition",
    "observe_batch",
    "observe_delivery",
    "observe_drift",
    "observe_file",
    "observe_hook_deferred",
    "observe_model_reload",
    "observe_quarantine",
    "observe_run",
    "observe_schedule_fire",
    "observe_scoring",
    "set_consumer_lag",
]

REGISTRY = CollectorRegistry(auto_describe=True)

# the order records pass through a pipeline; each stage may quarantine some of what it received
STAGES = ("extract", "normalize", "validate", "score", "route", "store")

RECORDS_IN = Counter(
    "junction_records_in",
    "Records that entered a pipeline stage.",
    ["pipeline", "stage"],
    registry=REGISTRY,
)
RECORDS_OUT = Counter(
    "junction_records_out",
    "Records that left a pipeline stage successfully.",
    ["pipeline", "stage"],
    registry=REGISTRY,
)
QUARANTINED = Counter(
    "junction_quarantined",
    "Items quarantined (dead letters), by pipeline, stage and error code.",
    ["pipeline", "stage", "code"],
    registry=REGISTRY,
)
HOOKS_DEFERRED = Counter(
    "junction_hooks_deferred",
    "Signed inbound deliveries answered 503 (the store or the pipeline was not ready; the "
    "sender retries), by hook source and error code.",
    ["source", "code"],
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "junction_deliveries",
    "Delivery attempts by channel and outcome (delivered, retry, failed, gone).",
    ["channel", "outcome"],
    registry=REGISTRY,
)
DELIVERY_SECONDS = Histogram(
    "junction_delivery_seconds",
    "Time one delivery attempt took, by channel.",
    ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
SCORING_SECONDS = Histogram(
    "junction_scoring_seconds",
    "Time the scoring API took to score one request.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
RUNS = Counter(
    "junction_runs",
    "Pipeline runs by outcome (succeeded, failed, interrupted).",
    ["pipeline", "outcome"],
    registry=REGISTRY,
)
FILES = Counter(
    "junction_files",
    "File drops by outcome (claimed, processed, rejected).",
    ["pipeline", "outcome"],
    registry=REGISTRY,
)
SCHEDULE_FIRES = Counter(
    "junction_schedule_fires",
    "Cron schedule slots this process fired (each slot fires once across processes).",
    ["pipeline"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "junction_consumer_lag",
    "Messages a consumer is behind the end of its partition (set by Kafka sources).",
    ["pipeline", "topic", "partition"],
    registry=REGISTRY,
)

DRIFT_STATUS = Gauge(
    "junction_drift_status",
    "Latest drift check of a pipeline's production model: 0 ok, 1 warn, 2 alert, "
    "-1 not compared (insufficient data or no reference). Set by the process that checked.",
    ["pipeline", "model"],
    registry=REGISTRY,
)
DRIFT_MAX_PSI = Gauge(
    "junction_drift_max_psi",
    "Largest population stability index of the latest drift check, by pipeline and model.",
    ["pipeline", "model"],
    registry=REGISTRY,
)
_DRIFT_LEVELS = {"ok": 0, "warn": 1, "alert": 2}


def observe_drift(pipeline: str, model: str, status: str, max_psi: float | None) -> None:
    """Publish one drift check's outcome (status and largest PSI)."""
    DRIFT_STATUS.labels(pipeline, model).set(_DRIFT_LEVELS.get(status, -1))
    if max_psi is not None:
        DRIFT_MAX_PSI.labels(pipeline, model).set(max_psi)


def observe_batch(
    pipeline: str, read: int, stored: int, quarantined: Iterable[tuple[str, str]]
) -> None:
    """Count one committed batch through the stages.

    Args:
        pipeline: The pipeline's name.
        read: Records the source yielded, rows that failed to parse included.
        stored: Records written to the store.
        quarantined: ``(stage, error code)`` of every quarantined record of the batch.
    """
    tally = _Tally(quarantined)
    by_stage: _Tally[str] = _Tally()
    for (stage, code), n in tally.items():
        by_stage[stage] += n
        QUARANTINED.labels(pipeline, stage, code).inc(n)
    n = read
    for stage in STAGES[:-1]:
        RECORDS_IN.labels(pipeline, stage).inc(n)
        n = max(0, n - by_stage.get(stage, 0))
        RECORDS_OUT.labels(pipeline, stage).inc(n)
    RECORDS_IN.labels(pipeline, "store").inc(n)
    RECORDS_OUT.labels(pipeline, "store").inc(stored)


def observe_stage(pipeline: str, stage: str, entered: int, left: int) -> None:
    """Count records through one stage of a stage worker (``junction worker``)."""
    RECORDS_IN.labels(pipeline, stage).inc(entered)
    RECORDS_OUT.labels(pipeline, stage).inc(left)


def observe_hook_deferred(source: str, code: str) -> None:
    """Count one inbound delivery the hub could not store and asked the sender to retry."""
    HOOKS_DEFERRED.labels(source, code).inc()


def observe_quarantine(pipeline: str, stage: str, code: str) -> None:
    """Count one item quarantined outside a batch (a whole file, a dead delivery)."""
    QUARANTINED.labels(pipeline, stage, code).inc()


def observe_delivery(
    pipeline: str, channel: str, outcome: str, seconds: float, code: str | None = None
) -> None:
    """Count one delivery attempt; a ``failed`` one is also a dead letter with ``code``."""
    DELIVERIES.labels(channel, outcome).inc()
    DELIVERY_SECONDS.labels(channel).observe(seconds)
    if outcome == "failed":
        QUARANTINED.labels(pipeline, "deliver", code or "unknown").inc()


MODEL_RELOADS = Counter(
    "junction_model_reloads",
    "Production model reloads after a stage change, by owner (api:<pipeline>, "
    "pipeline:<name>), model and outcome (switched, failed).",
    ["owner", "model", "outcome"],
    registry=REGISTRY,
)


def observe_model_reload(owner: str, model: str, outcome: str) -> None:
    """Count one reload after a promotion or rollback: ``switched`` or ``failed``."""
    MODEL_RELOADS.labels(owner, model, outcome).inc()


def observe_scoring(seconds: float) -> None:
    """Record how long one scoring API request took (called by the score routes)."""
    SCORING_SECONDS.observe(seconds)


def observe_run(pipeline: str, outcome: str) -> None:
    """Count one finished pipeline run."""
    RUNS.labels(pipeline, outcome).inc()


def observe_file(pipeline: str, outcome: str, n: int = 1) -> None:
    """Count file drops claimed, processed or rejected."""
    if n:
        FILES.labels(pipeline, outcome).inc(n)


def observe_schedule_fire(pipeline: str) -> None:
    """Count a cron slot this process fired."""
    SCHEDULE_FIRES.labels(pipeline).inc()


def set_consumer_lag(pipeline: str, topic: str, partition: int, lag: int) -> None:
    """Set a Kafka consumer's lag for one partition."""
    CONSUMER_LAG.labels(pipeline, topic, str(partition)).set(lag)


def clear_consumer_lag(pipeline: str, topic: str, partition: int) -> None:
    """Forget one partition's lag (the consumer gave the partition away)."""
    with contextlib.suppress(KeyError):  # never set
        CONSUMER_LAG.remove(pipeline, topic, str(partition))


class OutboxLagCollector(Collector):
    """``junction_outbox_lag_seconds``: age of the oldest due pending delivery, at scrape time.

    ``lag`` queries the store; it returns ``None`` when the store cannot answer, and the metric is
    then left out of the scrape (an absent series alerts, a stale zero would not).
    """

    def __init__(self, lag: Callable[[], float | None]) -> None:
        """Collect from ``lag`` (seconds; 0 when nothing is due)."""
        self._lag = lag

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the gauge, computed now."""
        value = self._lag()
        if value is None:
            return
        yield GaugeMetricFamily(
            "junction_outbox_lag_seconds",
            "Seconds the oldest due pending delivery has waited (0 when none is due).",
            value=value,
        )


class ApiLoadCollector(Collector):
    """One API instance's load at scrape time, read from its in-flight gate and rate limiter.

    ``junction_api_requests_in_flight``: requests being served now (probes not counted);
    ``junction_api_requests_refused_total{reason}``: requests refused at once since start, by
    reason (``client_limit`` 429, ``shed`` and ``overloaded`` 503 from the in-flight gate;
    ``rate_limited`` 429 and ``limiter_unavailable`` 503 from the rate limiter).
    """

    def __init__(
        self, in_flight: Callable[[], int], *refused: Callable[[], Mapping[str, int]]
    ) -> None:
        """Read the figures from ``in_flight`` and each of ``refused`` at each scrape."""
        self._in_flight = in_flight
        self._refused = refused

    def collect(self) -> Iterator[Metric]:
        """Yield the gauge and the counter, read now."""
        yield GaugeMetricFamily(
            "junction_api_requests_in_flight",
            "API requests being served by this instance now (probes not counted).",
            value=self._in_flight(),
        )
        refused = CounterMetricFamily(
            "junction_api_requests_refused",
            "API requests this instance refused at once: client_limit (429), shed and "
            "overloaded (503), rate_limited (429), limiter_unavailable (503).",
            labels=["reason"],
        )
        counts: dict[str, int] = {}
        for source in self._refused:
            for reason, n in source().items():
                counts[reason] = counts.get(reason, 0) + n
        for reason, n in sorted(counts.items()):
            refused.add_metric([reason], n)
        yield refused


class _Chain(Collector):
    """Exposes a registry's metrics as one collector of another (per-scrape) registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()


def exposition(*extra: Collector) -> bytes:
    """Render :data:`REGISTRY` plus ``extra`` collectors in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Chain(REGISTRY))
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry)
