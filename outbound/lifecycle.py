"""The async context-manager behaviour every channel shares: ``async with`` closes it on exit."""

from __future__ import annotations

from typing import Self


class ClosesOnExit:
    """Mixin: ``async with channel:`` yields the channel and awaits its ``aclose()`` on exit."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release what the channel holds; each channel overrides this."""
        raise NotImplementedError
