"""The pipeline configuration file: YAML validated by pydantic, errors with line numbers.

Secrets never live in the YAML: ``${env:NAME}`` and ``${file:/path}`` are replaced when loading.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from junction.core.errors import ConfigError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_CHANNEL = re.compile(r"^[a-z0-9_]+\.[a-z0-9_-]{1,63}$")
_SECRET_REF = re.compile(r"\$\{(env|file):([^}]+)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(BaseModel):
    """Which connector reads the pipeline's records; other keys go to the connector's config."""

    model_config = ConfigDict(extra="allow", frozen=True)

    connector: str = Field(..., description="Connector id, e.g. csv_file.")
    schedule: str | None = Field(None, description="Cron expression for polling sources.")
    streams: list[str] | None = Field(
        None,
        description="Streams to read (e.g. [Lead]); default: every stream the connector discovers.",
    )

    def connector_options(self) -> dict[str, Any]:
        """Return the options meant for the connector's own config model."""
        return dict(self.model_extra or {})


class Rule(_Strict):
    """A validation rule: a CEL expression that must be true, or the record goes to quarantine."""

    name: str = Field(..., description="Rule name, recorded with quarantined records.")
    expr: str = Field(..., description="CEL expression over the record (by entity name) .")


class DedupeConfig(_Strict):
    """Send the same alert at most once per channel within a window."""

    key: str = Field(
        "source_key",
        description="JMESPath over the event (record, score, source_key, ...) naming what counts "
        "as the same alert, e.g. record.email.",
    )
    window_s: float = Field(3600.0, gt=0, description="How long a sent alert blocks its repeats.")


class ThrottleConfig(_Strict):
    """At most ``max`` messages per recipient and channel per ``per_s``; the rest wait (or go in
    the route's digest), never dropped."""

    max: int = Field(..., ge=1, description="Messages allowed per recipient per window.")
    per_s: float = Field(3600.0, gt=0, description="The window, in seconds.")


class DigestConfig(_Strict):
    """Gather the route's deliveries per channel and send them as one message per window."""

    window_s: float = Field(900.0, gt=0, description="How long items gather before a digest.")
    max_items: int = Field(100, ge=1, le=10_000, description="A full digest goes out at once.")
    template: str | None = Field(None, description="The channels' template for the digest.")


class EscalationConfig(_Strict):
    """No acknowledgement within ``after_s`` of delivery → the same alert to the next channel."""

    after_s: float = Field(..., gt=0, description="Seconds to wait for an acknowledgement.")
    to: list[str] = Field(..., min_length=1, description="The channels escalated to, in turn.")


