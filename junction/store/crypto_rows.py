"""Sealing and opening the store's rows: personal fields of records, outbox and quarantine payloads.

* **records**: the fields the canonical schema marks ``x-pii`` are taken out of the payload
  JSON and sealed together under ``"_pii"``; the other fields stay readable (drift, rescoring
  and reports read them without a key).  Associated data: ``records``, the record id, the subject.
* **deliveries**: the whole payload (the event sent to the channel) is sealed; associated data:
  the delivery id and the record id.
* **quarantine**: the whole payload (the original source bytes) is sealed; associated data: the
  pipeline, stage and record key the row is unique by.

A sealed value names its subject and its data key's id (``JX2:<subject>:<key id>:...``,
ADR-0024; values sealed before migration 0011 are ``JX1:<subject>:...``).  Every row also gets
its ``subject`` column, so erasure finds a person's rows without
decrypting anything.  Rows of an erased subject are dropped on write (a later sync of the
person stores nothing).  A row whose ``subject`` is NULL was written before encryption was
turned on and is read as it is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, select

from junction.core.errors import DecryptionError, InternalError
from junction.core.pseudonym import pii_kind
from junction.store import batch_seal
from junction.store import tables as t
from junction.store.crypto import (
    NONCE_BYTES,
    associated,
    is_sealed_bytes,
    is_sealed_text,
    load_kek,
    open_blob,
    parse_bytes,
    parse_text,
    seal_bytes_id,
)
from junction.store.keyring import (
    DEFAULT_KEY_CACHE,
    KeyBytes,
    Keyring,
    NewKeys,
    email_message,
    subject_message,
)
from schemas import ENTITY_MODELS

if TYPE_CHECKING:
    from junction.store.repo import Store

Row = tuple[Any, ...]
SEALED_KEY = "_pii"
_CHUNK = 500
_EMAIL = re.compile(rb"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")

# column positions in repo's RECORD_COLS / DELIVERY_COLS / QUARANTINE_COLS
_R_ID, _R_PIPELINE, _R_ENTITY, _R_SOURCE_KEY, _R_PAYLOAD = 0, 1, 2, 4, 6
_D_ID, _D_RECORD, _D_PAYLOAD = 0, 1, 5
_Q_PIPELINE, _Q_STAGE, _Q_KEY, _Q_PAYLOAD = 0, 1, 2, 7


class _EntityFields:
    """Which payload fields of an entity are personal, and which name the subject."""

    __slots__ = ("emails", "order", "personal", "phones")

    def __init__(self, entity: str) -> None:
        model = ENTITY_MODELS.get(entity)
        if model is not None:
            self.personal = tuple(model.pii_fields())
            self.order: tuple[str, ...] | None = tuple(model.model_fields)
        else:  # an entity without a schema: judge by field names when its rows are sealed
            self.personal = ()
            self.order = None
        self.emails = tuple(f for f in self.personal if pii_kind(f) == "email")
        self.phones = tuple(f for f in self.personal if pii_kind(f) == "phone")


class StorePrivacy:
    """Seals rows on their way into the store and opens them on their way out."""

    def __init__(self, keyring: Keyring) -> None:
        """Use ``keyring`` for subjects and data keys."""
        self.keyring = keyring
        self._fields: dict[str, _EntityFields] = {}

    def __repr__(self) -> str:
        return f"StorePrivacy({self.keyring!r})"

    def _entity(self, entity: str) -> _EntityFields:
        f = self._fields.get(entity)
        if f is None:
            f = self._fields[entity] = _EntityFields(entity)
        return f

    # subjects

    def subject_of(self, email: str | None = None, phone: str | None = None) -> list[str]:
        """The subject ids a person given by email and/or phone may be stored under."""
        out = []
        if email:
            out.append(self.keyring.subject("email", email))
        if phone:
            out.append(self.keyring.subject("phone", phone))
        return out

    def _record_subjects(
        self, records: Sequence[Row], personal: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        """Each record's subject: its email's pseudonym, else its phone's, else its key's."""
        entity = self._entity
        messages: list[bytes] = []
        add = messages.append
        last: Any = None
        fields = emails = None
        for row, pii in zip(records, personal, strict=True):
            if row[_R_ENTITY] is not last:  # a batch is mostly of one entity
                last = row[_R_ENTITY]
                fields = entity(last)
                emails = fields.emails
            for name in emails:  # type: ignore[union-attr]
                if v := pii.get(name):
                    add(email_message(v) if v.__class__ is str else subject_message("email", v))
                    break
            else:
                for name in fields.phones:  # type: ignore[union-attr]
                    if v := pii.get(name):
                        add(subject_message("phone", v))
                        break
                else:
                    add(subject_message("source_key", row[_R_SOURCE_KEY]))
        return self.keyring.tokens(messages)

    # writes

    def preseal(
        self,
        records: Sequence[Row],
        deliveries: Sequence[Row],
        personal: Sequence[dict[str, Any]] | None = None,
    ) -> Presealed:
        """Seal a batch's records and outbox rows with drafted keys, without the store.

        The costly part of sealing (subject MACs, new keys, AES-GCM) runs here, so a writer
        can do it before it takes the store's write lock; ``finish`` then settles the keys in
        the transaction and re-seals the few rows whose key turned out otherwise.

        ``personal`` (parallel to ``records``): each record's personal members, taken out of
        its payload already (``BatchPreparer.prepare(split_personal=True)``); without it the
        payloads are parsed and split here.
        """
        if personal is None:
            personal, clear = self._split(records)
        else:
            if len(personal) != len(records):
                raise InternalError("a batch's personal members do not match its records")
            clear = [row[_R_PAYLOAD] for row in records]
        dumps = orjson.dumps
        pii_json = [dumps(p) for p in personal]
        subjects = self._record_subjects(records, personal)
        by_record = {row[_R_ID]: s for row, s in zip(records, subjects, strict=True)}
        d_subjects = [by_record.get(r[_D_RECORD]) for r in deliveries]
        wanted = set(subjects) | {x for x in d_subjects if x is not None}
        provisional, drafts, held = self.keyring.draft(wanted)
        pre = Presealed(provisional, drafts, held, by_record, records, clear, pii_json, subjects)
        payloads = _seal_payloads(provisional, records, clear, pii_json, subjects)
        pre.sealed = [
            (*row[:_R_PAYLOAD], payload, *row[_R_PAYLOAD + 1 :], subject)
            for row, subject, payload in zip(records, subjects, payloads, strict=True)
        ]
        mine = [(row, s) for row, s in zip(deliveries, d_subjects, strict=True) if s is not None]
        sealed_d = iter(_seal_outbox(provisional, [r for r, _ in mine], [s for _, s in mine]))
        pre.deliveries = [
            (row, s, None if s is None else next(sealed_d))
            for row, s in zip(deliveries, d_subjects, strict=True)
        ]
        return pre

    def _split(self, records: Sequence[Row]) -> tuple[list[dict[str, Any]], list[str]]:
        """Each record's personal members, and its payload without them (JSON)."""
        loads, dumps = orjson.loads, orjson.dumps
        entity = self._entity
        personal: list[dict[str, Any]] = []
        clear: list[str] = []
        for row in records:
            obj = loads(row[_R_PAYLOAD])
            fields = entity(row[_R_ENTITY]).personal or tuple(k for k in obj if pii_kind(k))
            personal.append({k: obj.pop(k) for k in fields if k in obj})
            clear.append(dumps(obj).decode())
        return personal, clear

    def finish(self, conn: Connection, pre: Presealed) -> tuple[list[Row], set[str], list[Row]]:
        """Settle a presealed batch's keys; return record rows, dropped record ids, outbox rows.

        Rows of erased subjects are dropped; rows sealed under a key another writer beat us to
        are sealed again under the stored key; outbox rows of records outside the batch are
        sealed here (their subject is read from the store).
        """
        final, changed = self.keyring.settle(conn, pre.provisional, pre.drafts, pre.held)
        keys = {s: k for s in changed if (k := final[s]) is not None}
        dropped: set[str] = set()
        records = pre.sealed if not changed else self._reseal(pre, changed, keys, dropped)
        deliveries: list[Row] = []
        later: list[Row] = []
        again: list[tuple[Row, str]] = []
        for row, d_subject, sealed_d in pre.deliveries:
            if d_subject is None or sealed_d is None:
                later.append(row)
            elif d_subject not in changed:
                deliveries.append(sealed_d)
            elif d_subject in keys:  # else erased: dropped
                again.append((row, d_subject))
        if again:
            deliveries.extend(_seal_outbox(keys, [r for r, _ in again], [s for _, s in again]))
        if later:
            deliveries.extend(self.seal_deliveries(conn, later))
        return records, dropped, deliveries

    def _reseal(
        self, pre: Presealed, changed: set[str], keys: dict[str, KeyBytes], dropped: set[str]
    ) -> list[Row]:
        """The batch's record rows after ``settle`` changed some subjects' keys: rows of
        erased subjects dropped (their ids added to ``dropped``), the others sealed again."""
        again = [i for i, s in enumerate(pre.subjects_of) if s in keys]
        resealed = iter(
            _seal_payloads(
                keys,
                [pre.rows[i] for i in again],
                [pre.clears[i] for i in again],
                [pre.pii_json[i] for i in again],
                [pre.subjects_of[i] for i in again],
            )
        )
        records: list[Row] = []
        for row, subject, sealed in zip(pre.rows, pre.subjects_of, pre.sealed, strict=True):
            if subject in changed:
                if subject not in keys:
                    dropped.add(row[_R_ID])
                    continue
                payload = next(resealed)
                sealed = (*row[:_R_PAYLOAD], payload, *row[_R_PAYLOAD + 1 :], subject)
            records.append(sealed)
        return records

    def seal_records(
        self, conn: Connection, rows: Sequence[Row]
    ) -> tuple[list[Row], set[str], dict[str, str]]:
        """Seal records in the transaction: the rows (``subject`` appended), dropped record
        ids (erased subjects), and the subject of each record id."""
        pre = self.preseal(rows, [])
        records, dropped, _ = self.finish(conn, pre)
        return records, dropped, pre.subjects

    def seal_deliveries(
        self,
        conn: Connection,
        rows: Sequence[Row],
        subjects: Mapping[str, str] | None = None,
    ) -> list[Row]:
        """Seal outbox payloads under their record's subject; drop erased subjects' rows.

        ``subjects`` (record id -> subject) comes from ``seal_records`` of the same
        transaction; other records' subjects are read from the store.
        """
        known = dict(subjects or {})
        unknown = list({r[_D_RECORD] for r in rows} - known.keys())
        for at in range(0, len(unknown), _CHUNK):
            c = t.records.c
            q = select(c.id, c.subject).where(c.id.in_(unknown[at : at + _CHUNK]))
            known.update({rid: s for rid, s in conn.execute(q) if s is not None})
        keyring = self.keyring
        per_row = [
            known.get(r[_D_RECORD]) or keyring.subject("source_key", r[_D_RECORD]) for r in rows
        ]
        have = keyring.settled_keys(conn, set(per_row))
        live = [i for i, s in enumerate(per_row) if have[s] is not None]
        out = _seal_outbox(
            {s: k for s, k in have.items() if k is not None},
            [rows[i] for i in live],
            [per_row[i] for i in live],
        )
        return out

    def seal_quarantine(self, conn: Connection, rows: Sequence[Row]) -> list[Row]:
        """Seal quarantined source bytes under the subject they name; drop erased subjects'."""
        per_row = [self._quarantine_subject(r) for r in rows]
        keys = self.keyring.seal_keys(conn, set(per_row))
        nonces = _nonces(len(rows))
        out: list[Row] = []
        for i, row in enumerate(rows):
            subject = per_row[i]
            ref = keys[subject]
            if ref is None:
                continue
            payload = row[_Q_PAYLOAD]
            if payload is not None:
                aad = associated("quarantine", _quarantine_key(row), subject)
                aead, kid = ref
                payload = seal_bytes_id(aead, subject, kid, nonces[i], bytes(payload), aad)
            out.append((*row[:_Q_PAYLOAD], payload, *row[_Q_PAYLOAD + 1 :], subject))
        return out

    def _quarantine_subject(self, row: Row) -> str:
        raw = row[_Q_PAYLOAD]
        if raw is not None:
            data = bytes(raw)
            found = self._subject_in(data)
            if found is not None:
                return found
        return self.keyring.subject("source_key", row[_Q_KEY])

    def _subject_in(self, data: bytes) -> str | None:
        """The subject source bytes name: an email or phone field of a JSON object, an email."""
        if data[:1] == b"{":
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError:
                obj = None
            if isinstance(obj, dict):
                for want in ("email", "phone"):
                    for k, v in obj.items():
                        if v and isinstance(v, str) and pii_kind(str(k)) == want:
                            return self.keyring.subject(want, v)
        m = _EMAIL.search(data)
        if m is not None:
            return self.keyring.subject("email", m.group(0).decode("ascii"))
        return None

    # reads

    def open_records(
        self, conn: Connection, rows: Sequence[Mapping[Any, Any]]
    ) -> list[dict[str, Any]]:
        """Copies of record rows (``id``, ``entity``, ``payload``...) with payloads opened."""
        sealed = [_sealed_record(r) for r in rows]
        keys = self.keyring.open_refs(conn, {(s[0], s[1]) for s in sealed if s is not None})
        out = []
        for row, s in zip(rows, sealed, strict=True):
            d = dict(row)
            if s is not None:
                d["payload"] = self._open_record(d, s, keys[(s[0], s[1])])
            out.append(d)
        return out

    def _open_record(
        self,
        row: Mapping[str, Any],
        sealed: tuple[str, int | None, bytes, dict[str, Any]],
        aead: AESGCM,
    ) -> str:
        subject, _, blob, obj = sealed
        stored = row.get("subject")
        if stored is not None and stored != subject:
            raise DecryptionError("a record's subject column does not match its sealed data")
        aad = associated("records", str(row["id"]), subject)
        pii = orjson.loads(open_blob(aead, blob, aad, table="records"))
        obj.update(pii)
        order = self._entity(str(row.get("entity", ""))).order
        if order is not None:
            obj = {k: obj[k] for k in (*order, *(k for k in obj if k not in order)) if k in obj}
        return orjson.dumps(obj).decode()

    def open_deliveries(
        self, conn: Connection, rows: Sequence[Mapping[Any, Any]]
    ) -> list[dict[str, Any]]:
        """Copies of outbox rows (``id``, ``record_id``, ``payload``) with payloads opened."""
        split = [_sealed_text(r["payload"]) for r in rows]
        keys = self.keyring.open_refs(conn, {(s[0], s[1]) for s in split if s is not None})
        out = []
        for row, s in zip(rows, split, strict=True):
            d = dict(row)
            if s is None:
                if d.get("subject") is not None:
                    raise DecryptionError("an outbox payload lost its seal")
            else:
                subject, kid, blob = s
                aad = associated("deliveries", f"{d['id']}\x1f{d['record_id']}", subject)
                d["payload"] = open_blob(
                    keys[(subject, kid)], blob, aad, table="deliveries"
                ).decode()
            out.append(d)
        return out

    def open_quarantine(
        self, conn: Connection, rows: Sequence[Mapping[Any, Any]]
    ) -> list[dict[str, Any]]:
        """Copies of quarantine rows with their original bytes opened."""
        split: list[tuple[str, int | None, bytes] | None] = []
        for r in rows:
            payload = r.get("payload")
            if payload is not None and r.get("subject") is not None:
                split.append(parse_bytes(bytes(payload)))
            elif payload is not None and is_sealed_bytes(bytes(payload)):
                raise DecryptionError("a quarantined payload is sealed but names no subject")
            else:
                split.append(None)
        keys = self.keyring.open_refs(conn, {(s[0], s[1]) for s in split if s is not None})
        out = []
        for row, s in zip(rows, split, strict=True):
            d = dict(row)
            if s is not None:
                subject, kid, blob = s
                if subject != d["subject"]:
                    raise DecryptionError("a quarantine row's subject does not match its data")
                aad = associated("quarantine", _quarantine_key(d), subject)
                d["payload"] = open_blob(keys[(subject, kid)], blob, aad, table="quarantine")
            out.append(d)
        return out


