"""Configuration of the Kafka channel: where to produce, how records are keyed, and security.

The producer is always idempotent with ``acks=all``: a retry inside librdkafka never duplicates or
reorders a record within a partition, and a record is acknowledged only once every in-sync replica
has it.  ``producer_options`` passes other librdkafka settings through, but refuses the ones that
would weaken those guarantees or that have a dedicated (secret-aware) field here.
"""

from __future__ import annotations

import re
import string
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# the fields a topic template may name: values come from the event (entity, pipeline) or the
# delivery (type), and each must itself be a legal topic-name piece
TOPIC_FIELDS = frozenset({"entity", "pipeline", "type"})
TOPIC_CHARS = re.compile(r"^[A-Za-z0-9._-]+$")
MAX_TOPIC_LEN = 249

# settings the channel owns: changing them would break idempotence, acks=all, the delivery
# timeout or the callbacks, or would bypass the secret-aware fields below
_OWNED_OPTIONS = frozenset(
    {
        "bootstrap.servers",
        "metadata.broker.list",
        "enable.idempotence",
        "message.timeout.ms",
        "delivery.timeout.ms",
        "transactional.id",
        "linger.ms",
        "queue.buffering.max.ms",
        "compression.type",
        "compression.codec",
        "security.protocol",
        "client.id",
        "error_cb",
        "on_delivery",
        "logger",
        "stats_cb",
        "throttle_cb",
        "oauth_cb",
    }
)
_OWNED_PREFIXES = ("sasl.", "ssl.", "ssl_")
_SECRET_WORDS = ("password", "secret", "token", "credential")
_ACKS_KEYS = ("acks", "request.required.acks")


