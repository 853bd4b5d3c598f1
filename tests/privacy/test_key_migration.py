"""Migrations 0011 and 0012 on a store that already holds data keys, keys named by id, and
erasure against a write in flight (ADR-0024, ADR-0026), on both backends.

A 0010 store's values are sealed as ``JX1:<subject>:...`` under ``data_keys`` keys found by
subject, and its erased people are ``data_keys`` rows whose key is gone.  After the upgrade those
values still open, the erased people stay erased, new values go to key pages, and erasure and
rotation cover every key table.  A 0011 store's ``subject_keys`` rows keep opening their values
after 0012 and are erased and rotated beside the pages.
"""

from __future__ import annotations

import os
import secrets
import time
from base64 import b64encode
from typing import Any

import orjson
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import func, select, text

from junction.core.errors import SubjectErasedError
from junction.core.pseudonym import Pseudonymizer
from junction.store import tables as t
from junction.store.audit import AuditLog
from junction.store.crypto import associated, env_kek
from junction.store.crypto_rows import SEALED_KEY, enable_privacy
from junction.store.engine import _INI, _sqlite_migration_engine, make_engine
from junction.store.erasure import erase
from junction.store.keyring import Keyring, key_counts
from junction.store.repo import RECORD_COLS, Store
from tests.privacy.conftest import CANARIES, KEK_ENV, assert_no_canary, dump, record_row

ANN = CANARIES[0]
OTTO = CANARIES[1]
GONE = "ps_erasedBefore0011xxxxx"


def _upgrade(url: str, revision: str) -> None:
    engine = make_engine(url)
    target = _sqlite_migration_engine(engine) if engine.dialect.name == "sqlite" else engine
    try:
        with target.begin() as conn:
            cfg = Config(str(_INI))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        if target is not engine:
            target.dispose()
        engine.dispose()


def _insert_sealed(
    conn: Any, i: int, person: dict[str, Any], subject: str, key: bytes, name: str
) -> None:
    """Record ``i`` of ``person`` as the code of its time sealed it: ``name`` is the value's
    head (``JX1:<subject>`` or ``JX2:<subject>:<key id>``)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    row = record_row(i, person)
    obj = orjson.loads(row[6])
    pii = {k: obj.pop(k) for k in ("first_name", "last_name", "email", "phone")}
    nonce = os.urandom(12)
    blob = nonce + AESGCM(key).encrypt(
        nonce, orjson.dumps(pii), associated("records", row[0], subject)
    )
    obj[SEALED_KEY] = f"{name}:{b64encode(blob).decode()}"
    values = dict(zip(RECORD_COLS, row, strict=True))
    values.update(payload=orjson.dumps(obj).decode(), subject=subject)
    conn.execute(t.records.insert().values(**values))


def _fresh_reads_ann(url: str, rids: tuple[str, ...]) -> None:
    """A new process (nothing cached) opens each of ``rids`` to Ann's email."""
    fresh = Store.open(url)
    try:
        for rid in rids:
            row = fresh.fetch_record(rid)
            assert row is not None
            assert orjson.loads(row["payload"])["email"] == ANN["email"]
    finally:
        fresh.close()


def _erase_ann(store: Store) -> Any:
    audit = AuditLog(store, Pseudonymizer(b"p" * 32))
    return erase(store, emails=[ANN["email"]], actor="test", audit=audit)  # type: ignore[list-item]


def _old_store(url: str, kek: str) -> None:
    """A 0010 store as the code before 0011 wrote it: two people sealed as JX1, one erased."""
    _upgrade(url, "0010")
    provider = env_kek(KEK_ENV)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            ring = Keyring.enable(conn, provider, kek_source=kek)
            now = time.time()
            for i, person in enumerate((ANN, OTTO)):
                subject = ring.subject("email", person["email"])
                key = os.urandom(32)
                conn.execute(
                    t.data_keys.insert().values(
                        subject=subject,
                        wrapped=provider.wrap(key, subject.encode("ascii")),
                        kek_id=provider.key_id,
                        created_at=now,
                    )
                )
                _insert_sealed(conn, i, person, subject, key, f"JX1:{subject}")
            conn.execute(  # erased before the upgrade: the key is gone, the row a tombstone
                t.data_keys.insert().values(
                    subject=GONE, wrapped=None, kek_id=None, created_at=now, erased_at=now
                )
            )
    finally:
        engine.dispose()


