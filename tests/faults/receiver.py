"""A raw-socket webhook receiver that misbehaves on purpose, one seeded behaviour per request.

Unlike ``outbound.webhook.sink`` (an aiohttp app with a few fault knobs) this one speaks HTTP/1.1
by hand on a plain asyncio server, so it can do what a real broken peer does: hang without
answering, reset the connection (RST, via SO_LINGER 0) before or in the middle of its answer,
answer slowly, or answer with any status code, with or without Retry-After.

It keeps the receiver's side of the books: every ``webhook-id`` it *accepted* (stored before it
answered, as a receiver that dedupes by idempotency key does), and how many times each arrived.
A request is accepted by ``ok``, ``slow``, ``accept_then_hang`` and ``accept_then_reset``; the
last two make the hub see a failure for a delivery the receiver has, so it must resend the same
``webhook-id`` (counted as a repeat here, never as a second effect).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from collections import Counter
from email.utils import formatdate

# behaviour name -> weight; statuses are drawn separately for "status"
BEHAVIOURS: dict[str, int] = {
    "ok": 8,
    "slow": 2,
    "hang": 1,
    "accept_then_hang": 1,
    "reset": 1,
    "accept_then_reset": 1,
    "status": 4,
}
# every class of answer the classifier distinguishes (classify.py): redirects, auth, gone,
# rate limits, the other 4xx and 5xx
STATUSES = (
    *(301, 302, 307, 308),
    *(400, 401, 403, 404, 408, 409, 410, 413, 422, 429),
    *(500, 502, 503, 504),
)
REASONS = {301: "Moved", 302: "Found", 307: "Temporary", 308: "Permanent", 410: "Gone"}


class FaultyReceiver:
    """Serve on 127.0.0.1 in a background thread; ``rng`` picks each request's behaviour."""

    def __init__(self, rng: random.Random, *, slow_s: float = 0.05, hang_s: float = 5.0) -> None:
        self.rng = rng
        self.slow_s = slow_s
        self.hang_s = hang_s
        self.accepted: set[str] = set()
        self.arrivals: Counter[str] = Counter()
        self.behaviours: Counter[str] = Counter()
        self.healthy = False  # when set, every request is "ok"
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultyReceiver:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the faulty receiver did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self, ready: threading.Event) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            async with server:
                await self._stop.wait()
                server.close()

        asyncio.run(main())

    def _pick(self) -> tuple[str, int]:
        with self._lock:
            if self.healthy:
                return "ok", 200
            names = list(BEHAVIOURS)
            kind = self.rng.choices(names, weights=[BEHAVIOURS[n] for n in names])[0]
            status = self.rng.choice(STATUSES) if kind == "status" else 200
            self.behaviours[kind if kind != "status" else str(status)] += 1
            return kind, status

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; return whether the connection stays open for another."""
        head = await reader.readuntil(b"\r\n\r\n")
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        await reader.readexactly(int(headers.get("content-length", "0")))
        wid = headers.get("webhook-id", "")
        kind, status = self._pick()
        with self._lock:
            self.arrivals[wid] += 1
        if kind in ("ok", "slow", "accept_then_hang", "accept_then_reset"):
            with self._lock:
                self.accepted.add(wid)  # stored (deduped by key) before any answer
        if kind == "slow":
            await asyncio.sleep(self.rng.uniform(0, self.slow_s))
        if kind in ("hang", "accept_then_hang"):
            # say nothing until the client gives up and closes (or hang_s passes)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.read(), self.hang_s)
            return False
        if kind == "reset":
            _reset(writer)
            return False
        if kind == "accept_then_reset":
            # the status line and half a body, then RST: a truncated answer is no success
            writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n{"ok":')
            await writer.drain()
            await asyncio.sleep(0.005)
            _reset(writer)
            return False
        extra = ""
        if status in (429, 503):
            after = self.rng.choice(["0", "0", "0", "1", _http_date_soon()])
            extra = f"Retry-After: {after}\r\n"
        elif 300 <= status < 400:
            extra = "Location: http://127.0.0.1:9/elsewhere\r\n"
        body = b'{"ok":true}' if status == 200 else b'{"error":"no"}'
        reason = REASONS.get(status, "OK" if status == 200 else "Error")
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n".encode("latin-1")
            + body
        )
        await writer.drain()
        return True


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN (SO_LINGER on, timeout 0)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _http_date_soon() -> str:
    import time

    return formatdate(time.time() + 1, usegmt=True)