@dataclass
class Presealed:
    """A batch sealed with drafted keys, waiting for ``StorePrivacy.finish``."""

    provisional: dict[str, KeyBytes]  # every subject's key and its id
    drafts: NewKeys  # new subjects' keys and ids, in pages wrapped by the KEK
    held: dict[str, KeyBytes]  # subjects whose key was cached: (key, key id)
    subjects: dict[str, str]  # record id -> subject
    # the records, in parallel: the original rows, their payloads without the personal
    # members (JSON), those members' JSON, each record's subject, and the sealed rows
    rows: Sequence[Row]
    clears: list[str]
    pii_json: list[bytes]
    subjects_of: list[str]
    sealed: list[Row] = field(default_factory=list)
    # (original row, subject or None when its record is not in the batch, sealed row or None)
    deliveries: list[tuple[Row, str | None, Row | None]] = field(default_factory=list)


def _seal_payloads(
    keys: Mapping[str, KeyBytes],
    rows: Sequence[Row],
    clears: list[str],
    pii_json: list[bytes],
    subjects: list[str],
) -> list[str]:
    """Each record's payload with ``"_pii": <its sealed personal members>`` as the last member,
    under its subject's data key, in one call (``batch_seal.seal_payloads``).

    ``clears[i]`` is the payload's JSON object without its personal members, ``pii_json[i]``
    those members' JSON; associated data: ``records``, the record id, the subject.
    """
    if not rows:
        return []
    refs = [keys[s] for s in subjects]
    return batch_seal.seal_payloads(
        [k for k, _ in refs],
        [kid for _, kid in refs],
        subjects,
        [row[_R_ID] for row in rows],
        clears,
        pii_json,
        os.urandom(NONCE_BYTES * len(rows)),
    )