class Route(_Strict):
    """A route: a CEL condition and the channels that receive matching records."""

    name: str | None = Field(
        None, description="Route name (default: route<N>, its position); shown with deliveries."
    )
    when: str | None = Field(None, description="CEL condition over the record and `score`.")
    otherwise: list[str] | None = Field(None, description="Targets when no `when` route matched.")
    to: list[str] = Field(default_factory=list, description="Channel names, e.g. webhook.sales.")
    template: str | None = Field(
        None, description="Template name the channels use for this route (default: 'default')."
    )
    dedupe: DedupeConfig | None = Field(None, description="Drop repeats of the same alert.")
    throttle: ThrottleConfig | None = Field(None, description="Per-recipient rate limit.")
    digest: DigestConfig | None = Field(None, description="Send many deliveries as one message.")
    escalate: EscalationConfig | None = Field(
        None, description="Escalate unacknowledged alerts to the next channel."
    )
    reveal_pii: bool = Field(
        False,
        description="Show personal fields (names, emails, phones) in clear in the messages this "
        "route sends to people (SMS, Slack, email subjects); masked by default.",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Route:
        if (self.when is None) == (self.otherwise is None):
            raise ValueError("a route has either `when` (with `to`) or `otherwise`")
        if self.when is not None and not self.to:
            raise ValueError("a `when` route needs `to`")
        if self.name is not None and not _NAME.match(self.name):
            raise ValueError(f"route name {self.name!r} must match {_NAME.pattern}")
        return self

    @property
    def targets(self) -> list[str]:
        """The channel names this route delivers to."""
        return list(self.otherwise if self.otherwise is not None else self.to)

    def key(self, position: int) -> str:
        """The route's name, or ``route<position>`` when it has none."""
        return self.name or f"route{position}"


class ChallengerConfig(_Strict):
    """An A/B test: a challenger version scores a stable share of the records."""

    version: str = Field(..., description="Registry version of the challenger model.")
    share: float = Field(
        0.1, gt=0.0, lt=1.0, description="Share of records (by a stable hash of the key)."
    )
    salt: str = Field(
        "ab", min_length=1, max_length=64, description="Hash salt; change it to re-draw."
    )


class DriftConfig(_Strict):
    """Scheduled drift checks of the production model against its training reference."""

    every_s: float = Field(3600.0, ge=1.0, description="Seconds between checks.")
    window_s: float = Field(86400.0, gt=0.0, description="Scored records of the last N seconds.")
    min_records: int = Field(200, ge=1, description="Fewer records: status 'insufficient'.")
    psi_warn: float = Field(0.1, gt=0.0, description="PSI at or above this warns.")
    psi_alert: float = Field(0.25, gt=0.0, description="PSI at or above this alerts.")
    ks_alert: float = Field(
        0.15, gt=0.0, le=1.0, description="KS statistic at or above this alerts (numerics)."
    )
    retrain: bool = Field(False, description="Request retraining when an alert fires.")


class OutcomeConfig(_Strict):
    """How a later version of a record (e.g. a CRM poll) says what became of it."""

    kind: str = Field("converted", min_length=1, max_length=32, description="Outcome name.")
    positive_when: str = Field(..., description="CEL over `record`: the outcome happened.")
    negative_when: str | None = Field(
        None, description="CEL over `record`: the outcome will not happen (e.g. disqualified)."
    )


class ScoringConfig(_Strict):
    """Which model scores the pipeline's records."""

    # dumps say ``thresholds``, as configs do, so a dump validates again
    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True)

    model: str = Field("lead-score", description="Model name in the registry.")
    version: str | None = Field(None, description="Pin a version; default: the production stage.")
    scorer: str = Field(
        "sklearn_lead",
        description="Scorer plugin (entry point junction.scorers): sklearn_lead or rules_lead.",
    )
    rules: str | None = Field(
        None, description="Rules file for rules_lead (default: the built-in lead rules)."
    )
    configured_thresholds: tuple[float, float, float] | None = Field(
        None,
        alias="thresholds",
        description="Grade A/B/C lower bounds; below the last is D. Default: the model card's "
        "grade_thresholds (set at training), else 0.75, 0.5, 0.25.",
    )
    challenger: ChallengerConfig | None = Field(None, description="A/B test, if any.")
    drift: DriftConfig | None = Field(None, description="Scheduled drift checks, if any.")
    outcome: OutcomeConfig | None = Field(
        None, description="Record outcomes (labels) from later versions of the records."
    )

    @property
    def thresholds(self) -> tuple[float, float, float]:
        """The configured thresholds, else the default ones (for scorers without a model card).

        The registry's scorer reads ``configured_thresholds`` instead: unset, the model card's
        ``grade_thresholds`` apply (:func:`junction.pipeline.score.load_scorer`).
        """
        if self.configured_thresholds is not None:
            return self.configured_thresholds
        return (0.75, 0.5, 0.25)  # scoring.grading.DEFAULT_THRESHOLDS; config imports no scoring


class ArchiveConfig(_Strict):
    """Where file drops go once processed."""

    processed: str = Field("processed", description="Folder for fully committed files.")
    failed: str = Field(
        "rejected", description="Folder for files that could not be read (with a reason file)."
    )


class PipelineConfig(_Strict):
    """One pipeline: source → mapping → rules → scoring → routes."""

    source: SourceConfig
    mapping: str = Field(..., description="Built-in mapping id (e.g. csv.lead) or a YAML path.")
    rules: list[Rule] = Field(default_factory=list, description="Validation rules.")
    scoring: ScoringConfig | None = Field(None, description="Scoring; omit to skip scoring.")
    routes: list[Route] = Field(default_factory=list, description="Delivery routes.")
    archive: ArchiveConfig = Field(default_factory=ArchiveConfig)
    batch_size: int = Field(1000, ge=1, le=100_000, description="Records per transaction.")
    workers: int | Literal["auto"] = Field(
        "auto",
        description="Processes that prepare batches in parallel (0 = inline; auto = one per CPU "
        "for files over 8 MB).",
    )

    @field_validator("rules", mode="before")
    @classmethod
    def _rules_from_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v, "expr": v} if isinstance(v, str) else v for v in value]
        return value


