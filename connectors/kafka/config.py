"""Configuration of the ``kafka`` source connector: brokers, topics, group, payload format.

``format: json`` reads plain JSON objects and needs no schema registry.  ``jsonschema`` reads
Confluent-framed JSON (magic byte, schema id, JSON) and validates each message against the
JSON Schema the registry at ``schema_registry_url`` holds for its id (needs the ``jsonschema``
package).  ``avro`` is accepted here but refused at read time: it needs fastavro (confluent-kafka's
``schemaregistry`` and ``avro`` extras), which the hub does not install.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class KafkaConfig(BaseModel):
    """Options of the ``kafka`` connector."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap_servers: str = Field(
        ...,
        min_length=1,
        description="Comma-separated host:port list of brokers to bootstrap from.",
        examples=["kafka-1:9092,kafka-2:9092"],
    )
    topics: list[str] = Field(
        ...,
        min_length=1,
        description="Topics to consume; together they form one stream (named by them, joined "
        "with ',').",
        examples=[["crm.leads"]],
    )
    group_id: str = Field(
        ...,
        min_length=1,
        description="Consumer group: members of one group split the topics' partitions.",
        examples=["junction-leads"],
    )
    format: Literal["json", "jsonschema", "avro"] = Field(
        "json",
        description="Payload format: json (plain JSON objects); jsonschema (Confluent-framed "
        "JSON validated against the registry's schema); avro (not supported yet: needs fastavro).",
    )
    schema_registry_url: str | None = Field(
        None,
        description="Schema registry base URL; required by (and only used with) jsonschema and "
        "avro.",
        examples=["http://schema-registry:8081"],
    )
    schema_registry_username: str | None = Field(
        None, description="Basic-auth user of the schema registry, if it needs one."
    )
    schema_registry_password: SecretStr | None = Field(
        None, description="Basic-auth password of the schema registry."
    )
    security_protocol: Literal["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"] = Field(
        "plaintext", description="How to talk to the brokers (librdkafka security.protocol)."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism, with a sasl_* security_protocol."
    )
    username: str | None = Field(None, description="SASL user name.")
    password: SecretStr | None = Field(None, description="SASL password.")
    batch_size: int = Field(
        500, ge=1, le=100_000, description="At most this many messages per batch."
    )
    poll_timeout_s: float = Field(
        0.2,
        gt=0,
        le=10,
        description="How long one background poll waits for messages (also how often it "
        "services commits and rebalances).",
    )
    idle_timeout_s: float = Field(
        2.0,
        gt=0,
        description="A read ends once no new message arrived for this long and the brokers' "
        "high watermarks show nothing left unread (it has caught up); the next scheduled run "
        "goes on from its cursor.",
    )
    join_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A read whose member holds no partitions for this long, at its start or "
        "after a rebalance took them, ends (more members than partitions, or the brokers are "
        "away).",
    )
    keep_member: bool = Field(
        True,
        description="Stay in the consumer group between reads (scheduled runs of one hub): the "
        "next read goes on at once, with no group join, while the store's cursor is the one "
        "this member's reads left. False: join at the start of every read and leave at its end.",
    )
    max_buffered_batches: int = Field(
        4,
        ge=1,
        le=1000,
        description="Batches read ahead of the pipeline; when the pipeline is this far behind, "
        "the partitions are paused until it catches up.",
    )
    max_poll_interval_ms: int = Field(
        300_000,
        ge=1000,
        description="librdkafka max.poll.interval.ms. The background poller keeps polls "
        "frequent whatever the pipeline does, so this only bounds a stuck process.",
    )
    session_timeout_ms: int = Field(
        10_000,
        ge=1000,
        description="librdkafka session.timeout.ms: how soon a dead member's partitions move "
        "(a fresh group's first join also waits about half of it).",
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest",
        description="Where a partition with neither a saved cursor nor a committed offset starts.",
    )
    key: Literal["kafka_key", "offset"] = Field(
        "kafka_key",
        description="The record's source key: the message key (else topic:partition:offset), or "
        "always topic:partition:offset. The stored record id is always unique per message.",
    )
    deadletter_topic: str | None = Field(
        "junction.deadletter",
        description="Where poison messages (undecodable, not an object, schema failure) are "
        "produced with context headers; null quarantines them in the store instead.",
    )
    errors_tolerance: Literal["all", "none"] = Field(
        "all",
        description="all: a poison message goes to deadletter_topic (or quarantine) and the "
        "read goes on; none: the first one stops the read with a FatalError, nothing of its "
        "batch is stored and no offset moves past it, so it is read again once fixed (Kafka "
        "Connect's errors.tolerance).",
    )
    timeout_s: float = Field(
        10.0, gt=0, description="Timeout of metadata, commit and dead-letter delivery calls."
    )

    @model_validator(mode="after")
    def _registry_matches_format(self) -> KafkaConfig:
        if self.format == "json" and self.schema_registry_url is not None:
            raise ValueError("schema_registry_url is only used with format jsonschema or avro")
        if self.format != "json" and self.schema_registry_url is None:
            raise ValueError(f"format {self.format} needs schema_registry_url")
        if self.max_poll_interval_ms < self.session_timeout_ms:
            raise ValueError("max_poll_interval_ms must be at least session_timeout_ms")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self

    @property
    def stream(self) -> str:
        """The one stream this connector reads: its topics, joined with ','."""
        return ",".join(self.topics)
