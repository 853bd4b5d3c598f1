"""The audit log on SQLite and PostgreSQL: hash chain, tamper detection, concurrent appends from
threads and processes, pseudonymized details, and the batching buffer (flush, retry, shutdown)."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import delete, func, select, text, update

from junction.core.errors import ConfigError, UnavailableError
from junction.core.pseudonym import Pseudonymizer
from junction.store.audit import AuditBuffer, AuditEntry, AuditLog, PreparedEntry, row_hash
from junction.store.clients import ClientStore
from junction.store.engine import make_engine
from junction.store.repo import Store
from junction.store.tables import audit_log

KEY = b"audit-test-pseudonym-key-0123456789"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store.open(store_url)
    yield s
    s.close()


def rows(store: Store) -> list[dict[str, Any]]:
    with store.begin() as conn:
        return [dict(r._mapping) for r in conn.execute(select(audit_log).order_by(audit_log.c.id))]


def fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append("jc_test", "test.append", f"target-{i}", f"req-{i}", {"i": i})


def test_appends_form_a_hash_chain_that_verifies(store: Store) -> None:
    log = AuditLog(store)
    first = log.append("jc_a", "client.create", "jc_b", "req-1", {"roles": ["viewer"]})
    more = log.append_many([AuditEntry("jc_a", "quarantine.replay", f"q:{i}") for i in range(3)])
    assert first.prev_hash is None
    assert [r.id for r in more] == [2, 3, 4]
    chain = rows(store)
    for before, row in itertools.pairwise(chain):
        assert row["prev_hash"] == before["hash"]
        assert row["hash"] == row_hash(before["hash"], row)
    assert log.verify() is None
    check = log.check()
    assert check.entries == 4
    assert check.head_hash == chain[-1]["hash"]
    assert log.head() is not None
    assert log.head().hash == chain[-1]["hash"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "column", ["detail", "actor", "action", "target", "at", "request_id"], ids=str
)
def test_editing_any_field_of_a_row_is_detected_at_that_row(store: Store, column: str) -> None:
    log = AuditLog(store)
    fill(log, 6)
    new = {"detail": '{"i":99}', "actor": "jc_other", "action": "x.y", "target": "t", "at": 1.0}
    with store.begin() as conn:
        conn.execute(
            update(audit_log).where(audit_log.c.id == 3).values({column: new.get(column, "r")})
        )
    assert log.verify() == 3
    log.append("jc_test", "test.after", "t")  # appending does not heal a broken chain
    assert log.verify() == 3


def test_a_recomputed_hash_breaks_the_next_link(store: Store) -> None:
    log = AuditLog(store)
    fill(log, 5)
    with store.begin() as conn:
        row = dict(conn.execute(select(audit_log).where(audit_log.c.id == 2)).one()._mapping)
        row["detail"] = '{"i":-1}'
        conn.execute(
            update(audit_log)
            .where(audit_log.c.id == 2)
            .values(detail=row["detail"], hash=row_hash(row["prev_hash"], row))
        )
    assert log.verify() == 3


def test_deleting_a_row_is_detected_at_the_next_one(store: Store) -> None:
    log = AuditLog(store)
    fill(log, 5)
    with store.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.id == 3))
    assert log.verify() == 4


def test_an_empty_log_verifies(store: Store) -> None:
    log = AuditLog(store)
    assert log.verify() is None
    assert log.check().entries == 0
    assert log.head() is None


def test_concurrent_threads_do_not_fork_the_chain(store_url: str, store: Store) -> None:
    # each thread has its own engine and connections (opened here: migrations are not threadsafe)
    stores = [Store.open(store_url) for _ in range(6)]

    def work(k: int) -> None:
        log = AuditLog(stores[k])
        for i in range(15):
            log.append(f"thread:{k}", "test.thread", f"t{i}", detail={"i": i})
        log.append_many([AuditEntry(f"thread:{k}", "test.batch", f"b{i}") for i in range(10)])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    chain = rows(store)
    assert len(chain) == 6 * 25
    assert [r["id"] for r in chain] == list(range(1, len(chain) + 1))
    assert AuditLog(store).verify() is None


SCRIPT = """
import sys
from junction.store.audit import AuditLog
from junction.store.repo import Store
store = Store.open(sys.argv[1])
log = AuditLog(store)
for i in range(int(sys.argv[3])):
    log.append("proc:" + sys.argv[2], "test.process", "t%d" % i, detail={"i": i})