def test_an_upgraded_store_opens_old_values_and_keys_new_ones_by_id(
    store_url: str, kek: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _old_store(store_url, kek)
    store = Store.open(store_url)  # migrates to head
    try:
        privacy = enable_privacy(store, kek=kek)
        with store.begin() as conn:
            gone = conn.execute(select(t.erased_subjects.c.subject)).scalars().all()
            assert gone == [GONE]
            assert key_counts(conn) == {"people": 2, "keys": 2, "erased": 1, "system": 0}
        for i, person in enumerate((ANN, OTTO)):
            row = store.fetch_record(f"leads:f00d:{i}")
            assert row is not None
            assert orjson.loads(row["payload"])["email"] == person["email"]
        # Ann's next record: a key in a key page, named by id in the sealed value
        store.write_batch(
            records=[record_row(5, ANN)], scores=[], deliveries=[], quarantined=[], cursor=None
        )
        ann = privacy.keyring.subject("email", ANN["email"])
        with store.begin() as conn:
            payload = conn.execute(
                select(t.records.c.payload).where(t.records.c.id == "leads:f00d:5")
            ).scalar_one()
            page = conn.execute(select(t.key_pages.c.id)).scalar_one()
        assert orjson.loads(payload)[SEALED_KEY].startswith(f"JX2:{ann}:{page}:")  # slot 0

        # rotation re-wraps the keys of both tables
        monkeypatch.setenv("JUNCTION_TEST_KEK_NEW", secrets.token_urlsafe(48))
        with store.begin() as conn:
            n = privacy.keyring.rotate(
                conn, env_kek("JUNCTION_TEST_KEK_NEW"), new_source="env:JUNCTION_TEST_KEK_NEW"
            )
            kek_ids = {
                *conn.execute(
                    select(t.data_keys.c.kek_id).where(t.data_keys.c.wrapped.is_not(None))
                ).scalars(),
                *conn.execute(select(t.key_pages.c.kek_id)).scalars(),
            }
        assert n == 3
        assert kek_ids == {env_kek("JUNCTION_TEST_KEK_NEW").key_id}
        _fresh_reads_ann(store_url, ("leads:f00d:0", "leads:f00d:5"))

        # erasing Ann destroys her old and her new key; her values no longer open anywhere
        assert _erase_ann(store).keys_destroyed == 2
        with store.begin() as conn:
            live = conn.execute(
                select(func.count())
                .select_from(t.data_keys)
                .where(t.data_keys.c.subject == ann, t.data_keys.c.wrapped.is_not(None))
            ).scalar_one()
            assert live == 0
            assert ann not in conn.execute(select(t.key_pages.c.subjects)).scalar_one()
            assert key_counts(conn) == {"people": 1, "keys": 1, "erased": 2, "system": 0}
        # a later sync of Ann, or of the person erased before the upgrade, stores nothing
        store.write_batch(
            records=[record_row(7, ANN)], scores=[], deliveries=[], quarantined=[], cursor=None
        )
        assert store.fetch_record("leads:f00d:7") is None
        with store.begin() as conn:
            assert privacy.keyring.seal_keys(conn, [GONE]) == {GONE: None}
        assert store.fetch_record("leads:f00d:1") is not None  # Ottoline is untouched
    finally:
        store.close()
    assert_no_canary(dump(store_url))


def test_a_value_naming_another_subjects_key_fails_loudly(store_url: str, kek: str) -> None:
    store = Store.open(store_url)
    try:
        enable_privacy(store, kek=kek)
        store.write_batch(
            records=[record_row(0, ANN), record_row(1, OTTO)],
            scores=[],
            deliveries=[],
            quarantined=[],
            cursor=None,
        )
        with store.begin() as conn:
            rows = dict(conn.execute(select(t.records.c.id, t.records.c.payload)).all())
            pid, text_ = conn.execute(select(t.key_pages.c.id, t.key_pages.c.subjects)).one()
            ids = {s: pid + slot for slot, s in enumerate(text_.split(","))}
        obj = orjson.loads(rows["leads:f00d:0"])
        subject, kid, body = obj[SEALED_KEY][4:].split(":", 2)
        other = next(v for s, v in ids.items() if s != subject)
        for bad_id in (other, int(kid) + 10**6):  # another person's key; no key at all
            obj[SEALED_KEY] = f"JX2:{subject}:{bad_id}:{body}"
            with store.begin() as conn:
                conn.execute(
                    t.records.update()
                    .where(t.records.c.id == "leads:f00d:0")
                    .values(payload=orjson.dumps(obj).decode())
                )
            fresh = Store.open(store_url)
            try:
                from junction.core.errors import DecryptionError

                with pytest.raises(DecryptionError):
                    fresh.fetch_record("leads:f00d:0")
            finally:
                fresh.close()
    finally:
        store.close()


def test_reading_an_erased_persons_old_value_says_so(store_url: str, kek: str) -> None:
    store = Store.open(store_url)
    try:
        enable_privacy(store, kek=kek)
        store.write_batch(
            records=[record_row(0, ANN)], scores=[], deliveries=[], quarantined=[], cursor=None
        )
        with store.begin() as conn:
            copy = (
                conn.execute(select(t.records).where(t.records.c.id == "leads:f00d:0"))
                .mappings()
                .one()
            )
        erase(
            store,
            emails=[ANN["email"]],  # type: ignore[list-item]
            actor="test",
            audit=AuditLog(store, Pseudonymizer(b"p" * 32)),
        )
        with store.begin() as conn:  # a backup's copy of the row comes back
            conn.execute(t.records.insert().values(**dict(copy)))
            assert conn.execute(text("SELECT count(*) FROM erased_subjects")).scalar_one() == 1
        fresh = Store.open(store_url)
        try:
            with pytest.raises(SubjectErasedError):
                fresh.fetch_record("leads:f00d:0")
        finally:
            fresh.close()
    finally:
        store.close()


def test_an_erasure_waits_for_a_write_in_flight_and_erases_what_it_wrote(
    store_url: str, kek: str
) -> None:
    """A write transaction that stored Ann's key and record but has not committed: the erasure
    (another connection) waits for it on PostgreSQL (SQLite's write lock does the same), then
    finds and destroys what it wrote; the writer committed normally."""
    import threading

    from junction.store.repo import RECORD_COLS as COLS

    store = Store.open(store_url)
    eraser = Store.open(store_url)
    try:
        privacy = enable_privacy(store, kek=kek)
        done: list[object] = []
        errors: list[BaseException] = []

        def run() -> None:
            try:
                done.append(
                    erase(
                        eraser,
                        emails=[ANN["email"]],  # type: ignore[list-item]
                        actor="test",
                        audit=AuditLog(eraser, Pseudonymizer(b"p" * 32)),
                    )
                )
            except BaseException as exc:  # reported below
                errors.append(exc)

        worker = threading.Thread(target=run)
        with store.begin() as conn:
            sealed, dropped, _ = privacy.seal_records(conn, [record_row(0, ANN)])
            assert not dropped
            store._insert_rows(conn, t.records, (*COLS, "subject"), sealed)
            worker.start()
            worker.join(timeout=1.0)
            assert worker.is_alive()  # waiting for this transaction
        worker.join(timeout=30)
        assert not errors, errors
        assert done
        assert done[0].records == 1  # type: ignore[attr-defined]
        assert done[0].keys_destroyed == 1  # type: ignore[attr-defined]
        assert store.fetch_record("leads:f00d:0") is None
        with store.begin() as conn:
            assert key_counts(conn)["keys"] == 0
    finally:
        eraser.close()
        store.close()


def test_a_0011_store_keeps_its_key_rows_beside_the_new_key_pages(
    store_url: str, kek: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ann's value sealed under a ``subject_keys`` row (as 0011 wrote it) opens after 0012; her
    next record gets a page key; rotation re-wraps both; erasure destroys both."""
    from junction.store.keyring import key_context

    _upgrade(store_url, "0011")
    provider = env_kek(KEK_ENV)
    engine = make_engine(store_url)
    try:
        with engine.begin() as conn:
            ring = Keyring.enable(conn, provider, kek_source=kek)
            ann = ring.subject("email", ANN["email"])
            key, kid = os.urandom(32), 916_000_000_000_000_123
            conn.execute(
                t.subject_keys.insert().values(
                    id=kid,
                    subject=ann,
                    wrapped=provider.wrap(key, key_context(ann, kid)),
                    kek_id=provider.key_id,
                    created_at=time.time(),
                )
            )
            _insert_sealed(conn, 0, ANN, ann, key, f"JX2:{ann}:{kid}")
    finally:
        engine.dispose()
    store = Store.open(store_url)  # migrates to head
    try:
        privacy = enable_privacy(store, kek=kek)
        row = store.fetch_record("leads:f00d:0")
        assert row is not None
        assert orjson.loads(row["payload"])["email"] == ANN["email"]
        privacy.keyring._cache.clear()  # another process, meeting Ann with a cold cache
        store.write_batch(
            records=[record_row(1, ANN)], scores=[], deliveries=[], quarantined=[], cursor=None
        )
        with store.begin() as conn:
            assert key_counts(conn) == {"people": 1, "keys": 2, "erased": 0, "system": 0}
        monkeypatch.setenv("JUNCTION_TEST_KEK_NEW", secrets.token_urlsafe(48))
        new = env_kek("JUNCTION_TEST_KEK_NEW")
        with store.begin() as conn:
            assert privacy.keyring.rotate(conn, new, new_source="env:JUNCTION_TEST_KEK_NEW") == 2
        _fresh_reads_ann(store_url, ("leads:f00d:0", "leads:f00d:1"))
        assert _erase_ann(store).keys_destroyed == 2
        with store.begin() as conn:
            assert key_counts(conn) == {"people": 0, "keys": 0, "erased": 1, "system": 0}
    finally:
        store.close()
    assert_no_canary(dump(store_url))
