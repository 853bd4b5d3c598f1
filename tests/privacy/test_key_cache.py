"""The per-process data-key cache: bounded, re-read after eviction, emptied by an erasure."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import Table, func, select

from junction.core.errors import SubjectErasedError
from junction.core.pseudonym import Pseudonymizer
from junction.store import tables as t
from junction.store.audit import AuditLog
from junction.store.crypto_rows import enable_privacy
from junction.store.erasure import erase
from junction.store.keyring import PAGE_SLOTS, KeyCache, key_counts
from junction.store.repo import Store
from junction.store.suppressions import SuppressionList
from tests.privacy.conftest import CANARIES, dump, record_row

ANN: dict[str, str | None] = CANARIES[0]  # type: ignore[assignment]


def _person(i: int) -> dict[str, str | None]:
    return {
        "first_name": f"Keyholder{i}",
        "last_name": "Cachewood",
        "email": f"keyholder{i}@cache-test.example",
        "phone": None,
    }


def _write(store: Store, people: range) -> None:
    store.write_batch(
        records=[record_row(i, _person(i)) for i in people],
        scores=[],
        deliveries=[],
        quarantined=[],
        cursor=None,
    )


def _email(store: Store, i: int) -> object:
    row = store.fetch_record(f"leads:f00d:{i}")
    assert row is not None
    return orjson.loads(row["payload"])["email"]


def _count(store: Store, table: Table) -> int:
    with store.begin() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _keys(store: Store) -> int:
    """Live data keys of people (key rows and key page slots)."""
    with store.begin() as conn:
        return key_counts(conn)["keys"]


def test_the_cache_keeps_at_most_key_cache_keys_and_evicted_keys_are_read_again(
    store_url: str, kek: str
) -> None:
    store = Store.open(store_url)
    try:
        keyring = enable_privacy(store, kek=kek, key_cache=8).keyring
        assert keyring.cache_size == 8
        _write(store, range(150))
        assert keyring.cached == 8
        _write(store, range(150, 170))
        assert keyring.cached == 8
        assert _keys(store) == 170
        assert _count(store, t.key_pages) == 2  # one page of keys per write batch
        assert _count(store, t.data_keys) == 0
        # every key but the last eight was evicted: reads unwrap them again, correctly
        for i in range(170):
            assert _email(store, i) == f"keyholder{i}@cache-test.example"
        assert keyring.cached == 8
        # new records of people whose key was evicted: sealed under a new key of theirs (no
        # subject index to find the old one by); old and new records open
        store.write_batch(
            records=[record_row(i, _person(i), pipeline="again") for i in range(20)],
            scores=[],
            deliveries=[],
            quarantined=[],
            cursor=None,
        )
        assert _keys(store) == 190
        with store.begin() as conn:
            assert key_counts(conn)["people"] == 170
        for rid in ("leads:f00d:3", "again:f00d:3"):
            row = store.fetch_record(rid)
            assert row is not None
            assert orjson.loads(row["payload"])["email"] == "keyholder3@cache-test.example"
    finally:
        store.close()
    assert "cache-test.example" not in dump(store_url)


def test_no_cache_at_all_still_reads_and_writes(store_url: str, kek: str) -> None:
    store = Store.open(store_url)
    try:
        keyring = enable_privacy(store, kek=kek, key_cache=0).keyring
        _write(store, range(70))
        _write(store, range(60, 80))
        assert keyring.cached == 0
        assert _keys(store) == 90  # people 60-69 again: new keys
        assert [_email(store, i) for i in (0, 65, 79)] == [
            f"keyholder{i}@cache-test.example" for i in (0, 65, 79)
        ]
    finally:
        store.close()


def test_two_writers_meeting_the_same_people_each_store_their_own_keys(
    store_url: str, kek: str
) -> None:
    store = Store.open(store_url)
    other = Store.open(store_url)  # a second writer process with its own keys
    try:
        enable_privacy(store, kek=kek)
        early = [record_row(i, _person(i), pipeline="other") for i in range(70)]
        mine = [record_row(i, _person(i)) for i in range(150)]
        sealed = store.preseal(mine, [])  # 150 new keys drafted here, none stored yet
        other.write_batch(records=early, scores=[], deliveries=[], quarantined=[], cursor=None)
        store.write_batch(
            records=mine, scores=[], deliveries=[], quarantined=[], cursor=None, presealed=sealed
        )
        assert _keys(store) == 220  # the first 70 people hold two keys
        with store.begin() as conn:
            assert key_counts(conn)["people"] == 150
        for reader in (store, other):
            for i in (0, 69, 70, 149):
                assert _email(reader, i) == f"keyholder{i}@cache-test.example"
                row = reader.fetch_record(f"other:f00d:{i}")
                if i < 70:
                    assert row is not None
                    assert orjson.loads(row["payload"])["email"] == _person(i)["email"]
    finally:
        other.close()
        store.close()


def test_erasure_evicts_the_key_from_every_cache_in_the_process(store_url: str, kek: str) -> None:
    store = Store.open(store_url)
    reader = Store.open(store_url)  # another part of the process with its own keyring
    try:
        privacy = enable_privacy(store, kek=kek)
        store.write_batch(
            records=[record_row(1, ANN)], scores=[], deliveries=[], quarantined=[], cursor=None
        )
        assert reader.fetch_record("leads:f00d:1") is not None  # caches Ann's key there
        other = reader.privacy()
        assert other is not None
        subject = privacy.subject_of(email=ANN["email"])[0]
        assert privacy.keyring.holds(subject)
        assert other.keyring.holds(subject)
        with store.begin() as conn:  # a copy of the sealed row, as a backup would keep it
            copy = dict(
                conn.execute(select(t.records).where(t.records.c.id == "leads:f00d:1"))
                .mappings()
                .one()
            )
        ps = Pseudonymizer(b"p" * 32)
        erase(
            store,
            emails=[str(ANN["email"])],
            phones=[],
            actor="cli:dpo",
            audit=AuditLog(store, ps),
            suppressions=SuppressionList(store, ps),
        )
        assert not privacy.keyring.holds(subject)
        assert not other.keyring.holds(subject)
        assert reader.fetch_record("leads:f00d:1") is None
        # the copy does not open in either keyring: the key is gone from the store and memory
        for p in (privacy, other):
            with reader.begin() as conn, pytest.raises(SubjectErasedError):
                p.open_records(conn, [copy])
    finally:
        reader.close()
        store.close()


def test_the_key_cache_evicts_the_least_recently_used_key() -> None:
    cache = KeyCache(3)
    key = bytes(32)
    for i, s in enumerate(("a", "b", "c")):
        cache.put(s, key, i + 1)
    assert cache.get("a") == (key, 1, b"")  # a is now the most recent
    cache.put("d", key, 0, b"wrapped")  # a data_keys key (found by subject): its wrapped form
    assert cache.get("d") == (key, 0, b"wrapped")
    assert "b" not in cache
    assert [s for s in ("a", "c", "d") if s in cache] == ["a", "c", "d"]
    cache.put_many([(s, key, 9, b"") for s in "efgh"])
    assert len(cache) == 3
    assert [s for s in "abcdefgh" if s in cache] == ["f", "g", "h"]
    cache.discard(["g", "zz"])
    assert len(cache) == 2
    assert KeyCache(0).get("a") is None
    empty = KeyCache(0)
    empty.put("a", key, 1)
    assert len(empty) == 0


def test_a_page_id_another_writer_took_first_gets_new_keys_and_the_rows_are_sealed_again(
    store_url: str, kek: str
) -> None:
    store = Store.open(store_url)
    try:
        enable_privacy(store, kek=kek)
        mine = [record_row(i, _person(i)) for i in range(3)]
        sealed = store.preseal(mine, [])
        assert sealed is not None
        [page] = sealed.drafts.pages
        assert page.id <= sealed.drafts.keys[sealed.subjects["leads:f00d:1"]][1] < page.id + 3
        with store.begin() as conn:  # another process drew the same id in the same millisecond
            conn.execute(
                t.key_pages.insert().values(
                    id=page.id,
                    subjects="ps_someoneElseEntirely000",
                    wrapped=b"x" * 60,
                    kek_id="other",
                    created_at=0.0,
                )
            )
        store.write_batch(
            records=mine, scores=[], deliveries=[], quarantined=[], cursor=None, presealed=sealed
        )
        assert _keys(store) == 4  # theirs, and our three in a page of another id
        assert _count(store, t.key_pages) == 2
    finally:
        store.close()
    fresh = Store.open(store_url)  # nothing cached: every key comes from the store
    try:
        assert [_email(fresh, i) for i in range(3)] == [_person(i)["email"] for i in range(3)]
    finally:
        fresh.close()


def test_a_cached_key_stored_nowhere_is_replaced_by_a_new_one(store_url: str, kek: str) -> None:
    store = Store.open(store_url)
    try:
        privacy = enable_privacy(store, kek=kek)
        _write(store, range(1))
        subject = privacy.subject_of(email=_person(0)["email"])[0]
        assert privacy.keyring.holds(subject)
        with store.begin() as conn:  # as if the transaction that stored it had rolled back
            conn.execute(t.key_pages.delete())
            conn.execute(t.records.delete())
        store.write_batch(
            records=[record_row(1, _person(0), pipeline="again")],
            scores=[],
            deliveries=[],
            quarantined=[],
            cursor=None,
        )
        assert _keys(store) == 1
        assert _count(store, t.key_pages) == 1
    finally:
        store.close()
    fresh = Store.open(store_url)
    try:
        row = fresh.fetch_record("again:f00d:1")
        assert row is not None
        assert orjson.loads(row["payload"])["email"] == _person(0)["email"]
    finally:
        fresh.close()


def test_a_batch_of_more_people_than_a_page_holds_fills_two_pages(store_url: str, kek: str) -> None:
    store = Store.open(store_url)
    try:
        enable_privacy(store, kek=kek, key_cache=16)
        _write(store, range(PAGE_SLOTS + 5))
        with store.begin() as conn:
            pages = conn.execute(select(t.key_pages.c.id, t.key_pages.c.subjects)).all()
        assert sorted(len(text.split(",")) for _, text in pages) == [5, PAGE_SLOTS]
        assert all(pid % PAGE_SLOTS == 0 for pid, _ in pages)
        assert _keys(store) == PAGE_SLOTS + 5
    finally:
        store.close()
    fresh = Store.open(store_url)  # nothing cached: each key is read from its page
    try:
        for i in (0, PAGE_SLOTS - 1, PAGE_SLOTS, PAGE_SLOTS + 4):
            assert _email(fresh, i) == f"keyholder{i}@cache-test.example"
    finally:
        fresh.close()
