"""Per-client rate limits with the ``limits`` library: in memory by default, Redis across instances.

The sliding-window counter behaves like a token bucket refilled continuously: a client may burst
up to its limit, then is held to the average rate.  Over the limit → 429 with ``Retry-After``.
"""

from __future__ import annotations

import math
import time
from functools import lru_cache

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from junction.api.policy import Principal
from junction.core.errors import ConfigError, RateLimitedError, UnavailableError
from junction.pipeline.config import ApiConfig


@lru_cache(maxsize=256)
def _item(rate: str) -> RateLimitItem:
    try:
        return parse(rate)
    except ValueError as exc:
        raise ConfigError(f"invalid rate limit {rate!r} (e.g. '100/second')") from exc


class ClientRateLimiter:
    """Counts each client's requests against its own limit or the default."""

    def __init__(self, default: str, storage_uri: str = "memory://") -> None:
        """``default`` applies to clients without their own limit."""
        self.default = default
        _item(default)  # fail at start-up, not on the first request
        try:
            self.storage = storage_from_string(storage_uri)
        except Exception as exc:
            scheme = storage_uri.split(":")[0]
            raise ConfigError(f"rate limit storage {scheme!r} is not usable") from exc
        self.limiter = SlidingWindowCounterRateLimiter(self.storage)

    @classmethod
    def from_config(cls, api: ApiConfig) -> ClientRateLimiter:
        """Build from the ``api`` section."""
        return cls(api.rate_limit, api.rate_limit_storage)

    def hit(self, principal: Principal) -> None:
        """Count one request; raise RateLimitedError (429) when over the limit."""
        item = _item(principal.rate_limit or self.default)
        try:
            allowed = self.limiter.hit(item, "client", principal.client_id)
        except Exception as exc:  # e.g. Redis down: refuse rather than run unlimited
            raise UnavailableError(
                "the rate limiter is unavailable", retry_after=1, details=type(exc).__name__
            ) from exc
        if not allowed:
            stats = self.limiter.get_window_stats(item, "client", principal.client_id)
            retry = max(1, math.ceil(stats.reset_time - time.time()))
            raise RateLimitedError(f"rate limit {item} exceeded", retry_after=retry)
