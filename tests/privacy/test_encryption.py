"""Encryption at rest: sealed on write, opened on read, loud if tampered, rotated by re-wrapping."""

from __future__ import annotations

import base64
import os
import secrets

import orjson
import pytest
from sqlalchemy import select, update

from junction.core.errors import DecryptionError, KeyUnavailableError
from junction.core.pseudonym import Pseudonymizer
from junction.store import tables as t
from junction.store.crypto import env_kek
from junction.store.crypto_rows import SEALED_KEY, StorePrivacy, enable_privacy
from junction.store.keyring import key_counts, settings_row
from junction.store.repo import Store
from tests.privacy.conftest import (
    CANARIES,
    KEK_ENV,
    assert_no_canary,
    delivery_row,
    dump,
    lead_payload,
    quarantine_row,
    record_row,
)


def _write(store: Store) -> None:
    records = [record_row(i, p) for i, p in enumerate(CANARIES)]
    deliveries = [
        delivery_row(r[0], "webhook.sales", orjson.dumps({"record": r[6]}).decode())
        for r in records
    ]
    quarantined = [
        quarantine_row("row-9", b"9,Zebulonia,Quillfeather,zebulonia.quill@canary-mail.example\n"),
        quarantine_row("row-10", b'{"mobile": "+14155550456", "name": "Ottoline Vexworth"}'),
    ]
    scores = [(r[0], "1", "lead-score", 0.7, "B", "[]", "production", 1.0) for r in records]
    store.write_batch(
        records=records,
        scores=scores,
        deliveries=deliveries,
        quarantined=quarantined,
        cursor=None,
    )


