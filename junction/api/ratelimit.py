"""Per-client rate limits with the ``limits`` library: in memory by default, Redis across instances.

The sliding-window counter behaves like a token bucket refilled continuously: a client may burst
up to its limit, then is held to the average rate.  Over the limit → 429 with ``Retry-After``.

In memory the counter lives in the process (no I/O, so it is called on the event loop directly).
With ``redis://`` every instance shares the counters through Redis, with the asyncio client and
short timeouts, so a slow Redis delays only the requests that wait for it; when Redis is down the
API answers 503 rather than run without limits.
"""

from __future__ import annotations

import math
import time
from functools import lru_cache
from typing import Any

from limits import RateLimitItem
from limits.aio.strategies import SlidingWindowCounterRateLimiter as AsyncLimiter
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from junction.api.policy import Principal
from junction.core.errors import ConfigError, RateLimitedError, UnavailableError
from junction.pipeline.config import ApiConfig
from junction.store.clients import check_rate_limit

REDIS_TIMEOUT_S = 0.5
NAMESPACE = "junction-client"


@lru_cache(maxsize=256)
def _item(rate: str) -> RateLimitItem:
    return check_rate_limit(rate)


def _storage(uri: str) -> tuple[Any, bool]:
    """The storage for ``uri`` and whether it is the asyncio flavour."""
    scheme = uri.split(":", 1)[0]
    if scheme in ("redis", "rediss"):
        options: dict[str, Any] = {
            "implementation": "redispy",
            "socket_timeout": REDIS_TIMEOUT_S,
            "socket_connect_timeout": REDIS_TIMEOUT_S,
        }
        return storage_from_string(f"async+{uri}", **options), True
    if scheme == "memory":
        return storage_from_string(uri), False
    raise ConfigError(f"rate limit storage {scheme!r} is not supported (memory:// or redis://)")


class ClientRateLimiter:
    """Counts each client's requests against its own limit or the default."""

    def __init__(self, default: str, storage_uri: str = "memory://") -> None:
        """``default`` applies to clients without their own limit."""
        self.default = default
        _item(default)  # fail at start-up, not on the first request
        try:
            self.storage, self.is_async = _storage(storage_uri)
        except ConfigError:
            raise
        except Exception as exc:
            scheme = storage_uri.split(":")[0]
            raise ConfigError(f"rate limit storage {scheme!r} is not usable") from exc
        self._sync = None if self.is_async else SlidingWindowCounterRateLimiter(self.storage)
        self._async = AsyncLimiter(self.storage) if self.is_async else None

    @classmethod
    def from_config(cls, api: ApiConfig) -> ClientRateLimiter:
        """Build from the ``api`` section."""
        return cls(api.rate_limit, api.rate_limit_storage)

    async def hit(self, principal: Principal) -> None:
        """Count one request; raise RateLimitedError (429) when over the limit."""
        item = _item(principal.rate_limit or self.default)
        key = principal.client_id
        try:
            if self._async is not None:
                allowed = await self._async.hit(item, NAMESPACE, key)
                if not allowed:
                    stats = await self._async.get_window_stats(item, NAMESPACE, key)
            else:
                assert self._sync is not None
                allowed = self._sync.hit(item, NAMESPACE, key)
                if not allowed:
                    stats = self._sync.get_window_stats(item, NAMESPACE, key)
        except Exception as exc:  # e.g. Redis down: refuse rather than run unlimited
            raise UnavailableError(
                "the rate limiter is unavailable", retry_after=1, details=type(exc).__name__
            ) from exc
        if not allowed:
            retry = max(1, math.ceil(stats.reset_time - time.time()))
            raise RateLimitedError(f"rate limit {item} exceeded", retry_after=retry)
