"""Pipeline leases and cron slots on the real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from junction.serve.leases import PipelineLeases
from junction.serve.scheduler import due_slot
from junction.store.repo import Store


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store.open(store_url)
    yield s
    s.close()


def test_a_slot_fires_once_however_many_processes_try(store: Store) -> None:
    owners = [PipelineLeases(store, f"p{i}", ttl_s=30) for i in range(8)]
    owners[0].ensure(["leads"], ["leads"], now=1000.0)
    wins: list[str] = []
    barrier = threading.Barrier(len(owners))

    def attempt(leases: PipelineLeases) -> None:
        barrier.wait()
        if leases.try_fire("leads", slot=1060.0, now=1061.0):
            wins.append(leases.owner)

    threads = [threading.Thread(target=attempt, args=(o,)) for o in owners]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(wins) == 1
    fired, _ = owners[0].snapshot()
    assert fired["leads"] == 1060.0
    # the winner released its lease: the same slot still does not fire again
    winner = next(o for o in owners if o.owner == wins[0])
    assert winner.release("leads") == 1
    assert not any(o.try_fire("leads", slot=1060.0, now=1062.0) for o in owners)
    assert owners[3].try_fire("leads", slot=1120.0, now=1121.0)


def test_a_held_lease_excludes_others_until_it_expires(store: Store) -> None:
    a = PipelineLeases(store, "a", ttl_s=10)
    b = PipelineLeases(store, "b", ttl_s=10)
    a.ensure(["leads"], [], now=0.0)
    assert a.try_acquire("leads", now=100.0)
    assert a.try_acquire("leads", now=101.0)  # re-entrant for its owner
    assert not b.try_acquire("leads", now=105.0)
    assert not b.try_fire("leads", slot=104.0, now=105.0)  # a slot waits for the lease
    assert a.renew("leads", now=108.0)  # now held until 118
    assert not b.try_acquire("leads", now=117.0)
    assert b.try_acquire("leads", now=118.5)  # a stopped renewing: b takes over
    assert not a.renew("leads", now=119.0)  # and a learns it lost the lease
    assert b.release() == 1
    assert a.try_acquire("leads", now=119.5)


def test_first_sight_of_a_schedule_counts_from_now(store: Store) -> None:
    leases = PipelineLeases(store, "a")
    leases.ensure(["leads", "other"], ["leads"], now=500.0)
    leases.ensure(["leads", "other"], ["leads", "other"], now=900.0)  # a schedule added later
    fired, paused = leases.snapshot()
    assert fired == {"leads": 500.0, "other": 900.0}
    assert paused == set()


def test_pause_and_resume(store: Store) -> None:
    leases = PipelineLeases(store, "a")
    leases.set_paused("leads", True)
    assert leases.is_paused("leads")
    assert leases.snapshot()[1] == {"leads"}
    PipelineLeases(store, "b").set_paused("leads", False)
    assert not leases.is_paused("leads")
    assert leases.snapshot()[1] == set()


@pytest.mark.parametrize(
    ("expr", "last", "now", "expected"),
    [
        pytest.param("0 * * * *", 3600.0 * 10, 3600.0 * 10 + 59, None, id="not-yet"),
        pytest.param("0 * * * *", 3600.0 * 10, 3600.0 * 11 + 1, 3600.0 * 11, id="due"),
        # a day down: 24 slots missed, one fire for the latest
        pytest.param("0 * * * *", 3600.0 * 10, 3600.0 * 34 + 5, 3600.0 * 34, id="missed-once"),
        pytest.param("* * * * * */2", 100.0, 104.5, 104.0, id="seconds-field"),
        pytest.param("* * * * * */2", 104.0, 105.9, None, id="seconds-not-yet"),
    ],
)
def test_due_slot(expr: str, last: float, now: float, expected: float | None) -> None:
    assert due_slot(expr, last, now) == expected


def test_a_lease_of_a_dead_local_process_is_taken_over_at_once(store: Store) -> None:
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ghost = PipelineLeases(store, f"{host}:{dead.pid}:0000", ttl_s=600)
    alive = PipelineLeases(store, f"{host}:{os.getppid()}:1111", ttl_s=600)
    remote = PipelineLeases(store, f"elsewhere:{dead.pid}:2222", ttl_s=600)
    me = PipelineLeases.for_this_process(store)
    ghost.ensure(["a", "b", "c"], [], now=0.0)
    assert ghost.try_acquire("a")
    assert alive.try_acquire("b")
    assert remote.try_acquire("c")
    assert not me.try_acquire("a")
    assert me.take_over_dead("a")  # its holder is gone: no need to wait 600 s
    assert me.try_acquire("a")
    assert not me.take_over_dead("a")  # never from itself
    assert not me.take_over_dead("b")  # a live holder keeps its lease
    assert not me.take_over_dead("c")  # another host's process cannot be checked from here
    assert not me.try_acquire("b")
    assert not me.try_acquire("c")
