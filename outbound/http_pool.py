"""The connection pool of the HTTP channels (webhook, Slack): one aiohttp session per event loop.

Every connection goes through the egress policy's connector, cookies are never kept (a receiver
must not plant cookies that leak into other deliveries) and the environment's proxy settings are
ignored.  Requests queue on a semaphore sized like the pool *before* their total timeout starts, so
the timeout measures the attempt, not the wait for a free connection.
"""

from __future__ import annotations

import asyncio
from functools import cache
from importlib.metadata import PackageNotFoundError, version

import aiohttp

from junction.core.errors import InternalError
from outbound.egress import EgressPolicy

# read at most this much of an answer, so a receiver cannot make us buffer more
MAX_BODY_READ = 64 * 1024
BODY_EXCERPT_CHARS = 1024


@cache
def user_agent() -> str:
    """The ``User-Agent`` the channels send: ``Junction/<installed version>``."""
    try:
        return f"Junction/{version('junction-hub')}"
    except PackageNotFoundError:
        return "Junction/0+unknown"


class HttpPool:
    """A lazily opened aiohttp session and its request slots, bound to the loop that opened it.

    Args:
        egress: The egress policy whose connector every connection goes through.
        kind: The channel kind, named in the error about a second event loop.
        max_connections: Most connections (and so concurrent requests) open at once.
        timeout_s: Total time allowed for one request, seconds.
    """

    def __init__(
        self, egress: EgressPolicy, *, kind: str, max_connections: int, timeout_s: float
    ) -> None:
        self._egress = egress
        self._kind = kind
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The open session, or None before the first request and after ``aclose``."""
        return self._session

    def open(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        """The session and its slots for the running loop, opened on first use.

        Raises:
            InternalError: The pool is open on another event loop that is still running.
        """
        loop = asyncio.get_running_loop()
        if self._session is not None and self._loop is not loop:
            if self._loop is not None and not self._loop.is_closed():
                raise InternalError(
                    f"{self._kind} channel used from a second event loop; call aclose() first"
                )
            # the old loop is gone and took its sockets with it; start afresh
            self._session = None
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=self._egress.connector(limit=self._max_connections),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                timeout=self._timeout,
            )
            self._slots = asyncio.Semaphore(self._max_connections)
            self._loop = loop
        assert self._slots is not None
        return self._session, self._slots

    async def aclose(self) -> None:
        """Close the session; safe to call twice (a later ``open`` starts a new one)."""
        session, self._session = self._session, None
        self._slots = None
        self._loop = None
        if session is not None and not session.closed:
            await session.close()


async def read_capped(stream: aiohttp.StreamReader, limit: int = MAX_BODY_READ) -> bytes:
    """At most ``limit`` bytes of an answer's body, however it is chunked."""
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = await stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
