"""Token buckets, one per client: in this process, or shared by every instance through Redis.

A bucket holds up to ``capacity`` tokens and gains ``rate`` tokens a second, continuously.  A
request takes one token, or is refused with the time until one is there
(``ceil((cost - tokens) / rate)`` seconds): a client may burst up to its capacity, then is held
to the rate, and a refused request costs nothing.  The algorithm is RELIABILITY.md's (Stripe's
request-rate limiter); ADR-0029 says why it is written here instead of taken from ``limits``.

:class:`MemoryBuckets` keep the state in the process, under a lock.  :class:`RedisBuckets`
keep it in one Redis hash a client and update it in a Lua script, which Redis runs atomically:
concurrent requests on any number of instances take exactly the tokens there are.  The script
reads the clock from Redis (``TIME``), so instances whose clocks differ still agree.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

# a full bucket and a missing one mean the same, so full buckets are dropped past this many
MAX_MEMORY_BUCKETS = 100_000
CLIENT_NAME = "junction-rate-limiter"


@dataclass(frozen=True, slots=True)
class Take:
    """The answer for one request: taken, or the seconds until a token is there."""

    allowed: bool
    wait_s: float = 0.0

    @property
    def retry_after(self) -> int:
        """``Retry-After`` in whole seconds (at least 1): the ceiling of the refill time."""
        return max(1, math.ceil(self.wait_s))


class Buckets(Protocol):
    """Where the buckets live."""

    async def take(self, key: str, capacity: float, rate: float, cost: float = 1.0) -> Take:
        """Take ``cost`` tokens from ``key``'s bucket, if it holds them."""
        ...

    async def aclose(self) -> None:
        """Release what the buckets hold open (connections)."""
        ...


def refill(tokens: float, last: float, now: float, capacity: float, rate: float) -> float:
    """The tokens a bucket holds at ``now`` (``last`` is when it held ``tokens``)."""
    return min(capacity, tokens + max(0.0, now - last) * rate)


class MemoryBuckets:
    """The buckets of one process (each instance of the API counts alone)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        """``clock`` returns seconds; tests pass their own."""
        self._clock = clock
        # key -> (tokens, when, capacity, rate): each bucket knows its own limit when pruned
        self._state: dict[str, tuple[float, float, float, float]] = {}
        self._bound = MAX_MEMORY_BUCKETS
        self._lock = threading.Lock()

    async def take(self, key: str, capacity: float, rate: float, cost: float = 1.0) -> Take:
        """Take ``cost`` tokens from ``key``'s bucket (no I/O: runs on the event loop)."""
        return self.take_now(key, capacity, rate, cost)

    def take_now(self, key: str, capacity: float, rate: float, cost: float = 1.0) -> Take:
        """:meth:`take`, synchronously."""
        with self._lock:
            now = self._clock()
            state = self._state.get(key)
            tokens = capacity if state is None else refill(state[0], state[1], now, capacity, rate)
            if tokens >= cost:
                self._state[key] = (tokens - cost, now, capacity, rate)
                if len(self._state) > self._bound:
                    self._drop_full(now)
                return Take(True)
            self._state[key] = (tokens, now, capacity, rate)
            return Take(False, (cost - tokens) / rate)

    async def aclose(self) -> None:
        """Nothing to release: the buckets are in this process."""

    def _drop_full(self, now: float) -> None:
        """Forget the buckets that have refilled, each by its own limit.  The next pass waits
        until there are twice as many buckets as are left, so pruning stays O(1) a request
        even when most buckets are busy."""
        for k, (tokens, when, capacity, rate) in list(self._state.items()):
            if refill(tokens, when, now, capacity, rate) >= capacity:
                del self._state[k]
        self._bound = max(MAX_MEMORY_BUCKETS, 2 * len(self._state))


# KEYS[1] the bucket; ARGV capacity, rate (tokens/s), cost.  Returns {1|0, wait seconds}.  The
# state is {tokens, ts} with ts in microseconds of the server's clock; numbers go through
# string.format('%.17g') so no precision is lost between calls.  The key expires once the
# bucket would be full again (a missing bucket is a full one).
_TAKE = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
else
  tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate / 1000000)
end
local allowed = 0
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
  'ts', string.format('%d', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate * 1000) + 1000)
return {allowed, string.format('%.17g', wait)}
"""


class RedisBuckets:
    """Buckets shared by every instance that names the same Redis."""

    def __init__(self, url: str, *, namespace: str, timeout_s: float) -> None:
        """Connect lazily to ``url`` (``redis://`` or ``rediss://``) with short timeouts."""
        import redis.asyncio as aioredis

        self.namespace = namespace
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            client_name=CLIENT_NAME,  # how an operator tells these apart in CLIENT LIST
        )
        self._script = self._client.register_script(_TAKE)

    async def take(self, key: str, capacity: float, rate: float, cost: float = 1.0) -> Take:
        """Take ``cost`` tokens in one atomic script; raises ``redis.RedisError`` when down."""
        allowed, wait = await self._script(
            keys=[f"{self.namespace}:{key}"], args=[repr(capacity), repr(rate), repr(cost)]
        )
        return Take(bool(int(allowed)), float(wait))

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
