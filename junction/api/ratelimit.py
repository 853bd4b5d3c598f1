"""Per-client rate limits: a token bucket each, in memory by default, in Redis across instances.

A client's limit (``100/second``, ``30/minute``; its own or ``api.rate_limit``) is a bucket of
that many tokens refilled at that rate, continuously (``junction.api.token_bucket``, ADR-0029):
the client may burst up to the amount, then is held to the rate.  Past it → 429 with
``Retry-After``, the ceiling of the time until a token is back.

In memory each process keeps its own buckets (no I/O, so they are taken on the event loop).
With ``redis://`` every instance shares them, through an atomic Lua script on the asyncio client
with short timeouts, so a slow Redis delays only the requests that wait for it; when Redis is
down the API answers 503 rather than run without limits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from functools import lru_cache

from junction.api.policy import Principal
from junction.api.token_bucket import Buckets, MemoryBuckets, RedisBuckets
from junction.core.errors import ConfigError, RateLimitedError, UnavailableError
from junction.pipeline.config import ApiConfig
from junction.store.clients import check_rate_limit

REDIS_TIMEOUT_S = 0.5
NAMESPACE = "junction-client-bucket"


@lru_cache(maxsize=256)
def bucket_of(rate: str) -> tuple[float, float]:
    """``(capacity, tokens a second)`` of a limit such as ``100/second``."""
    item = check_rate_limit(rate)
    return float(item.amount), item.amount / item.get_expiry()


def _buckets(uri: str) -> Buckets:
    scheme = uri.split(":", 1)[0]
    if scheme in ("redis", "rediss"):
        return RedisBuckets(uri, namespace=NAMESPACE, timeout_s=REDIS_TIMEOUT_S)
    if scheme == "memory":
        return MemoryBuckets()
    raise ConfigError(f"rate limit storage {scheme!r} is not supported (memory:// or redis://)")


class ClientRateLimiter:
    """Takes a token from the caller's bucket for each request."""

    def __init__(self, default: str, storage_uri: str = "memory://") -> None:
        """``default`` applies to clients without their own limit."""
        self.default = default
        # refusals since start, by reason (``/metrics``: junction_api_requests_refused_total)
        self.refused: Counter[str] = Counter()
        bucket_of(default)  # fail at start-up, not on the first request
        try:
            self.buckets = _buckets(storage_uri)
        except ConfigError:
            raise
        except Exception as exc:
            scheme = storage_uri.split(":")[0]
            raise ConfigError(f"rate limit storage {scheme!r} is not usable") from exc

    @classmethod
    def from_config(cls, api: ApiConfig) -> ClientRateLimiter:
        """Build from the ``api`` section."""
        return cls(api.rate_limit, api.rate_limit_storage)

    async def aclose(self) -> None:
        """Close the buckets' connections (Redis); nothing to do in memory."""
        await self.buckets.aclose()

    def refused_counts(self) -> Mapping[str, int]:
        """Requests refused since start: ``rate_limited`` (429), ``limiter_unavailable`` (503)."""
        return dict(self.refused)

    async def hit(self, principal: Principal) -> None:
        """Count one request; raise RateLimitedError (429) when the bucket is empty."""
        rate = principal.rate_limit or self.default
        capacity, per_second = bucket_of(rate)
        try:
            took = await self.buckets.take(principal.client_id, capacity, per_second)
        except Exception as exc:  # e.g. Redis down: refuse rather than run unlimited
            self.refused["limiter_unavailable"] += 1
            raise UnavailableError(
                "the rate limiter is unavailable", retry_after=1, details=type(exc).__name__
            ) from exc
        if not took.allowed:
            self.refused["rate_limited"] += 1
            raise RateLimitedError(f"rate limit {rate} exceeded", retry_after=took.retry_after)