store.close()
"""


def test_concurrent_processes_do_not_fork_the_chain(store_url: str, store: Store) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", SCRIPT, store_url, str(k), "40"], env=env)
        for k in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    chain = rows(store)
    assert len(chain) == 160
    assert AuditLog(store).verify() is None
    for k in range(4):  # each process's own entries keep their order
        mine = [orjson.loads(r["detail"])["i"] for r in chain if r["actor"] == f"proc:{k}"]
        assert mine == list(range(40))


def test_personal_data_is_stored_only_as_pseudonyms(store: Store) -> None:
    p = Pseudonymizer(KEY)
    log = AuditLog(store, p)
    log.append(
        "ann.lee@example.com",  # e.g. typed as a client id at the token endpoint
        "score.lead",
        "lead for ann.lee@example.com",
        "r1",
        {
            "email": "Ann.Lee@Example.com",
            "phone": "+1 (555) 010-7777",
            "contact": {"first_name": "Ann", "last_name": "Lee"},
            "score": 0.87,
            "grade": "A",
        },
    )
    (row,) = rows(store)
    stored = " ".join(str(v) for v in row.values())
    # hashes (pseudonyms, the chain) are hex: a digit run like "555" may occur in one by chance
    readable = re.sub(r"[0-9a-f]{16,}", "#", stored)
    for raw in ("ann", "Ann", "Lee", "example.com", "555", "7777"):
        assert raw not in readable
    detail = orjson.loads(row["detail"])
    assert detail["email"] == p.of("email", "ann.lee@example.com")
    assert detail["phone"] == p.of("phone", "+15550107777")
    assert detail["contact"]["last_name"] == p.of("name", "Lee")
    assert detail["score"] == 0.87
    assert detail["grade"] == "A"
    assert row["actor"] == p.of("email", "ann.lee@example.com")
    assert row["target"] == f"lead for {p.of('email', 'ann.lee@example.com')}"
    # an auditor holding the key can find a person's entries by pseudonym
    found = log.query(actor=p.of("email", "ANN.LEE@example.com "))
    assert [r.id for r in found] == [row["id"]]


def test_without_a_key_personal_data_is_reduced_to_its_kind(store: Store) -> None:
    AuditLog(store).append("jc_a", "x.y", "t", detail={"email": "a@b.co", "name": "Ann", "n": 1})
    assert orjson.loads(rows(store)[0]["detail"]) == {"email": "[email]", "name": "[name]", "n": 1}


def test_overlong_fields_are_clipped_not_refused(store: Store) -> None:
    log = AuditLog(store)
    log.append("a" * 500, "b" * 200, "c" * 2000, "d" * 200)
    (row,) = rows(store)
    assert (len(row["actor"]), len(row["action"]), len(row["target"])) == (128, 64, 600)
    assert len(row["request_id"]) == 64
    assert log.verify() is None


def test_query_filters_and_pages_newest_first(store: Store) -> None:
    log = AuditLog(store)
    t0 = time.time()
    log.append_many(
        [
            AuditEntry("jc_a", "client.create", "jc_1", at=t0 - 100),
            AuditEntry("jc_a", "client.revoke", "jc_1", at=t0 - 50),
            AuditEntry("jc_b", "quarantine.replay", "q:1", at=t0 - 10),
            AuditEntry("jc_b", "client.create", "jc_2", at=t0),
        ]
    )
    assert [r.id for r in log.query()] == [4, 3, 2, 1]
    assert [r.id for r in log.query(action="client.create")] == [4, 1]
    assert [r.id for r in log.query(action="client.*")] == [4, 2, 1]
    assert [r.id for r in log.query(actor="jc_b")] == [4, 3]
    assert [r.id for r in log.query(target="jc_1")] == [2, 1]
    assert [r.id for r in log.query(since=t0 - 60, until=t0 - 5)] == [3, 2]
    assert [r.id for r in log.query(limit=2)] == [4, 3]
    assert [r.id for r in log.query(limit=2, before_id=3)] == [2, 1]
    assert [r.id for r in log.query(action="client%")] == []  # LIKE wildcards are literal


def test_client_creation_and_revocation_are_audited_with_the_change(store: Store) -> None:
    clients = ClientStore(store)
    client, secret = clients.create("partner", ["ingest"], rate_limit="10/second", actor="cli:ops")
    assert clients.revoke(client.id, actor="cli:ops", request_id="req-9")
    assert not clients.revoke(client.id, actor="cli:ops")  # already revoked: no second entry
    entries = AuditLog(store).query(target=client.id)
    assert [(e.action, e.actor) for e in entries] == [
        ("client.revoke", "cli:ops"),
        ("client.create", "cli:ops"),
    ]
    assert entries[1].detail == {"kind": "oauth", "roles": ["ingest"], "rate_limit": "10/second"}
    assert entries[0].request_id == "req-9"
    assert secret not in str(rows(store))
    with pytest.raises(ConfigError):
        clients.create("bad", ["viewer"], rate_limit="lots")
    assert AuditLog(store).count() == 2  # a refused creation leaves no entry
    assert AuditLog(store).verify() is None


def test_buffer_batches_many_entries_into_few_transactions(store: Store) -> None:
    buffer = AuditBuffer(AuditLog(store), interval_s=0.2, max_batch=500)

    def add(k: int) -> None:
        for i in range(300):
            buffer.record(f"jc_{k}", "score.lead", f"lead:{k}:{i}", detail={"score": i / 300})

    threads = [threading.Thread(target=add, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    asyncio.run(buffer.aclose())
    assert AuditLog(store).count() == 1200
    assert buffer.written == 1200
    assert buffer.flushes <= 12  # not one transaction per entry
    assert AuditLog(store).verify() is None


def test_buffer_flushes_on_its_timer(store: Store) -> None:
    buffer = AuditBuffer(AuditLog(store), interval_s=0.1)
    try:
        for i in range(3):
            buffer.record("jc_a", "route.decision", f"lead:{i}")
        deadline = time.monotonic() + 3
        while AuditLog(store).count() < 3:
            assert time.monotonic() < deadline, "the buffer did not flush on its timer"
            time.sleep(0.05)
    finally:
        buffer.close()


def test_buffer_close_writes_what_is_left(store: Store) -> None:
    buffer = AuditBuffer(AuditLog(store), interval_s=3600)
    for i in range(5):
        buffer.record("jc_a", "score.lead", f"lead:{i}")
    time.sleep(0.3)
    assert AuditLog(store).count() == 0  # still waiting for the (long) interval
    asyncio.run(buffer.aclose())
    assert AuditLog(store).count() == 5
    with pytest.raises(UnavailableError):
        buffer.record("jc_a", "score.lead", "too-late")


def _move_table(store_url: str, away: bool) -> None:
    other = Store(make_engine(store_url))  # no migration run: it would not notice anyway
    names = ("audit_log", "audit_log_away") if away else ("audit_log_away", "audit_log")
    with other.begin() as conn:
        conn.execute(text(f"ALTER TABLE {names[0]} RENAME TO {names[1]}"))
    other.close()


def test_buffer_keeps_entries_while_the_store_fails_and_writes_them_later(
    store_url: str, store: Store
) -> None:
    log = AuditLog(store)
    log.append("jc_a", "before", "t")
    buffer = AuditBuffer(log, interval_s=0.05, max_pending=8)
    try:
        _move_table(store_url, away=True)  # a real store failure: the table is gone
        for i in range(8):
            buffer.record("jc_a", "score.lead", f"lead:{i}")
        time.sleep(0.6)
        assert buffer.pending == 8  # kept, in memory, in order
        with pytest.raises(UnavailableError):  # backpressure: refuse rather than lose
            buffer.record("jc_a", "score.lead", "one-too-many")
        _move_table(store_url, away=False)
        deadline = time.monotonic() + 10
        while log.count() < 9:
            assert time.monotonic() < deadline, "the buffer did not retry"
            time.sleep(0.1)
    finally:
        buffer.close()
    with store.begin() as conn:
        n = conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
    assert n == 9
    assert [r.target for r in log.query(action="score.lead")][::-1] == [
        f"lead:{i}" for i in range(8)
    ]
    assert log.verify() is None


def test_nul_bytes_and_odd_values_are_stored_safely(store: Store) -> None:
    log = AuditLog(store)
    log.append("jc_\x00x", "a\x00b", "t\x00", "r\x00", {"big": 2**70, "s": {"b", "a"}, "z": "\x00"})
    (row,) = rows(store)
    assert "\x00" not in row["actor"] + row["action"] + row["target"] + row["request_id"]
    assert orjson.loads(row["detail"]) == {"big": str(2**70), "s": ["a", "b"], "z": "\x00"}
    assert log.verify() is None


class _Unsanitized(AuditLog):
    """Fault injection: lets one entry through that the store will refuse."""

    def prepare(self, entry: AuditEntry) -> PreparedEntry:
        p = super().prepare(entry)
        if entry.target == "poison":
            return PreparedEntry(p.at, p.actor, p.action, "poi\x00son", p.request_id, p.detail)
        return p


@pytest.mark.postgres
def test_one_entry_the_store_refuses_does_not_block_the_others(pg_url: str) -> None:
    store = Store.open(pg_url)  # PostgreSQL refuses NUL in text; SQLite would store it
    try:
        buffer = AuditBuffer(_Unsanitized(store), interval_s=0.05)
        for target in ("before", "poison", "after"):
            buffer.record("jc_a", "score.lead", target)
        buffer.close()
        assert [r["target"] for r in rows(store)] == ["before", "after"]
        assert buffer.written == 2
        assert AuditLog(store).verify() is None
    finally:
        store.close()
