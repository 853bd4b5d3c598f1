"""Outbox back-pressure: pushed records wait while the outbox holds too many pending deliveries.

When receivers are down for hours the outbox keeps every delivery (nothing is lost), but a hub
that goes on accepting pushed records grows it without bound. Past ``delivery.max_pending``
pending deliveries, :meth:`OutboxPressure.check` refuses the next pushed batch with a retryable
``UnavailableError`` (the API answers 503 with ``Retry-After``), before anything of it is
prepared or stored; the sender retries later and the batch is stored once (its event id
dedupes). The count is read from the store at most once a second (an index range scan of
``ix_deliveries_due``) and shared by every pipeline of the process.
"""

from __future__ import annotations

import threading
import time

from junction.core.errors import UnavailableError
from junction.store.outbox import pending_count
from junction.store.repo import Store

REFRESH_S = 1.0
RETRY_AFTER_S = 30.0


class OutboxPressure:
    """Whether the outbox holds more pending deliveries than pushes may add to."""

    def __init__(self, store: Store, max_pending: int | None, *, refresh_s: float = REFRESH_S):
        """Read ``store``'s pending count at most every ``refresh_s``; None: no cap."""
        self.store = store
        self.max_pending = max_pending
        self.refresh_s = refresh_s
        self.pending = 0
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def check(self) -> None:
        """Refuse a push while the outbox is over its cap (blocking: call from a thread).

        Raises:
            UnavailableError: the outbox is over ``max_pending`` (``retry_after`` set), or the
                store cannot be read.
        """
        if self.max_pending is None:
            return
        if time.monotonic() - self._read_at >= self.refresh_s:
            with self._lock:
                if time.monotonic() - self._read_at >= self.refresh_s:
                    self.pending = pending_count(self.store)
                    self._read_at = time.monotonic()
        if self.pending >= self.max_pending:
            raise UnavailableError(
                "the outbox is over its cap of pending deliveries; send again later",
                context={"pending": self.pending, "max_pending": self.max_pending},
                retry_after=RETRY_AFTER_S,
            )