def _seal_outbox(
    keys: Mapping[str, KeyBytes], rows: Sequence[Row], subjects: list[str]
) -> list[Row]:
    """Outbox rows with their payload (the event sent) sealed whole under each subject's key,
    ``subject`` appended; associated data: ``deliveries``, the delivery id, the record id, the
    subject.  One call for the batch (``batch_seal.encrypt_many``)."""
    if not rows:
        return []
    refs = [keys[s] for s in subjects]
    data = [p.encode() if isinstance(p, str) else bytes(p) for p in (r[_D_PAYLOAD] for r in rows)]
    aads = [
        f"deliveries\x1f{r[_D_ID]}\x1f{r[_D_RECORD]}\x1f{s}".encode()
        for r, s in zip(rows, subjects, strict=True)
    ]
    blobs = batch_seal.encrypt_many(
        [k for k, _ in refs], os.urandom(NONCE_BYTES * len(rows)), data, aads
    )
    texts = batch_seal.sealed_texts(subjects, [kid for _, kid in refs], blobs)
    return [
        (*row[:_D_PAYLOAD], text, *row[_D_PAYLOAD + 1 :], s)
        for row, s, text in zip(rows, subjects, texts, strict=True)
    ]


def _nonces(n: int) -> list[bytes]:
    rnd = os.urandom(NONCE_BYTES * n)
    return [rnd[i : i + NONCE_BYTES] for i in range(0, NONCE_BYTES * n, NONCE_BYTES)]


