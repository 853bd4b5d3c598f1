"""A short-lived cache for the dashboard's aggregates (per app, in memory).

The overview and the model pages aggregate whole tables; people refresh them often and several
look at once.  Each aggregate is computed at most once per ``TTL_S`` per app, and pages say how
old their figures are.  Lists, details and everything after an action are never cached.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from junction.api.context import ApiContext

T = TypeVar("T")
TTL_S = 10.0
MAX_ENTRIES = 256
_KEY = "dashboard.cache"
_lock = threading.Lock()


def cached(ctx: ApiContext, key: Hashable, compute: Callable[[], T], ttl: float = TTL_S) -> T:
    """``compute()``, or its result from less than ``ttl`` seconds ago."""
    now = time.monotonic()
    with _lock:
        store: dict[Hashable, tuple[float, Any]] = ctx.extras.setdefault(_KEY, {})
        hit = store.get(key)
    if hit is not None and now - hit[0] < ttl:
        value: T = hit[1]
        return value
    value = compute()
    with _lock:
        if len(store) >= MAX_ENTRIES:
            store.clear()
        store[key] = (now, value)
    return value
