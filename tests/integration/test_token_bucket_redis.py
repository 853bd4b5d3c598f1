"""Token buckets shared through the real Redis: atomic across processes, refilled continuously.

RELIABILITY.md case 15: a client bursting twice its capacity from several workers at once gets
exactly its capacity (plus what refills meanwhile), every other request a refusal with the
ceiling of the refill time, and another client is not touched.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing as mp
import time
import uuid
from typing import Any

import pytest
import redis

from junction.api.token_bucket import RedisBuckets, Take
from tests.conftest import REDIS_URL

NAMESPACE = "junction-test-bucket"
pytestmark = pytest.mark.usefixtures("redis_available")


def buckets() -> RedisBuckets:
    return RedisBuckets(REDIS_URL, namespace=NAMESPACE, timeout_s=2)


async def burst(key: str, n: int, capacity: float, rate: float) -> list[Take]:
    b = buckets()
    try:
        return list(await asyncio.gather(*(b.take(key, capacity, rate) for _ in range(n))))
    finally:
        await b.aclose()


def _worker(key: str, n: int, capacity: float, rate: float, start: Any, out: Any) -> None:
    start.wait()
    out.put([(t.allowed, t.wait_s) for t in asyncio.run(burst(key, n, capacity, rate))])


def test_four_processes_bursting_one_bucket_take_exactly_its_tokens() -> None:
    key = f"a-{uuid.uuid4().hex}"
    capacity, rate = 40.0, 40 / 3600  # one token every 90 s: none refills during the burst
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(key, 20, capacity, rate, start, out)) for _ in range(4)
    ]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let them import and wait at the start line
    began = time.monotonic()
    start.set()

    async def client_b() -> list[Take]:
        # meanwhile another client at its normal pace
        b = buckets()
        got = []
        try:
            for _ in range(5):
                got.append(await b.take(f"b-{key}", 5, 5 / 60))
                await asyncio.sleep(0.02)
        finally:
            await b.aclose()
        return got

    b_takes = asyncio.run(client_b())
    results = [out.get(timeout=60) for _ in procs]
    elapsed = time.monotonic() - began
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    takes = [t for r in results for t in r]
    assert len(takes) == 80
    refills = math.floor(elapsed * rate)  # 0 unless the burst took 90 s
    assert capacity <= sum(ok for ok, _ in takes) <= capacity + refills
    # each refusal: the time until the next token, about 90 s less what has refilled
    waits = [w for ok, w in takes if not ok]
    assert all(90 - elapsed - 1e-6 <= w <= 90 + 1e-6 for w in waits), waits
    assert {Take(False, w).retry_after for w in waits} <= set(range(89 - math.ceil(elapsed), 91))
    assert all(t.allowed for t in b_takes)


def test_the_bucket_refills_continuously_and_never_past_its_capacity() -> None:
    key = f"r-{uuid.uuid4().hex}"

    async def scenario() -> None:
        b = buckets()
        try:
            got = [await b.take(key, 3, 1) for _ in range(4)]  # 3 tokens, 1 a second
            assert [t.allowed for t in got] == [True, True, True, False]
            assert 0 < got[3].wait_s <= 1
            assert got[3].retry_after == 1
            await asyncio.sleep(1.1)  # one token back (1 s), not two (2 s)
            assert [(await b.take(key, 3, 1)).allowed for _ in range(2)] == [True, False]
            await asyncio.sleep(4.0)  # would be 4 tokens; the bucket holds 3
            got = [await b.take(key, 3, 1) for _ in range(4)]
            assert [t.allowed for t in got] == [True, True, True, False]
        finally:
            await b.aclose()

    asyncio.run(scenario())


def test_an_untouched_bucket_expires_from_redis_once_full() -> None:
    key = f"e-{uuid.uuid4().hex}"
    asyncio.run(burst(key, 1, 2, 10))  # one of two tokens, back in 0.1 s
    r = redis.Redis.from_url(REDIS_URL)
    ttl = r.pttl(f"{NAMESPACE}:{key}")
    assert 0 < ttl <= 1100  # refill time plus a second's margin
    state = r.hgetall(f"{NAMESPACE}:{key}")
    assert float(state[b"tokens"]) == 1.0