class DeliveryConfig(_Strict):
    """The delivery worker's retry policy."""

    schedule_s: list[float] = Field(
        [5, 300, 1800, 7200, 18000, 36000, 36000],
        description="Delay before each retry (Standard Webhooks schedule); jitter ±10 %.",
    )
    concurrency: int = Field(50, ge=1, le=1000, description="Deliveries in flight at once.")
    per_endpoint_concurrency: int = Field(
        10, ge=1, le=1000, description="Deliveries in flight at once to any one channel."
    )
    lease_s: float = Field(60.0, gt=0, description="How long a claimed delivery stays leased.")
    disable_after_s: float | None = Field(
        5 * 86400.0,
        gt=0,
        description="An endpoint failing without a single success for this long is disabled "
        "(an endpoint.disabled event and alert); null never auto-disables.",
    )
    max_pending: int | None = Field(
        1_000_000,
        ge=1,
        description="Pending deliveries past which pushed records (the records API, inbound "
        "hooks) are refused with 503 and Retry-After until the workers catch up, so a long "
        "receiver outage cannot grow the outbox without bound; null: no cap.",
    )

    @property
    def max_attempts(self) -> int:
        """First attempt plus one per scheduled retry."""
        return len(self.schedule_s) + 1


class EgressConfig(_Strict):
    """Where user-configured URLs (webhooks, Slack) may connect: public addresses only, unless
    allow-listed.  Checked on the resolved address at send time (SSRF protection)."""

    allow_networks: list[str] = Field(
        default_factory=list,
        description="CIDRs allowed although private/loopback, e.g. [10.20.0.0/16]; also read "
        "from JUNCTION_EGRESS_ALLOW (comma-separated).",
    )


class AlertsConfig(_Strict):
    """Where the hub's own alerts go (endpoint disabled, retries exhausted, drift, ...)."""

    to: list[str] = Field(default_factory=list, description="Channels, e.g. [slack.ops].")
    kinds: list[str] | None = Field(
        None, description="Event kinds that alert (default: every alerting kind)."
    )


class HookConfig(_Strict):
    """An inbound webhook source: ``POST /hooks/{source}`` feeds a pipeline once verified."""

    pipeline: str = Field(..., description="The pipeline that receives the pushed records.")
    verifier: str = Field(
        "standard_webhooks", description="How the raw body is verified (standard_webhooks, ...)."
    )
    secret: SecretStr | None = Field(None, description="The verifier's secret (use ${env:...}).")
    tolerance_s: int = Field(300, ge=1, le=3600, description="Replay window for timestamps.")
    max_body_bytes: int = Field(1_048_576, ge=1, description="Larger bodies are answered 413.")
    options: dict[str, Any] = Field(default_factory=dict, description="Verifier-specific options.")


class ApiConfig(_Strict):
    """The control plane served by ``junction serve``."""

    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(8080, ge=0, le=65535, description="Port (0 picks a free one).")
    issuer: str = Field("junction", description="JWT `iss` claim issued and required.")
    audience: str = Field("junction-api", description="JWT `aud` claim issued and required.")
    token_ttl_s: int = Field(900, ge=30, le=86400, description="Access token lifetime.")
    signing_key: SecretStr | None = Field(
        None,
        description="HS256 key for access tokens (use ${env:...}); by default a random key is "
        "created in the models folder's parent on first start.",
    )
    max_body_bytes: int = Field(4_194_304, ge=1024, description="Request body limit (413 above).")
    rate_limit: str = Field(
        "200/second",
        description="Default per-client limit, a token bucket: the amount is the burst, refilled "
        "continuously over the period (e.g. 200/second, 30/minute).",
    )
    rate_limit_storage: str = Field(
        "memory://",
        description="Where the buckets live: memory:// (per process) or redis://host:6379 "
        "(shared by every instance, updated atomically).",
    )
    hooks: dict[str, HookConfig] = Field(default_factory=dict, description="Inbound webhooks.")
    max_in_flight: int = Field(
        256,
        ge=1,
        le=100_000,
        description="Requests one instance serves at once; past it every request but the "
        "probes gets 503 with Retry-After at once instead of waiting in a queue.",
    )
    shed_ratio: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Share of max_in_flight past which requests other than ingestion and "
        "authentication (listings, exports, operations, the dashboard) shed with 503, so the "
        "rest stays reserved for them.",
    )
    client_max_in_flight: int = Field(
        32,
        ge=1,
        le=100_000,
        description="Requests one authenticated client may have in flight at once; the next "
        "gets 429 with Retry-After at once.",
    )
    shutdown_grace_s: float = Field(20.0, gt=0, description="Bound on graceful shutdown.")


