"""Run a local fake (any ASGI app) on 127.0.0.1, and inject faults into it.

Every vendor fake under ``tests/fakes/`` is a FastAPI app that speaks the vendor's real wire format;
the real SDKs are pointed at it.  ``serve_app`` runs one under uvicorn in a thread on a free port;
``Faults`` is the knob each fake consults before answering, so a test (or the connector contract
suite) can say "the next 3 requests get a 429" without touching the SDK.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn


@contextmanager
def serve_app(app: Any, **uvicorn_options: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread; yield its base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        ws="none",
        lifespan="on",
        **uvicorn_options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the local server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    scheme = "https" if uvicorn_options.get("ssl_certfile") else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@dataclass
class Faults:
    """Faults a fake serves before its normal answers (thread-safe: uvicorn runs in a thread).

    ``fail_next(kind, n)`` makes the next ``n`` matching requests fail with ``kind``:
    ``rate_limit`` (429 with Retry-After), ``server_error`` (500 or 503), ``timeout`` (the fake
    sleeps ``delay_s`` before answering), ``expired_session`` (401 the vendor's way).  ``n = 0``
    clears the kind.  A fake calls ``take(path)`` at the top of each request and turns what it
    returns into the vendor-shaped error response.
    """

    retry_after_s: float = 7.0
    delay_s: float = 2.0
    _pending: dict[str, int] = field(default_factory=dict)
    _only: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    served: list[tuple[str, str]] = field(default_factory=list)  # (kind, path) of faults served

    def fail_next(self, kind: str, n: int = 1, *, path_contains: str = "") -> None:
        """Fail the next ``n`` requests (whose path contains ``path_contains``) with ``kind``."""
        # client_error: a 4xx that is not 408/429 (the channel contract suite's fault)
        if kind not in ("rate_limit", "server_error", "timeout", "expired_session", "client_error"):
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            if n <= 0:
                self._pending.pop(kind, None)
                self._only.pop(kind, None)
            else:
                self._pending[kind] = n
                self._only[kind] = path_contains

    def clear(self) -> None:
        """Serve no more faults."""
        with self._lock:
            self._pending.clear()
            self._only.clear()

    def take(self, path: str) -> str | None:
        """The fault to serve for this request, if any (and count it as served)."""
        with self._lock:
            for kind, left in list(self._pending.items()):
                if self._only.get(kind, "") not in path:
                    continue
                if left <= 1:
                    del self._pending[kind]
                else:
                    self._pending[kind] = left - 1
                self.served.append((kind, path))
                return kind
        return None
