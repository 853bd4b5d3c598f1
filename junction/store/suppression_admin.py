"""Read side of the suppression list for operators: entries by kind, keyed by pseudonym only.

The list stores no addresses (``junction.store.suppressions``), so listing shows what is there
without showing who: each entry's keyed pseudonym, reason, source and time.  To ask about one
address, use ``SuppressionList.entry``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from junction.store import tables as t
from junction.store.repo import Store


def list_suppressions(
    store: Store, *, kind: str, limit: int = 100, after: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ``kind``'s entries in pseudonym order, and the key to continue after.

    Args:
        store: The hub's store.
        kind: ``email``, ``phone`` or ``slack``.
        limit: Entries per page.
        after: The last ``address_key`` of the page before (None: the first page).

    Returns:
        The entries (``kind``, ``address_key``, ``reason``, ``source``, ``created_at``) and the
        ``address_key`` the next page starts after, or None on the last page.
    """
    c = t.suppressions.c
    q = select(c.kind, c.address_key, c.reason, c.source, c.created_at).where(c.kind == kind)
    if after is not None:
        q = q.where(c.address_key > after)
    with store.begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q.order_by(c.address_key).limit(limit + 1))]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["address_key"] if more else None)