@pytest.fixture(params=["in-use", "python"])
def sealer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The batch sealer in use (native where built), and the Python one it falls back to."""
    if request.param == "python":
        from junction.store import batch_seal

        for name in ("encrypt_many", "seal_payloads", "hmac_tokens"):
            monkeypatch.setattr(batch_seal, name, getattr(batch_seal, f"py_{name}"))
    return str(request.param)


def test_a_dump_holds_no_personal_data_and_reads_open_it(
    sealed_store: tuple[Store, StorePrivacy], store_url: str, sealer: str
) -> None:
    store, _ = sealed_store
    _write(store)
    assert_no_canary(dump(store_url))

    # reads through the store open what was sealed, field for field
    for i, person in enumerate(CANARIES):
        row = store.fetch_record(f"leads:f00d:{i}")
        assert row is not None
        assert orjson.loads(row["payload"]) == orjson.loads(lead_payload(i, person))
        assert SEALED_KEY not in row["payload"]
    claimed = store.claim_deliveries(10, 30)
    assert sorted(orjson.loads(d["payload"])["record"] for d in claimed) == sorted(
        lead_payload(i, p) for i, p in enumerate(CANARIES)
    )
    raw = {q["record_key"]: q["payload"] for q in store.list_quarantine()}
    assert raw["row-9"].startswith(b"9,Zebulonia,")
    assert b"Ottoline" in raw["row-10"]
    # the non-personal fields stay readable without a key (drift, rescoring, reports)
    with store.begin() as conn:
        stored = conn.execute(select(t.records.c.payload, t.records.c.subject)).all()
    for payload, subject in stored:
        obj = orjson.loads(payload)
        assert obj["company"] == "Acme Widgets"
        assert "email" not in obj
        assert "first_name" not in obj
        assert obj[SEALED_KEY].startswith(f"JX2:{subject}:")


def test_a_second_process_reads_and_writes_sealed_without_being_told(
    sealed_store: tuple[Store, StorePrivacy], store_url: str
) -> None:
    _write(sealed_store[0])
    # a worker process opens the store from its URL alone: the settings turn sealing on
    other = Store.open(store_url)
    try:
        more = [record_row(7, CANARIES[0], pipeline="other")]
        other.write_batch(records=more, scores=[], deliveries=[], quarantined=[], cursor=None)
        row = other.fetch_record("other:f00d:7")
        assert row is not None
        assert orjson.loads(row["payload"])["email"] == CANARIES[0]["email"]
    finally:
        other.close()
    assert_no_canary(dump(store_url))


def test_subjects_are_the_pseudonym_of_email_else_phone_else_source_key(
    sealed_store: tuple[Store, StorePrivacy],
) -> None:
    store, privacy = sealed_store
    _write(store)
    with store.begin() as conn:
        by_id = dict(conn.execute(select(t.records.c.id, t.records.c.subject)).all())
    ring = privacy.keyring
    assert by_id["leads:f00d:0"] == ring.subject("email", "Zebulonia.Quill@CANARY-mail.example")
    assert by_id["leads:f00d:2"] == ring.subject("phone", "+1 415 555 0789")
    # the same token as the shared pseudonymizer's under the store's subject key
    assert ring.subject("email", "a@b.example") == Pseudonymizer(ring._subject_key).of(
        "email", "a@b.example"
    )


def _flip(sealed: str, where: str) -> str:
    head, body = sealed.rsplit(":", 1)  # JX2:<subject>:<key id>:<base64>
    blob = bytearray(base64.b64decode(body))
    at = {"nonce": 3, "ciphertext": 14, "tag": len(blob) - 2}[where]
    blob[at] ^= 0x01
    return f"{head}:{base64.b64encode(bytes(blob)).decode()}"


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag"])
def test_a_flipped_bit_in_a_record_fails_loudly(
    sealed_store: tuple[Store, StorePrivacy], store_url: str, where: str
) -> None:
    store, _ = sealed_store
    _write(store)
    rid = "leads:f00d:0"
    with store.begin() as conn:
        payload = conn.execute(select(t.records.c.payload).where(t.records.c.id == rid)).scalar()
        obj = orjson.loads(payload)
        obj[SEALED_KEY] = _flip(obj[SEALED_KEY], where)
        conn.execute(
            update(t.records)
            .where(t.records.c.id == rid)
            .values(payload=orjson.dumps(obj).decode())
        )
    fresh = Store.open(store_url)  # no key cached: the key comes from the store again
    try:
        with pytest.raises(DecryptionError):
            fresh.fetch_record(rid)
    finally:
        fresh.close()
    with pytest.raises(DecryptionError):
        store.fetch_record(rid)
    assert store.fetch_record("leads:f00d:1") is not None  # the others still open


def test_a_ciphertext_moved_to_another_record_fails_loudly(
    sealed_store: tuple[Store, StorePrivacy],
) -> None:
    store, _ = sealed_store
    # two records of one person (same subject, same key): only the record id tells them apart
    rows = [record_row(0, CANARIES[0]), record_row(1, CANARIES[0])]
    store.write_batch(records=rows, scores=[], deliveries=[], quarantined=[], cursor=None)
    with store.begin() as conn:
        first = conn.execute(
            select(t.records.c.payload).where(t.records.c.id == "leads:f00d:0")
        ).scalar()
        conn.execute(
            update(t.records).where(t.records.c.id == "leads:f00d:1").values(payload=first)
        )
    with pytest.raises(DecryptionError):
        store.fetch_record("leads:f00d:1")


def test_tampered_outbox_and_quarantine_payloads_fail_loudly(
    sealed_store: tuple[Store, StorePrivacy],
) -> None:
    store, _ = sealed_store
    _write(store)
    with store.begin() as conn:
        d = conn.execute(select(t.deliveries.c.id, t.deliveries.c.payload)).first()
        assert d is not None
        conn.execute(
            update(t.deliveries)
            .where(t.deliveries.c.id == d[0])
            .values(payload=_flip(d[1], "ciphertext"))
        )
    with pytest.raises(DecryptionError):
        store.claim_deliveries(10, 30)

    with store.begin() as conn:
        q = conn.execute(select(t.quarantine.c.id, t.quarantine.c.payload)).first()
        assert q is not None
        blob = bytearray(q[1])
        blob[-1] ^= 0x80
        conn.execute(
            update(t.quarantine).where(t.quarantine.c.id == q[0]).values(payload=bytes(blob))
        )
    with pytest.raises(DecryptionError):
        store.get_quarantine(q[0])
    # the sealed value names its subject: a cleared subject column never passes ciphertext on
    with store.begin() as conn:
        conn.execute(update(t.records).values(subject=None))
    row = store.fetch_record("leads:f00d:1")
    assert row is not None
    assert orjson.loads(row["payload"])["email"] == CANARIES[1]["email"]


@pytest.mark.parametrize("damage", ["bit", "subjects", "slot"])
def test_a_damaged_data_key_fails_loudly(
    sealed_store: tuple[Store, StorePrivacy], store_url: str, damage: str
) -> None:
    """A flipped bit in a key page, its subjects listed otherwise (two slots swapped), or a
    sealed value pointed at another slot of its page: the read raises, never opens."""
    store, _ = sealed_store
    _write(store)
    with store.begin() as conn:
        p = t.key_pages.c
        pages = conn.execute(select(p.id, p.subjects, p.wrapped)).all()
        pid, text, wrapped = max(pages, key=lambda page: len(page[1]))  # the records' page
        subjects = text.split(",")
        assert len(subjects) == 3
        rid = conn.execute(
            select(t.records.c.id).where(t.records.c.subject == subjects[0])
        ).scalar()
        if damage == "bit":
            bad = bytearray(wrapped)
            bad[20] ^= 0x04
            conn.execute(update(t.key_pages).where(p.id == pid).values(wrapped=bytes(bad)))
        elif damage == "subjects":
            swapped = ",".join([subjects[1], subjects[0], *subjects[2:]])
            conn.execute(update(t.key_pages).where(p.id == pid).values(subjects=swapped))
        else:
            r = t.records.c
            payload = conn.execute(select(r.payload).where(r.id == rid)).scalar_one()
            named = f"{subjects[0]}:{pid}:"
            assert named in payload
            moved = payload.replace(named, f"{subjects[0]}:{pid + 1}:")
            conn.execute(update(t.records).where(r.id == rid).values(payload=moved))
    fresh = Store.open(store_url)
    try:
        with pytest.raises(DecryptionError):
            fresh.fetch_record(str(rid))
    finally:
        fresh.close()


def test_a_wrong_or_missing_kek_is_refused(
    sealed_store: tuple[Store, StorePrivacy], store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = sealed_store
    _write(store)
    monkeypatch.setenv(KEK_ENV, secrets.token_urlsafe(48))
    other = Store.open(store_url)
    try:
        with pytest.raises(KeyUnavailableError):
            other.fetch_record("leads:f00d:0")
        # and it never writes in clear instead
        with pytest.raises(KeyUnavailableError):
            other.write_batch(
                records=[record_row(5, CANARIES[1])],
                scores=[],
                deliveries=[],
                quarantined=[],
                cursor=None,
            )
    finally:
        other.close()
    monkeypatch.delenv(KEK_ENV)
    gone = Store.open(store_url)
    try:
        with pytest.raises(KeyUnavailableError, match=KEK_ENV):
            gone.fetch_record("leads:f00d:0")
    finally:
        gone.close()
    assert_no_canary(dump(store_url))


def test_rotation_rewraps_keys_keeps_data_readable_and_retires_the_old_kek(
    sealed_store: tuple[Store, StorePrivacy], store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, privacy = sealed_store
    _write(store)
    with store.begin() as conn:
        before = dict(conn.execute(select(t.records.c.id, t.records.c.payload)).all())
        old_id = settings_row(conn)["kek_id"]  # type: ignore[index]
    old_secret = os.environ[KEK_ENV]
    monkeypatch.setenv("JUNCTION_TEST_KEK_NEW", secrets.token_urlsafe(48))
    new = env_kek("JUNCTION_TEST_KEK_NEW")
    with store.begin() as conn:
        n = privacy.keyring.rotate(conn, new, new_source="env:JUNCTION_TEST_KEK_NEW")
        after = dict(conn.execute(select(t.records.c.id, t.records.c.payload)).all())
        settings = settings_row(conn)
        kek_ids = set(conn.execute(select(t.key_pages.c.kek_id)).scalars())
    # 3 people, and the phone number a quarantined row names (its person is keyed by email)
    assert n == 4
    assert after == before  # data is not re-encrypted
    assert settings is not None
    assert settings["kek_id"] == new.key_id != old_id
    assert kek_ids == {new.key_id}

    # a new process finds the new KEK through the settings and reads everything
    fresh = Store.open(store_url)
    try:
        for i, person in enumerate(CANARIES):
            row = fresh.fetch_record(f"leads:f00d:{i}")
            assert row is not None
            assert orjson.loads(row["payload"])["phone"] == person["phone"]
    finally:
        fresh.close()
    # the old KEK opens nothing any more
    with pytest.raises(KeyUnavailableError):
        enable_privacy(Store.open(store_url), kek=f"env:{KEK_ENV}")
    monkeypatch.setenv("JUNCTION_TEST_KEK_NEW", old_secret)
    stale = Store.open(store_url)
    try:
        with pytest.raises(KeyUnavailableError):
            stale.fetch_record("leads:f00d:0")
    finally:
        stale.close()


def test_rewriting_a_batch_is_idempotent_and_one_person_has_one_key(
    sealed_store: tuple[Store, StorePrivacy],
) -> None:
    store, _ = sealed_store
    _write(store)
    _write(store)  # a replayed batch: nothing new, no second key
    rows = [record_row(10 + i, CANARIES[0]) for i in range(40)]
    store.write_batch(records=rows, scores=[], deliveries=[], quarantined=[], cursor=None)
    with store.begin() as conn:
        assert conn.execute(select(t.records.c.id)).all().__len__() == 43
        assert key_counts(conn)["keys"] == 4
    for i in range(40):
        row = store.fetch_record(f"leads:f00d:{10 + i}")
        assert row is not None
        assert orjson.loads(row["payload"])["external_id"] == f"ext-{10 + i}"


def test_a_replayed_quarantine_entry_still_opens(sealed_store: tuple[Store, StorePrivacy]) -> None:
    store, _ = sealed_store
    _write(store)
    [first, *_] = store.list_quarantine()
    with store.begin() as conn:  # resolving appends "#<id>" to the key the seal is bound to
        store.resolve_quarantine(conn, first["id"], "replayed")
    [again] = store.list_quarantine(status="replayed")
    assert again["record_key"].endswith(f"#{first['id']}")
    assert again["payload"] == first["payload"]
    reopened = store.get_quarantine(first["id"])
    assert reopened is not None
    assert reopened["payload"] == first["payload"]


def test_outbox_rows_written_outside_a_batch_are_sealed_too(
    sealed_store: tuple[Store, StorePrivacy], store_url: str
) -> None:
    store, _ = sealed_store
    _write(store)
    event = orjson.dumps({"type": "digest", "items": [{"email": CANARIES[1]["email"]}]}).decode()
    row = {"id": "digest-1", "record_id": "leads:f00d:1", "payload": event}
    with store.begin() as conn:
        sealed = store.sealed_delivery(conn, row)
        assert sealed is not None
        conn.execute(
            t.deliveries.insert().values(
                **sealed,
                pipeline="leads",
                channel="slack.ops",
                event_type="digest",
                status="pending",
                attempts=0,
                next_attempt_at=0.0,
                created_at=0.0,
            )
        )
    assert_no_canary(dump(store_url))
    claimed = {d["id"]: d["payload"] for d in store.claim_deliveries(10, 30)}
    assert claimed["digest-1"] == event