class BusConfig(_Strict):
    """Kafka between the stages (``junction worker --role ...``; ADR-0018).

    Stage topics are ``<topic_prefix>.raw|canonical|scored.<entity>.v1``; each role reads in
    the consumer group ``<group_prefix>.<role>``.  Without this section the hub runs every
    stage in one process, as before.
    """

    bootstrap_servers: str = Field(..., min_length=1, description="host:port[,host:port...]")
    topic_prefix: str = Field(
        "junction", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="First part of topic names."
    )
    group_prefix: str = Field(
        "junction", pattern=r"^[A-Za-z0-9._-]{1,64}$", description="First part of group ids."
    )
    partitions: int = Field(6, ge=1, le=1024, description="Partitions of topics it creates.")
    replication_factor: int = Field(1, ge=1, le=16, description="Replicas of topics it creates.")
    batch_size: int = Field(500, ge=1, le=10_000, description="Messages per stage transaction.")
    poll_timeout_s: float = Field(0.5, gt=0, le=30, description="Longest wait for a message.")
    publish_timeout_s: float = Field(
        30.0, gt=0, le=600, description="How long the relay waits for the broker's acks."
    )
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Extra librdkafka settings for every client (security.protocol, sasl.*).",
    )


class PrivacyConfig(_Strict):
    """Encryption at rest of personal data, and erasure by subject (ADR-0021).

    Personal fields of stored records, quarantined source bytes and outbox payloads are sealed
    with AES-256-GCM under a data key per subject (a person: keyed by email, else phone, else the
    record's source key); each data key is wrapped by the key-encryption key named here.
    """

    encrypt: bool = Field(True, description="Encrypt personal data in the store.")
    kek: str = Field(
        "env:JUNCTION_KEK",
        pattern=r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+|plugin:[a-z0-9_.-]+)$",
        description="Where the key-encryption key comes from: env:NAME (32+ bytes of secret), "
        "file:/path (created once, 0600, when absent) or plugin:NAME (a junction.kek_providers "
        "entry point, e.g. a cloud KMS).",
    )
    key_cache: int = Field(
        100_000, ge=0, le=10_000_000, description="Unwrapped data keys each process keeps."
    )


class TracingConfig(_Strict):
    """OpenTelemetry tracing of ingest batches and deliveries (ADR-0022).

    Needs the ``tracing`` extra (``pip install 'junction-hub[tracing]'``) unless ``exporter`` is
    ``none``.  The SDK's standard ``OTEL_*`` variables apply where it reads them
    (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` when ``endpoint`` is unset, ``OTEL_SERVICE_NAME``,
    ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_BSP_*``).
    """

    exporter: Literal["none", "console", "otlp"] = Field(
        "none", description="Where spans go: nowhere (tracing off), stdout, or OTLP/HTTP."
    )
    endpoint: str | None = Field(
        None,
        pattern=r"^https?://",
        description="The OTLP/HTTP traces URL, e.g. http://collector:4318/v1/traces.",
        examples=["http://127.0.0.1:4318/v1/traces"],
    )
    service_name: str = Field(
        "junction", min_length=1, max_length=128, description="The service.name of the spans."
    )
    sample_ratio: float = Field(
        1.0, ge=0.0, le=1.0, description="Share of ingest batches traced (0 to 1)."
    )


