"""Token buckets in memory, on a clock the test moves: burst, refill, Retry-After, isolation."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest

from junction.api import token_bucket
from junction.api.ratelimit import bucket_of
from junction.api.token_bucket import MemoryBuckets, Take


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def takes(buckets: MemoryBuckets, key: str, n: int, capacity: float, rate: float) -> list[Take]:
    return [buckets.take_now(key, capacity, rate) for _ in range(n)]


def test_a_burst_takes_exactly_the_capacity_then_waits_for_the_refill() -> None:
    clock = Clock()
    buckets = MemoryBuckets(clock)
    got = takes(buckets, "a", 20, capacity=10, rate=0.5)  # 10 tokens, one every 2 s
    assert [t.allowed for t in got] == [True] * 10 + [False] * 10
    # an empty bucket: one token in 2 s, so Retry-After is 2, and a refusal costs nothing
    assert {t.wait_s for t in got[10:]} == {2.0}
    assert {t.retry_after for t in got[10:]} == {2}
    clock.now += 1.5  # a quarter token short: 0.5 s to wait, rounded up to 1
    refused = buckets.take_now("a", 10, 0.5)
    assert not refused.allowed
    assert refused.wait_s == pytest.approx(0.5)
    assert refused.retry_after == 1
    clock.now += 0.5
    assert buckets.take_now("a", 10, 0.5).allowed  # the refill, continuous: not a new window
    assert not buckets.take_now("a", 10, 0.5).allowed


def test_an_idle_bucket_never_holds_more_than_its_capacity() -> None:
    clock = Clock()
    buckets = MemoryBuckets(clock)
    takes(buckets, "a", 3, capacity=3, rate=1)
    clock.now += 3600
    assert [t.allowed for t in takes(buckets, "a", 5, capacity=3, rate=1)] == [True] * 3 + [
        False
    ] * 2


def test_each_key_has_its_own_bucket() -> None:
    clock = Clock()
    buckets = MemoryBuckets(clock)
    assert not takes(buckets, "a", 3, capacity=2, rate=1)[-1].allowed
    assert all(t.allowed for t in takes(buckets, "b", 2, capacity=2, rate=1))


def test_the_rate_string_gives_capacity_and_refill() -> None:
    assert bucket_of("30/minute") == (30.0, 0.5)
    assert bucket_of("200/second") == (200.0, 200.0)
    capacity, rate = bucket_of("10/hour")
    assert capacity == 10
    assert rate == pytest.approx(10 / 3600)


def test_concurrent_takes_from_threads_never_take_more_than_there_is() -> None:
    buckets = MemoryBuckets()  # the real clock: 100 tokens, refilled at 1 a minute
    allowed: list[bool] = []
    gate = threading.Barrier(8)

    def worker() -> None:
        gate.wait()
        allowed.extend(t.allowed for t in takes(buckets, "a", 50, capacity=100, rate=1 / 60))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(allowed) == 400
    assert sum(allowed) == 100


def test_full_buckets_are_forgotten_past_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(token_bucket, "MAX_MEMORY_BUCKETS", 4)
    clock = Clock()
    buckets = MemoryBuckets(clock)
    takes(buckets, "busy", 2, capacity=2, rate=1)  # empty: remembered
    takes(buckets, "big", 5, capacity=10, rate=0.1)  # 5 of its 10 tokens left
    for k in ("a", "b"):
        takes(buckets, k, 1, capacity=2, rate=1)
    clock.now += 10  # a, b and busy refilled; big has 6 of 10, more than the others' capacity
    takes(buckets, "busy", 2, capacity=2, rate=1)  # empty again
    takes(buckets, "e", 1, capacity=2, rate=1)  # the fifth key: the full ones go
    assert set(buckets._state) == {"busy", "big", "e"}
    assert not buckets.take_now("busy", 2, 1).allowed  # its state survived
    # big kept its own state: 6 tokens, not a fresh bucket of 10
    assert [t.allowed for t in takes(buckets, "big", 7, capacity=10, rate=0.1)] == [True] * 6 + [
        False
    ]


def test_pruning_waits_until_the_buckets_double(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(token_bucket, "MAX_MEMORY_BUCKETS", 4)
    clock = Clock()
    buckets = MemoryBuckets(clock)
    passes = 0
    drop = buckets._drop_full

    def counted(now: float) -> None:
        nonlocal passes
        passes += 1
        drop(now)

    monkeypatch.setattr(buckets, "_drop_full", counted)
    for i in range(100):  # 100 busy clients, none of them ever full again
        takes(buckets, f"c{i}", 1, capacity=5, rate=0.001)
    assert len(buckets._state) == 100
    assert passes <= 5  # 5, 10, 20, 40, 80: not one pass a request


def test_the_async_take_is_the_same_take() -> None:
    clock = Clock()
    buckets = MemoryBuckets(clock)
    got = asyncio.run(buckets.take("a", 1, 1))
    assert got.allowed
    second = asyncio.run(buckets.take("a", 1, 1))
    assert not second.allowed
    assert second.retry_after == math.ceil(second.wait_s) == 1