def _sealed_record(row: Mapping[str, Any]) -> tuple[str, int | None, bytes, dict[str, Any]] | None:
    payload = row["payload"]
    if SEALED_KEY not in payload:  # cheap test first: plaintext rows pay one substring search
        if row.get("subject") is not None:
            raise DecryptionError("a record lost its sealed personal data")
        return None
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise DecryptionError("a record payload is not JSON") from None
    sealed = obj.pop(SEALED_KEY, None) if isinstance(obj, dict) else None
    if sealed is None:
        if row.get("subject") is not None:
            raise DecryptionError("a record lost its sealed personal data")
        return None
    if not isinstance(sealed, str):
        raise DecryptionError("a record's sealed personal data is malformed")
    subject, kid, blob = parse_text(sealed)
    return subject, kid, blob, obj


def _sealed_text(payload: Any) -> tuple[str, int | None, bytes] | None:
    text = payload if isinstance(payload, str) else bytes(payload).decode("utf-8", "replace")
    return parse_text(text) if is_sealed_text(text) else None


def _quarantine_key(row: Any) -> str:
    """What a quarantine row is unique by, as when it was written (before resolve's suffix)."""
    if isinstance(row, Mapping):
        pipeline, stage, key = row["pipeline"], row["stage"], str(row["record_key"])
        if row.get("status") not in (None, "open") and row.get("id") is not None:
            suffix = f"#{row['id']}"
            while key.endswith(suffix):
                key = key[: -len(suffix)]
    else:
        pipeline, stage, key = row[_Q_PIPELINE], row[_Q_STAGE], row[_Q_KEY]
    return f"{pipeline}\x1f{stage}\x1f{key}"


def enable_privacy(store: Store, *, kek: str, key_cache: int = DEFAULT_KEY_CACHE) -> StorePrivacy:
    """Turn encryption at rest on for ``store`` under the KEK ``kek`` names, and use it.

    ``kek`` is ``env:NAME``, ``file:/path`` (made once when absent) or ``plugin:NAME``.  On a
    store that is already encrypted this checks that ``kek`` is the store's KEK.

    Raises:
        KeyUnavailableError: The KEK is missing, or is not the one the store's keys are under.
    """
    provider = load_kek(kek)
    with store.begin() as conn:
        keyring = Keyring.enable(conn, provider, kek_source=kek, cache_size=key_cache)
    privacy = StorePrivacy(keyring)
    store.use_privacy(privacy)
    return privacy


__all__ = ["SEALED_KEY", "Presealed", "StorePrivacy", "enable_privacy"]