class HubConfig(_Strict):
    """The whole configuration file."""

    store: str = Field("sqlite:///junction.db", description="SQLAlchemy URL of the store.")
    models_dir: str = Field(".junction/models", description="Model registry folder.")
    pipelines: dict[str, PipelineConfig] = Field(default_factory=dict)
    channels: dict[str, dict[str, Any]] = Field(default_factory=dict)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    egress: EgressConfig = Field(default_factory=EgressConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    bus: BusConfig | None = Field(None, description="Kafka between stages (worker roles).")
    privacy: PrivacyConfig | None = Field(
        None, description="Encryption at rest of personal data; erasure by subject."
    )
    tracing: TracingConfig = Field(
        default_factory=TracingConfig, description="OpenTelemetry tracing (off by default)."
    )

    @model_validator(mode="after")
    def _names_and_targets(self) -> HubConfig:
        for name in self.pipelines:
            if not _NAME.match(name):
                raise ValueError(f"pipeline name {name!r} must match {_NAME.pattern}")
        for name in self.channels:
            if not _CHANNEL.match(name):
                raise ValueError(f"channel name {name!r} must look like kind.name (webhook.sales)")
        for pname, p in self.pipelines.items():
            seen: set[str] = set()
            for i, route in enumerate(p.routes):
                if route.key(i) in seen:
                    raise ValueError(f"pipeline {pname}: two routes are named {route.key(i)!r}")
                seen.add(route.key(i))
                escalation = route.escalate.to if route.escalate else []
                for target in [*route.targets, *escalation]:
                    if target not in self.channels:
                        raise ValueError(
                            f"pipeline {pname}: route target {target!r} is not a channel"
                        )
        for target in self.alerts.to:
            if target not in self.channels:
                raise ValueError(f"alerts: target {target!r} is not a channel")
        for source, hook in self.api.hooks.items():
            if not _NAME.match(source):
                raise ValueError(f"hook source {source!r} must match {_NAME.pattern}")
            if hook.pipeline not in self.pipelines:
                raise ValueError(f"hook {source}: pipeline {hook.pipeline!r} is not defined")
        return self


def _resolve_secrets(value: Any, base: Path) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            kind, ref = m.group(1), m.group(2).strip()
            if kind == "env":
                if ref not in os.environ:
                    raise ConfigError(f"environment variable {ref} is not set")
                return os.environ[ref]
            try:
                return (base / ref).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"secret file {ref} cannot be read") from exc

        return _SECRET_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _resolve_secrets(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_secrets(v, base) for v in value]
    return value


def _scalar(node: yaml.Node) -> Any:
    # the safe loader's own constructor: an empty value (`rules:`) is null, as YAML says
    return yaml.SafeLoader("").construct_object(node, deep=True)


def _construct(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if key in out:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            out[key] = _construct(value_node, (*path, key), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, (*path, i), lines) for i, v in enumerate(node.value)]
    return _scalar(node)


def parse_yaml_with_lines(text: str, source: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """Parse YAML safely, returning the data and a map from key path to line number."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(
            f"{source}: {where}invalid YAML ({getattr(exc, 'problem', exc)})"
        ) from exc
    lines: dict[tuple[Any, ...], int] = {}
    data = {} if node is None else _construct(node, (), lines)
    return data, lines


def format_validation_error(
    exc: ValidationError, lines: dict[tuple[Any, ...], int], source: str
) -> str:
    """Render pydantic errors as ``source:line: path: message`` lines."""
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        line = None
        for i in range(len(loc), -1, -1):
            if loc[:i] in lines:
                line = lines[loc[:i]]
                break
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        out.append(f"{source}:{line or '?'}: {dotted}: {err['msg']}")
    return "\n".join(out)


def load_config(path: str | Path) -> HubConfig:
    """Load and validate a configuration file; raise ConfigError with line numbers."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}") from exc
    data, lines = parse_yaml_with_lines(text, str(p))
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    try:
        cfg = HubConfig.model_validate(_resolve_secrets(data, p.parent))
    except ValidationError as exc:
        raise ConfigError(
            "invalid configuration", details=format_validation_error(exc, lines, str(p))
        ) from exc
    return _relative_to(cfg, p.parent)


def _relative_to(cfg: HubConfig, base: Path) -> HubConfig:
    """Resolve relative file paths in the config against the config file's folder."""
    store = cfg.store
    prefix = "sqlite:///"
    if store.startswith(prefix) and not store.startswith(prefix + "/") and ":memory:" not in store:
        store = prefix + str((base / store[len(prefix) :]).resolve())
    models_dir = str((base / cfg.models_dir).resolve())
    pipelines = {}
    for name, p in cfg.pipelines.items():
        src = p.source.model_dump()
        if isinstance(src.get("path"), str) and not os.path.isabs(src["path"]):
            src["path"] = str((base / src["path"]).resolve())
        archive = ArchiveConfig(
            processed=str((base / p.archive.processed).resolve()),
            failed=str((base / p.archive.failed).resolve()),
        )
        mapping = p.mapping
        if mapping.endswith((".yaml", ".yml")) and not os.path.isabs(mapping):
            mapping = str((base / mapping).resolve())
        scoring = p.scoring
        if scoring is not None and scoring.rules and not os.path.isabs(scoring.rules):
            scoring = scoring.model_copy(update={"rules": str((base / scoring.rules).resolve())})
        pipelines[name] = p.model_copy(
            update={
                "source": SourceConfig.model_validate(src),
                "archive": archive,
                "mapping": mapping,
                "scoring": scoring,
            }
        )
    return cfg.model_copy(update={"store": store, "models_dir": models_dir, "pipelines": pipelines})
