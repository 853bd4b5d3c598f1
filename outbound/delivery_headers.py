"""Checks on the per-delivery headers a channel adds to its own (``Delivery.headers``)."""

from __future__ import annotations

from junction.core.errors import InternalError
from outbound.base import Delivery


def refuse_reserved(delivery: Delivery, reserved: frozenset[str]) -> None:
    """Refuse delivery headers that would replace one the channel owns (compared lower-cased).

    Args:
        delivery: The delivery whose ``headers`` to check.
        reserved: The lower-case names the channel sets itself.

    Raises:
        InternalError: A delivery header names a reserved header.
    """
    clash = reserved.intersection(k.lower() for k in delivery.headers or ())
    if clash:
        raise InternalError(
            f"delivery headers may not set {sorted(clash)}",
            context={"channel": delivery.channel},
        )
