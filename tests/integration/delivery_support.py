"""Helpers for the delivery engine tests: outbox rows, a many-endpoint receiver, a test channel.

``Receiver`` is a webhook receiver on 127.0.0.1 (FastAPI under uvicorn, via ``serve_app``) that
serves any number of endpoints at ``/e/<name>``.  Each endpoint answers per its ``Behaviour``
(delay, status per request, Retry-After), checks the Standard Webhooks signature, and the
receiver keeps an ordered log of request starts and ends and the peak concurrency per endpoint,
so tests compare the order of events instead of timing them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import orjson
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel
from standardwebhooks.webhooks import Webhook

from junction.core.errors import DeferredError, JunctionError
from junction.pipeline.config import DeliveryConfig
from junction.pipeline.deliver import DeliveryWorker, build_channels
from junction.store.repo import DELIVERY_COLS, Store
from outbound.base import Delivery, Receipt, Recipient
from tests.fakes.server import serve_app


def enqueue(
    store: Store,
    channel: str,
    ids: list[str],
    *,
    at: float | list[float] | None = None,
    payload: dict[str, Any] | None = None,
    pipeline: str = "leads",
    route: str | None = None,
) -> None:
    """Put pending deliveries with ``ids`` to ``channel`` in the outbox (due at ``at``)."""
    now = time.time()
    times = at if isinstance(at, list) else [now if at is None else at] * len(ids)
    body = orjson.dumps(payload or {"type": "lead.scored", "record_id": "r"}).decode()
    rows = [
        (i, f"rec-{i}", pipeline, channel, "lead.scored", body, "pending", 0, due, now, route)
        for i, due in zip(ids, times, strict=True)
    ]
    assert DELIVERY_COLS[-1] == "route"
    store.write_batch(records=[], scores=[], deliveries=rows, quarantined=[], cursor=None)


def run_worker(
    store: Store, channels: dict[str, Any], policy: DeliveryConfig, drain_wait_s: float, **kw: Any
) -> DeliveryWorker:
    """Run one worker in drain mode over ``channels`` (instances); return it (with stats)."""

    async def go() -> DeliveryWorker:
        worker = DeliveryWorker(store, channels, policy, **kw)
        try:
            await worker.run(drain_wait_s=drain_wait_s)
        finally:
            await worker.aclose()
        return worker

    return asyncio.run(go())


@dataclass
class Behaviour:
    """How one endpoint answers."""

    delay_s: float = 0.0
    # status for the n-th request to this endpoint (0-based) and its webhook-id
    status: Callable[[int, str], int] = lambda n, wid: 200
    retry_after: str | None = None
    # answer only once this says so (polled every 10 ms), or after ``hold_max_s`` at most
    hold_until: Callable[[], bool] | None = None
    hold_max_s: float = 60.0


@dataclass
class Receiver:
    """State of the many-endpoint receiver (thread-safe)."""

    secret: str
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    log: list[tuple[int, str, str, str, int]] = field(default_factory=list)
    url: str = ""
    _seq: Iterator[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _count: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _current: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    peak: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def endpoint(self, name: str) -> str:
        """The URL of endpoint ``name``."""
        return f"{self.url}/e/{name}"

    def channels(self, names: list[str], **options: Any) -> dict[str, Any]:
        """Webhook channel instances ``webhook.<name>`` for each endpoint."""
        cfg = {
            f"webhook.{n}": {"url": self.endpoint(n), "secret": self.secret, "timeout_s": 15}
            | options
            for n in names
        }
        return build_channels(cfg)

    def events(self, kind: str | None = None) -> list[tuple[int, str, str, str, int]]:
        """(seq, endpoint, webhook-id, start|end, status) in order."""
        with self._lock:
            return [e for e in self.log if kind is None or e[3] == kind]

    def ids(self, name: str) -> list[str]:
        """webhook-ids answered 2xx by endpoint ``name``, in order."""
        return [e[2] for e in self.events("end") if e[1] == name and 200 <= e[4] < 300]

    async def handle(self, name: str, request: Request) -> Response:
        raw = await request.body()
        Webhook(self.secret).verify(raw, dict(request.headers))
        wid = request.headers["webhook-id"]
        b = self.behaviours.get(name, Behaviour())
        with self._lock:
            n = self._count[name]
            self._count[name] += 1
            self._current[name] += 1
            self.peak[name] = max(self.peak[name], self._current[name])
            self.log.append((next(self._seq), name, wid, "start", 0))
            self.bodies.append(orjson.loads(raw))
        try:
            if b.delay_s:
                await asyncio.sleep(b.delay_s)
            if b.hold_until is not None:
                until = time.monotonic() + b.hold_max_s
                while not b.hold_until() and time.monotonic() < until:
                    await asyncio.sleep(0.01)
            status = b.status(n, wid)
        finally:
            with self._lock:
                self._current[name] -= 1
                self.log.append((next(self._seq), name, wid, "end", status))
        headers = {"retry-after": b.retry_after} if b.retry_after and status >= 300 else {}
        return Response(status_code=status, headers=headers)


@contextmanager
def receiver(secret: str) -> Iterator[Receiver]:
    """Run a many-endpoint receiver on 127.0.0.1."""
    state = Receiver(secret)
    app = FastAPI()

    @app.post("/e/{name}")
    async def endpoint(name: str, request: Request) -> Response:
        return await state.handle(name, request)

    with serve_app(app) as url:
        state.url = url
        yield state


class NotesConfig(BaseModel):
    """The test channel's (empty) config."""


