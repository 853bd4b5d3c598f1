"""Right to erasure: remove one person from the store and crypto-shred their data keys.

``erase`` runs in ONE transaction: it finds the subject's rows by the ``subject`` column (no
decryption needed), hands what must be tombstoned on Kafka to ``before_commit`` (the caller
produces the tombstones; if that fails nothing is erased and the erasure can be retried), then
deletes the records, their scores, outcomes and version heads, the outbox deliveries with their
attempts and send-log rows, the quarantined source bytes and the stage relay's copies; destroys
the data keys (a tombstone row per subject stays, so a later sync of the person stores nothing);
adds keyed suppression entries (no message reaches the address again); and appends an audit
entry that names the subject only by pseudonym.  Copies the store cannot delete (backups, topic
segments not yet compacted) stay sealed under the destroyed keys: unreadable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, select, update

from junction.core.errors import ConfigError, DecryptionError
from junction.core.logging import get_logger
from junction.store import tables as t
from junction.store.audit import AuditEntry, AuditLog
from junction.store.keyring import evict_everywhere
from junction.store.relay_marks import unpublished
from junction.store.repo import Store
from junction.store.suppressions import SuppressionList

log = get_logger(__name__)
_CHUNK = 500
ERASED_REASON = "erased"


@dataclass(frozen=True)
class FoundRecord:
    """A stored record of the subject (what its Kafka stage messages were keyed by)."""

    id: str
    pipeline: str
    entity: str
    source_key: str


@dataclass(frozen=True)
class FoundDelivery:
    """An outbox delivery of the subject, with its payload opened (None if it did not open)."""

    id: str
    record_id: str
    channel: str
    event_type: str
    status: str
    payload: str | None


@dataclass
class Found:
    """What the subject left in the store, read before anything is deleted."""

    subjects: list[str]
    records: list[FoundRecord] = field(default_factory=list)
    deliveries: list[FoundDelivery] = field(default_factory=list)


@dataclass
class ErasureReport:
    """What an erasure removed (counts only: it holds no personal data)."""

    subjects: list[str]
    records: int = 0
    scores: int = 0
    deliveries: int = 0
    attempts: int = 0
    quarantine: int = 0
    relay: int = 0
    keys_destroyed: int = 0
    suppressed: int = 0
    tombstones: int = 0
    audit_id: int | None = None

    def counts(self) -> dict[str, int]:
        """The counts, for the audit entry and the API's answer."""
        return {
            k: v
            for k, v in vars(self).items()
            if isinstance(v, int) and not isinstance(v, bool) and k != "audit_id"
        }


def erase(
    store: Store,
    *,
    emails: Sequence[str] = (),
    phones: Sequence[str] = (),
    actor: str,
    audit: AuditLog,
    suppressions: SuppressionList | None = None,
    request_id: str | None = None,
    before_commit: Callable[[Found], int] | None = None,
) -> ErasureReport:
    """Erase the person with these emails and phones everywhere in the store.

    Args:
        store: The hub's store; its encryption at rest must be on (subjects are found by it).
        emails: The person's email addresses (any letter case).
        phones: The person's phone numbers (any punctuation).
        actor: Who asked (``cli:<user>``, an API client id).
        audit: The audit log the entry goes to, in the erasure's transaction.
        suppressions: The suppression list that gets the addresses (keyed), if any.
        request_id: The API request id, for the audit entry.
        before_commit: Called with what was found before it is deleted; returns how many
            Kafka tombstones it produced.  Raising aborts the erasure (nothing changes).

    Raises:
        ConfigError: Nothing names a person, or the store's encryption at rest is off.
        KeyUnavailableError: The KEK is missing.
    """
    if not emails and not phones:
        raise ConfigError("name the person to erase: an email address or a phone number")
    with store.begin() as conn:
        privacy = store.privacy(conn)
        if privacy is None:
            raise ConfigError(
                "erasure by subject needs encryption at rest: add the privacy section to the "
                "configuration (the store then keys every row by subject)"
            )
        subjects = list(
            dict.fromkeys(
                [privacy.keyring.subject("email", e) for e in emails]
                + [privacy.keyring.subject("phone", p) for p in phones]
            )
        )
        report = ErasureReport(subjects=subjects)
        now = time.time()
        # lock the subjects' key rows first (writers of the same subjects wait, then see them
        # erased); make tombstones for subjects never stored, so a first sync is refused too
        privacy.keyring.mark(conn, subjects, now)
        found = _find(conn, store, subjects)
        if before_commit is not None:
            report.tombstones = before_commit(found)
        _delete(conn, found, subjects, report)
        report.keys_destroyed = privacy.keyring.shred(conn, subjects)
        if suppressions is not None:
            report.suppressed = _suppress(conn, store, suppressions, emails, phones, now)
        entry = AuditEntry(
            actor,
            "subject.erase",
            f"subject:{subjects[0]}",
            request_id,
            {"subjects": subjects, **report.counts()},
        )
        report.audit_id = audit.append_in(conn, [entry])[0].id
    # shred() evicted the keys before the commit; a reader of this process may have cached
    # one again from the rows it still saw: evict once more, now that they are gone
    evict_everywhere(subjects)
    log.info("subject erased", subjects=len(subjects), records=report.records)
    return report


