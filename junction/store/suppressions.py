"""The suppression list: addresses that bounced, complained or opted out never get another message.

Addresses are stored only as keyed pseudonyms (``Pseudonymizer.of(kind, address)``): the list can
answer "is this address suppressed?" without holding the address itself, and an erased subject's
entry keeps them from being messaged again without keeping their data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Connection, delete, select

from junction.core.pseudonym import Pseudonymizer
from junction.store import tables as t
from junction.store.repo import Store

SUPPRESSION_KINDS = frozenset({"email", "phone", "slack"})


class SuppressionList:
    """Add, check and lift suppressions in the store."""

    def __init__(self, store: Store, pseudonyms: Pseudonymizer) -> None:
        """Keep entries in ``store``, keyed by ``pseudonyms``."""
        self.store = store
        self._ps = pseudonyms

    def key(self, kind: str, address: str) -> str:
        """The stored key of one address."""
        if kind not in SUPPRESSION_KINDS:
            raise ValueError(f"unknown suppression kind {kind!r}")
        return self._ps.of(kind, address)

    def add(
        self,
        kind: str,
        address: str,
        *,
        reason: str,
        source: str,
        audit: Callable[[Connection, bool], None] | None = None,
    ) -> bool:
        """Suppress ``address``; True if it was not suppressed before (the first reason stays).

        ``audit(conn, added)`` writes the action's audit entry in the same transaction.
        """
        row = {
            "kind": kind,
            "address_key": self.key(kind, address),
            "reason": reason[:64],
            "source": source[:128],
            "created_at": time.time(),
        }
        with self.store.begin() as conn:
            sql = self.store._insert_ignore(t.suppressions, tuple(row))
            added = bool(conn.exec_driver_sql(sql, tuple(row.values())).rowcount)
            if audit is not None:
                audit(conn, added)
            return added

    def suppressed(self, kind: str, addresses: Iterable[str]) -> set[str]:
        """The subset of ``addresses`` (as given) that is suppressed."""
        by_key = {self.key(kind, a): a for a in addresses}
        if not by_key:
            return set()
        c = t.suppressions.c
        with self.store.begin() as conn:
            found = conn.execute(
                select(c.address_key).where(c.kind == kind, c.address_key.in_(list(by_key)))
            ).scalars()
            return {by_key[k] for k in found}

    def lift(
        self, kind: str, address: str, *, audit: Callable[[Connection], None] | None = None
    ) -> bool:
        """Remove a suppression (e.g. the person opted back in); True if there was one.

        ``audit`` writes the action's audit entry in the same transaction, when one was lifted.
        """
        c = t.suppressions.c
        with self.store.begin() as conn:
            n = conn.execute(
                delete(t.suppressions).where(
                    c.kind == kind, c.address_key == self.key(kind, address)
                )
            ).rowcount
            if n and audit is not None:
                audit(conn)
        return bool(n)

    def entry(self, kind: str, address: str) -> dict[str, Any] | None:
        """The stored entry of one address (reason, source, when), or None."""
        c = t.suppressions.c
        with self.store.begin() as conn:
            row = conn.execute(
                select(c.kind, c.reason, c.source, c.created_at).where(
                    c.kind == kind, c.address_key == self.key(kind, address)
                )
            ).first()
        return None if row is None else dict(row._mapping)