class NotesChannel:
    """An addressed test channel: recipients come from the payload's ``to``; sends are kept.

    ``fail`` maps a delivery id to errors raised by its next sends, in turn.
    """

    name: ClassVar[str] = "notes"
    config_model: ClassVar[type[BaseModel]] = NotesConfig

    def __init__(self) -> None:
        self.sent: list[Delivery] = []
        self.fail: dict[str, list[JunctionError]] = {}
        self.deferred = 0

    def recipients(self, delivery: Delivery) -> list[Recipient]:
        return [Recipient("email", a) for a in orjson.loads(delivery.payload).get("to", [])]

    async def send(self, delivery: Delivery) -> Receipt:
        errors = self.fail.get(delivery.delivery_id)
        if errors:
            exc = errors.pop(0)
            if isinstance(exc, DeferredError):
                self.deferred += 1
            raise exc
        self.sent.append(delivery)
        return Receipt(delivery.delivery_id, status_code=202, remote_id=f"msg-{len(self.sent)}")

    async def aclose(self) -> None:
        return None


ROOT = Path(__file__).resolve().parents[2]


def deliver_child(
    store_url: str, url: str, secret: str, mode: str, marker: Path, *channels: Path
) -> subprocess.Popen[bytes]:
    """A delivery worker process (``tests.integration.deliver_child``); ``hang`` mode stops it
    where it would record its first outcomes, after writing ``marker``."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.deliver_child",
            store_url,
            url,
            secret,
            mode,
            str(marker),
            *map(str, channels),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_for_file(
    path: Path, proc: subprocess.Popen[bytes], what: str, timeout: float = 60
) -> None:
    """Wait until ``proc`` wrote ``path`` (it reached ``what``); fail if it exits first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(
                f"the process exited ({proc.returncode}) before {what}:\n{err[-3000:]}"
            )
        assert time.monotonic() < deadline, f"the process never reached {what}"
        time.sleep(0.02)


def kill_at_recording(
    proc: subprocess.Popen[bytes], marker: Path, before_kill: Callable[[], None] = lambda: None
) -> None:
    """Wait until ``proc`` reached its kill point (it wrote ``marker``), run ``before_kill``
    (what the receiver got by then), then SIGKILL it."""
    try:
        wait_for_file(marker, proc, "the kill point")
        before_kill()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