class KafkaConfig(BaseModel):
    """One Kafka target: a cluster and a topic (or a topic template).

    Each record is produced with ``key`` = the event's ``record_id`` (so all events of one record
    land on one partition, in order) and the headers ``event-id`` (the delivery id: consumers dedupe
    on it), ``event-type`` and ``content-type: application/json``.
    """

    # inputs stay out of validation errors: a rejected password must not be echoed into logs
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    bootstrap_servers: str = Field(
        description="Comma-separated host:port list of brokers to bootstrap from.",
        examples=["kafka-1.internal:9092,kafka-2.internal:9092"],
    )
    topic: str = Field(
        description="Topic to produce to. May name event fields in braces: {entity}, "
        "{pipeline}, {type} (the event type), e.g. junction.scored.{entity}.v1.",
        examples=["junction.scored.{entity}.v1", "crm.leads"],
    )
    value: Literal["event", "record"] = Field(
        default="event",
        description="What the message value holds: 'event' = the whole event JSON as delivered; "
        "'record' = only record_id, entity, record and score.",
    )
    key_field: str = Field(
        default="record_id",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Top-level event field whose value is the message key (per-key order). An "
        "event without it is produced with no key.",
    )
    delivery_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=300,
        description="How long one send may wait for the broker's acknowledgement, internal "
        "retries included (librdkafka message.timeout.ms). Past it the send is retryable.",
    )
    linger_ms: int = Field(
        default=5,
        ge=0,
        le=1000,
        description="How long the producer waits to fill a batch (concurrent sends share it).",
    )
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        default="none", description="Batch compression codec."
    )
    close_timeout_s: float = Field(
        default=10.0,
        ge=0,
        le=300,
        description="On close, how long to wait for messages still in flight before failing them "
        "as retryable.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="librdkafka security.protocol."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism (needed with SASL_PLAINTEXT and SASL_SSL)."
    )
    sasl_username: str | None = Field(default=None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(
        default=None,
        description="SASL password. Reference it from the environment, never inline it.",
        examples=["${env:KAFKA_PASSWORD}"],
    )
    ssl_ca_location: str | None = Field(
        default=None, description="Path to the CA bundle that signs the brokers' certificates."
    )
    ssl_certificate_location: str | None = Field(
        default=None, description="Path to the client certificate (mutual TLS)."
    )
    ssl_key_location: str | None = Field(
        default=None, description="Path to the client private key (mutual TLS)."
    )
    ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of the client private key, if it is encrypted."
    )
    ssl_verify_hostname: bool = Field(
        default=True,
        description="Check that the broker certificate names the broker host "
        "(ssl.endpoint.identification.algorithm=https).",
    )
    producer_options: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Extra librdkafka producer settings (e.g. batch.num.messages, "
        "message.max.bytes). Settings that weaken idempotence or acks=all, that this config "
        "owns, or that hold secrets are refused.",
        examples=[{"batch.num.messages": 10000, "message.max.bytes": 2000000}],
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        hosts = [h.strip() for h in value.split(",")]
        if not hosts or any(not h or "@" in h or "/" in h for h in hosts):
            # '@' would mean credentials in the address, which reprs and logs would show
            raise ValueError("bootstrap_servers must be a comma-separated host:port list")
        return ",".join(hosts)

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, value: str) -> str:
        if not value:
            raise ValueError("the topic is empty")
        try:
            parts = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise ValueError(f"the topic template is malformed: {exc}") from None
        literal = ""
        for text, name, spec, conversion in parts:
            literal += text
            if name is None:
                continue
            if name not in TOPIC_FIELDS or spec or conversion:
                raise ValueError(
                    f"the topic template may only name {sorted(TOPIC_FIELDS)}, as {{entity}}"
                )
        if literal and not TOPIC_CHARS.match(literal):
            raise ValueError("a topic may only hold letters, digits, '.', '_' and '-'")
        if len(literal) > MAX_TOPIC_LEN:
            raise ValueError(f"a topic name is at most {MAX_TOPIC_LEN} characters")
        return value

    @field_validator("producer_options")
    @classmethod
    def _check_options(
        cls, options: dict[str, str | int | float | bool]
    ) -> dict[str, str | int | float | bool]:
        for key, value in options.items():
            name = key.strip().lower()
            if name in _ACKS_KEYS:
                if str(value).strip().lower() not in ("all", "-1"):
                    raise ValueError(f"{key!r} must stay 'all': the channel needs acks=all")
                continue
            if name in _OWNED_OPTIONS or name.startswith(_OWNED_PREFIXES):
                raise ValueError(
                    f"{key!r} is set by the channel or by a dedicated field; set that instead"
                )
            if any(word in name for word in _SECRET_WORDS):
                raise ValueError(f"{key!r} looks like a secret; producer_options are not masked")
            if name in ("max.in.flight.requests.per.connection", "max.in.flight") and not (
                isinstance(value, int) and 1 <= value <= 5
            ):
                raise ValueError(f"{key!r} must be 1..5 for the idempotent producer")
            if name in ("retries", "message.send.max.retries") and not (
                isinstance(value, int) and value >= 1
            ):
                raise ValueError(f"{key!r} must be at least 1 for the idempotent producer")
        return options

    @model_validator(mode="after")
    def _check_security(self) -> KafkaConfig:
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise ValueError(
                f"{self.security_protocol} needs sasl_mechanism, sasl_username and sasl_password"
            )
        if not sasl and (self.sasl_mechanism or self.sasl_username or self.sasl_password):
            raise ValueError("sasl_* settings need security_protocol SASL_PLAINTEXT or SASL_SSL")
        tls = self.security_protocol in ("SSL", "SASL_SSL")
        ssl_set = (
            self.ssl_ca_location,
            self.ssl_certificate_location,
            self.ssl_key_location,
            self.ssl_key_password,
        )
        if not tls and any(v is not None for v in ssl_set):
            raise ValueError("ssl_* settings need security_protocol SSL or SASL_SSL")
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            raise ValueError("mutual TLS needs both ssl_certificate_location and ssl_key_location")
        return self

    def librdkafka(self) -> dict[str, str | int | float | bool]:
        """Return the producer settings, secrets revealed (for the client only, never logged)."""
        conf: dict[str, str | int | float | bool] = dict(self.producer_options)
        conf.update(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": self.linger_ms,
                "compression.type": self.compression,
                "message.timeout.ms": max(1, round(self.delivery_timeout_s * 1000)),
                "security.protocol": self.security_protocol,
                "client.id": "junction",
            }
        )
        if self.sasl_mechanism is not None:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.security_protocol in ("SSL", "SASL_SSL"):
            conf["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_verify_hostname else "none"
            )
        for key, path in (
            ("ssl.ca.location", self.ssl_ca_location),
            ("ssl.certificate.location", self.ssl_certificate_location),
            ("ssl.key.location", self.ssl_key_location),
        ):
            if path is not None:
                conf[key] = path
        if self.ssl_key_password is not None:
            conf["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        return conf
