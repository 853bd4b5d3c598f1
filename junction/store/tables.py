"""Table definitions (SQLAlchemy Core).  Alembic migrations in ``migrations/`` create them.

Timestamps are float epoch seconds (UTC): cheap to bind on the hot path and identical on SQLite and
PostgreSQL.  Record and delivery ids are monotonic within a file
(``<pipeline>:<sha16>:<row>``), which
keeps B-tree inserts append-mostly.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pipeline", String(128), nullable=False),
    Column("status", String(16), nullable=False),  # running | succeeded | failed
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("counts", Text, nullable=False, default="{}"),  # JSON: read, stored, quarantined, ...
    Column("error", Text),
)

cursors = Table(
    "cursors",
    metadata,
    Column("pipeline", String(128), primary_key=True),
    Column("stream", String(1024), primary_key=True),
    Column("value", Text, nullable=False),  # JSON
    Column("updated_at", Float, nullable=False),
)

files = Table(
    "files",
    metadata,
    Column("pipeline", String(128), primary_key=True),
    Column("sha256", String(64), primary_key=True),
    Column("path", Text, nullable=False),
    Column("status", String(16), nullable=False),  # done | failed
    Column("rows", Integer, nullable=False, default=0),
    Column("finished_at", Float, nullable=False),
)

records = Table(
    "records",
    metadata,
    Column("id", String(512), primary_key=True),
    Column("pipeline", String(128), nullable=False),
    Column("entity", String(32), nullable=False),
    Column("source_system", String(64), nullable=False),
    Column("source_key", String(384), nullable=False),
    Column("schema_version", String(32), nullable=False),
    Column("payload", Text, nullable=False),  # canonical JSON
    Column("provenance", Text, nullable=False),  # JSON
    Column("run_id", Integer),
    Column("received_at", Float, nullable=False),
    # migration 0008: the keyed pseudonym of the person it is about (erasure finds rows by it).
    # Not indexed: subjects are random, and an index of them costs every batch a cold walk of
    # the whole B-tree (append-mostly inserts, as the ids are, are what keeps batches cheap);
    # an erasure scans instead (rare: about a second per million rows on SQLite)
    Column("subject", String(32)),
)

scores = Table(
    "scores",
    metadata,
    Column("record_id", String(512), primary_key=True),
    Column("model_version", String(64), primary_key=True),
    Column("model", String(64), nullable=False),
    Column("value", Float, nullable=False),
    Column("grade", String(1), nullable=False),
    Column("factors", Text, nullable=False),  # JSON [[feature, contribution], ...]
    Column("variant", String(32), nullable=False),
    Column("scored_at", Float, nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(600), primary_key=True),  # the idempotency key (webhook-id)
    Column("record_id", String(512), nullable=False),
    Column("pipeline", String(128), nullable=False),
    Column("channel", String(128), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    # pending | delivered | dead | suppressed (every recipient opted out) | skipped (a duplicate
    # alert within its dedupe window) | held (waits for its digest) | digested (sent in one)
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_until", Float),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float),
    # --- migration 0004 ---
    Column("route", String(64)),  # the route (by name) that created it: templates, hygiene
    Column("remote_id", String(128), index=True),  # the provider's id (SendGrid, Twilio sid, ...)
    Column("remote_status", String(32)),  # the provider's last reported status (callbacks)
    Column("ack_at", Float),  # when a person acknowledged the alert
    Column("escalate_at", Float, index=True),  # unacknowledged by then → the escalation target
    Column("group_id", String(600)),  # the digest that carried it, or the delivery it escalates
    Column("subject", String(32)),  # migration 0008: see records.subject
)
Index("ix_deliveries_due", deliveries.c.status, deliveries.c.next_attempt_at)
# migration 0005: per-channel claims read each channel's backlog in due order
Index(
    "ix_deliveries_channel_due",
    deliveries.c.channel,
    deliveries.c.status,
    deliveries.c.next_attempt_at,
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", String(600), nullable=False, index=True),
    Column("attempt_no", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("status_code", Integer),
    Column("outcome", String(16), nullable=False),  # delivered | retry | failed | gone
    Column("error", Text),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pipeline", String(128), nullable=False),
    Column("stage", String(16), nullable=False),  # extract | normalize | validate | score | deliver
    Column("record_key", String(600), nullable=False),
    Column("error_type", String(64), nullable=False),
    Column("error_code", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("context", Text, nullable=False),  # JSON
    Column("payload", LargeBinary),  # the original bytes
    Column("provenance", Text, nullable=False),  # JSON
    Column("status", String(16), nullable=False),  # open | replayed | discarded
    Column("created_at", Float, nullable=False),
    Column("resolved_at", Float),
    Column("run_id", Integer),
    Column("subject", String(32), index=True),  # migration 0008 (indexed: a small table)
    UniqueConstraint("pipeline", "stage", "record_key", name="uq_quarantine_key"),
)

endpoints = Table(
    "endpoints",
    metadata,
    Column("channel", String(128), primary_key=True),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("reason", Text),
    Column("updated_at", Float, nullable=False),
    # --- migration 0004: health, for auto-disable after sustained failure ---
    Column("failing_since", Float),  # first failure since the last success; None when healthy
    Column("last_success_at", Float),
    Column("last_failure_at", Float),
)

# --- control plane (migration 0002) ---------------------------------------------------------------

api_clients = Table(
    "api_clients",
    metadata,
    Column("id", String(64), primary_key=True),  # the public client id
    Column("name", String(128), nullable=False),
    Column("kind", String(16), nullable=False),  # oauth (client credentials) | apikey
    Column("secret_hash", String(256), nullable=False),  # never the secret itself
    Column("roles", Text, nullable=False),  # JSON list of role names
    Column("rate_limit", String(64)),  # a `limits` rate string, e.g. "100/second"; null = default
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    Column("last_used_at", Float),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor", String(128), nullable=False),  # client id, "cli:<user>" or "pipeline:<name>"
    Column("action", String(64), nullable=False),  # e.g. quarantine.replay, score.batch
    Column("target", String(600), nullable=False),
    Column("request_id", String(64)),
    Column("detail", Text, nullable=False),  # JSON; personal data only as keyed pseudonyms
    Column("prev_hash", String(64)),  # hash chain: tampering with a row breaks every later hash
    Column("hash", String(64), nullable=False),
)
Index("ix_audit_log_at", audit_log.c.at)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("scope", String(256), primary_key=True),  # client id + route
    Column("key", String(256), primary_key=True),  # the Idempotency-Key header
    Column("body_hash", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # pending | done
    Column("status_code", Integer),
    Column("response", LargeBinary),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

inbound_events = Table(
    "inbound_events",
    metadata,
    Column("source", String(128), primary_key=True),
    Column("event_id", String(256), primary_key=True),  # the sender's delivery id
    Column("received_at", Float, nullable=False),
    Column("records", Integer, nullable=False, default=0),
)

pipeline_state = Table(
    "pipeline_state",
    metadata,
    Column("pipeline", String(128), primary_key=True),
    Column("paused", Boolean, nullable=False, default=False),
    Column("updated_at", Float, nullable=False),
)

schedules = Table(
    "schedules",
    metadata,
    Column("pipeline", String(128), primary_key=True),
    Column("last_fired_at", Float),  # the scheduled time of the last run that started
    Column("lease_owner", String(128)),
    Column("lease_until", Float),
)

# --- CRM sources (migration 0003) -----------------------------------------------------------------

record_heads = Table(
    "record_heads",
    metadata,
    Column("pipeline", String(128), primary_key=True),
    Column("source_key", String(384), primary_key=True),
    Column("version", String(64), nullable=False),  # sorts in version order (RawBatch.versions)
    Column("record_id", String(512), nullable=False),  # the stored record of that version
    # hash of what routing sees (canonical fields but the change time, and the score): a new
    # version with the same hash is an echo (e.g. of our own write-back) and is not routed
    Column("content_hash", String(64), nullable=False),
    Column("updated_at", Float, nullable=False),
)

# --- outbound channels (migration 0004) -----------------------------------------------------------

suppressions = Table(
    "suppressions",
    metadata,
    Column("kind", String(16), primary_key=True),  # email | phone | slack ...
    Column("address_key", String(64), primary_key=True),  # keyed pseudonym, never the address
    Column("reason", String(64), nullable=False),  # bounce | spamreport | unsubscribe | stop | ...
    Column("source", String(128), nullable=False),  # e.g. sendgrid:email.sales, twilio:sms.ops, api
    Column("created_at", Float, nullable=False),
)

send_log = Table(
    "send_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel", String(128), nullable=False),
    Column("key_kind", String(16), nullable=False),  # alert (dedupe) | recipient (throttle)
    Column("key", String(64), nullable=False),  # keyed pseudonym of the alert key or recipient
    Column("at", Float, nullable=False),
    Column("delivery_id", String(600), nullable=False),
)
Index("ix_send_log_key", send_log.c.channel, send_log.c.key_kind, send_log.c.key, send_log.c.at)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    # endpoint.disabled | endpoint.enabled | message.attempt.exhausted | suppression.added | ...
    Column("kind", String(64), nullable=False),
    Column("subject", String(600), nullable=False),  # the channel, delivery id, ...
    Column("detail", Text, nullable=False),  # JSON; personal data only as keyed pseudonyms
)
Index("ix_events_at", events.c.at)

# migration 0006: outcomes (labels for training and A/B reports) and drift reports
outcomes = Table(
    "outcomes",
    metadata,
    Column("record_id", String(512), primary_key=True),  # the scored record's stable id
    Column("kind", String(32), primary_key=True),  # converted | won | ...
    Column("label", Integer, nullable=False),  # 1 the outcome happened, 0 it did not
    Column("observed_at", Float, nullable=False),  # when the source system said so
    Column("source", String(64), nullable=False),  # crm poll, api, csv import, ...
    Column("recorded_at", Float, nullable=False),
)
Index("ix_outcomes_observed", outcomes.c.kind, outcomes.c.observed_at)

drift_reports = Table(
    "drift_reports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pipeline", String(128), nullable=False),
    Column("model", String(64), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("computed_at", Float, nullable=False),
    Column("window_start", Float, nullable=False),
    Column("window_end", Float, nullable=False),
    Column("n", Integer, nullable=False),  # scored records compared with the reference
    Column("status", String(16), nullable=False),  # ok | warn | alert | insufficient
    Column("max_psi", Float),
    Column("report", Text, nullable=False),  # JSON: per feature psi/ks, prediction drift
)
Index("ix_drift_reports_model", drift_reports.c.model, drift_reports.c.computed_at)
Index("ix_drift_reports_pipeline", drift_reports.c.pipeline, drift_reports.c.computed_at)
# a drift check reads one model version's scores of a time window
Index("ix_scores_model_time", scores.c.model, scores.c.model_version, scores.c.scored_at)

# migration 0007: the stage relay (transactional outbox towards Kafka stage topics, ADR-0018).
# A stage writes its effects and the messages it passes on in ONE transaction; the relay
# publishes a scope's unpublished rows in id order, then marks them.  ``scope`` is what owns
# the rows' order: the input partition that produced them ("<topic>:<partition>") or, for an
# ingest worker, "ingest:<pipeline>".  ``dedupe`` makes a replayed input insert nothing.
stage_relay = Table(
    "stage_relay",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scope", String(300), nullable=False),
    Column("topic", String(249), nullable=False),
    Column("key", String(600), nullable=False),  # the message key (the record's subject key)
    Column("value", LargeBinary, nullable=False),
    Column("headers", Text),  # JSON object of string headers
    Column("dedupe", String(800), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("published_at", Float),
    # migration 0013: ids are never reused on SQLite either (a deleted newest row's id would
    # otherwise come back, under a scope's watermark)
    sqlite_autoincrement=True,
)
Index("ix_stage_relay_pending", stage_relay.c.scope, stage_relay.c.published_at, stage_relay.c.id)

# migration 0013: the relay's per-scope watermarks (ADR-0030).  A relay row is published when its
# ``published_at`` is set or its id is at most its scope's ``published_through``: a worker that
# sent a batch from memory moves one watermark instead of updating each row.
stage_relay_marks = Table(
    "stage_relay_marks",
    metadata,
    Column("scope", String(300), primary_key=True),
    Column("published_through", Integer, nullable=False),
    Column("marked_at", Float, nullable=False),
)

# migration 0008: encryption at rest (ADR-0021).  One data key per subject, wrapped by the
# key-encryption key; ``wrapped`` NULL means the subject was erased (crypto-shredded), and the row
# stays as a tombstone so a later sync of the same person is not stored again.
data_keys = Table(
    "data_keys",
    metadata,
    Column("subject", String(32), primary_key=True),  # keyed pseudonym, never the address
    Column("wrapped", LargeBinary),  # nonce + AES-GCM(KEK, data key); NULL once erased
    Column("kek_id", String(32)),  # which key-encryption key wrapped it
    Column("created_at", Float, nullable=False),
    Column("erased_at", Float),
)

# migration 0011: the append-only data keys (ADR-0024).  Keys made since are found by ``id``,
# which the sealed value names (``JX2:<subject>:<id>:...``): ids are time-ordered (milliseconds
# since 2020 in the high bits), so each batch appends its keys at the end of the B-tree instead of
# dirtying every page of a subject-ordered one.  ``subject`` is not indexed: a writer finds the
# key of a person it wrote before in its key cache, and an erasure scans (as it does records).
# A person may hold several keys (one per process that met them with a cold cache); erasure
# destroys them all.  ``data_keys`` above keeps the keys made before 0011 (values sealed as
# ``JX1:<subject>:...`` find their key by subject) and the system subjects (channel secrets).
subject_keys = Table(
    "subject_keys",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    ),
    Column("subject", String(32), nullable=False),  # keyed pseudonym; not indexed
    Column("wrapped", LargeBinary),  # nonce + AES-GCM(KEK, data key); NULL once erased
    Column("kek_id", String(32)),
    Column("created_at", Float, nullable=False),
    Column("erased_at", Float),
)

# migration 0012: the data keys of a write batch's new people in one row (ADR-0026).  A page's
# id is aligned to ``2**12`` and its keys' ids are ``id + slot``; ``subjects`` lists the slots'
# subjects (comma-separated; an erased slot is empty) and ``wrapped`` is the slots' 32-byte keys
# end to end, AES-GCM under the KEK with the page id and ``subjects`` as associated data.  One row
# per batch instead of one per person: fewer B-tree cells and ~70 bytes less per key.
key_pages = Table(
    "key_pages",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    ),
    Column("subjects", Text, nullable=False),
    Column("wrapped", LargeBinary, nullable=False),
    Column("kek_id", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
)

# migration 0011: erased people (the tombstones writers check; small, so its random inserts are
# cheap).  A later write of a subject listed here stores nothing.
erased_subjects = Table(
    "erased_subjects",
    metadata,
    Column("subject", String(32), primary_key=True),
    Column("erased_at", Float, nullable=False),
)

# one row (id 1): encryption is on for this store, under which KEK, and the subject-id key
privacy_settings = Table(
    "privacy_settings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("kek_source", String(600), nullable=False),  # env:NAME | file:/path | plugin:NAME
    Column("kek_id", String(32), nullable=False),
    Column("subject_key", LargeBinary, nullable=False),  # the pseudonym key, wrapped by the KEK
    Column("updated_at", Float, nullable=False),
)

# migration 0009: the dashboard's time windows, lookups and status groups (ADR-0020)
Index("ix_records_received_at", records.c.received_at)
Index("ix_records_source_key", records.c.source_key)
Index("ix_scores_scored_at", scores.c.scored_at)
Index("ix_deliveries_record_id", deliveries.c.record_id)
Index("ix_deliveries_status_created", deliveries.c.status, deliveries.c.created_at)
Index("ix_deliveries_status_delivered", deliveries.c.status, deliveries.c.delivered_at)
Index("ix_quarantine_created_at", quarantine.c.created_at)
Index(
    "ix_quarantine_group",
    quarantine.c.status,
    quarantine.c.pipeline,
    quarantine.c.stage,
    quarantine.c.error_code,
)
Index(
    "ix_quarantine_record_key",
    quarantine.c.record_key,
    postgresql_ops={"record_key": "varchar_pattern_ops"},
)

# migration 0010: webhook signing secrets rotated through the store (ADR-0023).  Per channel, the
# secrets in use: the current one (``retires_at`` NULL) and the ones rotated out, which keep
# signing until ``retires_at`` (the overlap).  ``sealed`` is the secret under the store's
# encryption at rest (a data key of the ``jx_channel_secrets`` subject); never in clear.
channel_secrets = Table(
    "channel_secrets",
    metadata,
    Column("id", String(32), primary_key=True),  # cs_ + random hex; names a secret, not it
    Column("channel", String(128), nullable=False),  # configured name, e.g. webhook.sales
    Column("sealed", Text, nullable=False),  # JX1:<subject>:<base64>, bound to table, id
    Column("origin", String(16), nullable=False),  # rotated | config (the one it replaced)
    Column("created_at", Float, nullable=False),
    Column("retires_at", Float),  # NULL: the current secret
)
Index("ix_channel_secrets_channel", channel_secrets.c.channel, channel_secrets.c.retires_at)