def _find(conn: Connection, store: Store, subjects: list[str]) -> Found:
    found = Found(subjects)
    r, d = t.records.c, t.deliveries.c
    for at in range(0, len(subjects), _CHUNK):
        chunk = subjects[at : at + _CHUNK]
        q = select(r.id, r.pipeline, r.entity, r.source_key).where(r.subject.in_(chunk))
        found.records.extend(FoundRecord(*row) for row in conn.execute(q))
    record_ids = [x.id for x in found.records]
    rows: dict[str, Any] = {}
    for at in range(0, len(subjects), _CHUNK):
        q = select(t.deliveries).where(d.subject.in_(subjects[at : at + _CHUNK]))
        rows.update({row["id"]: row for row in conn.execute(q).mappings()})
    for at in range(0, len(record_ids), _CHUNK):
        q = select(t.deliveries).where(d.record_id.in_(record_ids[at : at + _CHUNK]))
        rows.update({row["id"]: row for row in conn.execute(q).mappings()})
    for row in rows.values():
        try:
            payload: str | None = store.open_delivery_rows(conn, [row])[0]["payload"]
        except DecryptionError:  # damaged: it is deleted all the same, but names no topic key
            payload = None
        found.deliveries.append(
            FoundDelivery(
                row["id"],
                row["record_id"],
                row["channel"],
                row["event_type"],
                row["status"],
                payload,
            )
        )
    return found


def _delete(conn: Connection, found: Found, subjects: list[str], report: ErasureReport) -> None:
    record_ids = [x.id for x in found.records]
    delivery_ids = [x.id for x in found.deliveries]
    report.attempts = _delete_in(conn, t.attempts, t.attempts.c.delivery_id, delivery_ids)
    _delete_in(conn, t.send_log, t.send_log.c.delivery_id, delivery_ids)
    report.deliveries = _delete_in(conn, t.deliveries, t.deliveries.c.id, delivery_ids)
    report.scores = _delete_in(conn, t.scores, t.scores.c.record_id, record_ids)
    _delete_in(conn, t.outcomes, t.outcomes.c.record_id, record_ids)
    _delete_in(conn, t.record_heads, t.record_heads.c.record_id, record_ids)
    report.records = _delete_in(conn, t.records, t.records.c.id, record_ids)
    report.quarantine = _delete_in(conn, t.quarantine, t.quarantine.c.subject, subjects)
    # unsent copies go, sent ones lose their value
    keys = list(stage_keys(found))
    s = t.stage_relay.c
    for at in range(0, len(keys), _CHUNK):
        chunk = keys[at : at + _CHUNK]
        report.relay += conn.execute(
            delete(t.stage_relay).where(s.key.in_(chunk), unpublished())
        ).rowcount
        report.relay += conn.execute(
            update(t.stage_relay).where(s.key.in_(chunk)).values(value=b"")
        ).rowcount


def stage_keys(found: Found) -> set[str]:
    """The stage message keys (relay rows, stage topics) of the records ``found`` holds."""
    return {key for r in found.records for key in record_stage_keys(r.pipeline, r.id, r.source_key)}


def record_stage_keys(pipeline: str, record_id: str, source_key: str) -> set[str]:
    """The keys one record's stage messages may have.

    The stage chain keys messages by "<pipeline>:<connector key without @version>"
    (``junction.pipeline.stages.topics.subject_key``); the record id is "<pipeline>:<connector
    key>", and a mapping may name another source key (a CSV row's lead id), so both forms count.
    """
    keys = {f"{pipeline}:{source_key.split('@', 1)[0]}"}
    if record_id.startswith(f"{pipeline}:"):
        keys.add(record_id.split("@", 1)[0])
    return keys


def _delete_in(conn: Connection, table: Any, column: Any, values: Sequence[str]) -> int:
    n = 0
    for at in range(0, len(values), _CHUNK):
        n += conn.execute(delete(table).where(column.in_(values[at : at + _CHUNK]))).rowcount
    return n


def _suppress(
    conn: Connection,
    store: Store,
    suppressions: SuppressionList,
    emails: Sequence[str],
    phones: Sequence[str],
    now: float,
) -> int:
    cols = ("kind", "address_key", "reason", "source", "created_at")
    sql = store._insert_ignore(t.suppressions, cols)
    n = 0
    for kind, addresses in (("email", emails), ("phone", phones)):
        for address in addresses:
            key = suppressions.key(kind, address)
            n += conn.exec_driver_sql(sql, (kind, key, ERASED_REASON, "erasure", now)).rowcount
    return n


__all__ = ["ErasureReport", "Found", "FoundDelivery", "FoundRecord", "erase"]
