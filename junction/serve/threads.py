"""Run blocking work in daemon threads and await it from the event loop.

``asyncio.to_thread`` uses the loop's default executor, whose threads the interpreter joins at
exit; a pipeline run that is still inside a long batch would then hold the process past its
shutdown bound.  A daemon thread per run lets the service exit on time: whatever the thread had
not committed is rolled back by the store, and the cursor resumes it on the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _settle(fut: asyncio.Future[T], result: T | None, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)  # type: ignore[arg-type]


async def in_daemon_thread(fn: Callable[[], T], name: str) -> T:
    """Run ``fn`` in a new daemon thread called ``name``; return (or raise) what it does."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def target() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task as is
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, fut, result, error)

    threading.Thread(target=target, name=name, daemon=True).start()
    return await fut
