"""Signing keys from outside the config: a rotation through the store, as the channel sees it.

The webhook channel signs with its config's secrets unless it was given a ``SigningKeySource``
that knows the channel: then that source's keys sign instead (the store's rotated secrets,
ADR-0023).  The channel asks before every send, so a rotation reaches it without a restart; the
source caches, so asking costs nothing on the hot path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeAlias, runtime_checkable

# an HMAC key and the Unix time it stops signing (None: the current secret, never)
SigningKey: TypeAlias = tuple[bytes, float | None]


@runtime_checkable
class SigningKeySource(Protocol):
    """Where a channel's rotated signing keys come from."""

    async def signing_keys(self, channel: str) -> Sequence[SigningKey] | None:
        """The keys of the configured channel ``channel``; None: sign with the config's."""
        ...
