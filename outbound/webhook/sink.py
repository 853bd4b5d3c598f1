"""A local webhook receiver that verifies Standard Webhooks signatures and dedupes durably.

Used by the demo, the tests and the benchmarks, and run by ``junction sink``.  It binds to
127.0.0.1, checks every request's signature on the raw body, refuses bodies over the limit with 413
before buffering them, and appends each *new* ``webhook-id`` to a JSONL file, fsync'ed before it
answers 2xx.  Duplicates get 200 without a second line; the seen-set is rebuilt from the file at
start, so dedupe survives restarts.  Fault knobs (``SinkFaults``) make it fail, stall or redirect on
purpose.

Run it in the foreground with::

    python -m outbound.webhook.sink --port 8765 --secret whsec_... --out sink.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from junction.core.errors import ConfigError, JunctionError
from outbound.webhook.config import secret_key_bytes
from outbound.webhook.journal import Journal, read_sink_file

__all__ = ["SinkFaults", "WebhookSink", "main", "read_sink_file", "serve"]

_OK = b'{"status":"accepted"}'
_DUP = b'{"status":"duplicate"}'


@dataclass
class SinkFaults:
    """Fault injection knobs; change them while the sink runs (plain attribute writes).

    Faults apply to verified requests only, so a bad signature is always a 401.
    """

    fail_first: int = 0  # answer 500 to the first N attempts of each webhook-id
    status: int | None = None  # answer this status (a 2xx still stores the delivery)
    retry_after: str | None = None  # Retry-After value sent with ``status``
    delay_s: float = 0.0  # wait this long before answering
    redirect_to: str | None = None  # answer 308 with this Location instead


@dataclass
class SinkStats:
    """Counters; ``received == verified + rejected`` once requests have finished."""

    received: int = 0
    verified: int = 0
    rejected: int = 0  # 401 bad signature, 413 too large, 400 not JSON
    unique: int = 0  # new deliveries appended to the file
    duplicates: int = 0  # verified again after being stored
    injected: int = 0  # answered with an injected fault


class SinkApp:
    """The sink's state and aiohttp handlers, independent of how the loop is run."""

    def __init__(
        self,
        secret: str | Sequence[str],
        out_path: str | os.PathLike[str],
        *,
        max_body_bytes: int = 1_048_576,
        faults: SinkFaults | None = None,
    ) -> None:
        secrets_ = [secret] if isinstance(secret, str) else list(secret)
        if not secrets_:
            raise ConfigError("the webhook sink needs at least one secret")
        for value in secrets_:
            try:
                secret_key_bytes(value)
            except ValueError as exc:
                raise ConfigError(f"invalid sink secret: {exc}") from None
        self._verifiers = [Webhook(value) for value in secrets_]
        self.max_body_bytes = max_body_bytes
        self.faults = faults or SinkFaults()
        self.counters = SinkStats()
        self.journal = Journal(out_path)
        self._seen: set[str] = set()
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._attempts: dict[str, int] = {}

    def stats(self) -> dict[str, int]:
        """Return a snapshot of the counters."""
        return asdict(self.counters)

    async def start(self, host: str, port: int) -> tuple[web.AppRunner, int]:
        """Open the journal, bind and listen; return the runner and the bound port."""
        self._seen = self.journal.open()
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_get("/stats", self._handle_stats)
        app.router.add_post("/{tail:.*}", self._handle_post)
        # no access log: it would cost more than the handler and could record personal data
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        bound = int(runner.addresses[0][1])
        return runner, bound

    async def stop(self, runner: web.AppRunner) -> None:
        """Stop listening, flush pending lines and close the journal."""
        await runner.cleanup()
        await self.journal.drain()
        self.journal.close()

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.stats()), content_type="application/json")

    def _reject(self, status: int, reason: str) -> web.Response:
        self.counters.rejected += 1
        return web.Response(
            status=status, body=orjson.dumps({"error": reason}), content_type="application/json"
        )

    def _verify(self, body: bytes, headers: dict[str, str]) -> bool:
        for verifier in self._verifiers:
            try:
                verifier.verify(body, headers, json_parse=False)
            # ValueError: a malformed signature list, bad base64 or a body that is not UTF-8
            except (WebhookVerificationError, ValueError):
                continue
            return True
        return False

    async def _handle_post(self, request: web.Request) -> web.Response:
        self.counters.received += 1
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            return self._reject(413, "body_too_large")
        try:
            # reads chunk by chunk and stops past client_max_size (covers chunked bodies too)
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._reject(413, "body_too_large")
        get = request.headers.get
        headers = {
            "webhook-id": get("webhook-id", ""),
            "webhook-timestamp": get("webhook-timestamp", ""),
            "webhook-signature": get("webhook-signature", ""),
        }
        if not self._verify(body, headers):
            return self._reject(401, "invalid_signature")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._reject(400, "body_not_json")
        self.counters.verified += 1
        webhook_id = headers["webhook-id"]
        faults = self.faults
        if faults.delay_s > 0:
            await asyncio.sleep(faults.delay_s)
        if faults.redirect_to:
            self.counters.injected += 1
            return web.Response(status=308, headers={"Location": faults.redirect_to})
        status = faults.status
        if status is not None and not 200 <= status < 300:
            self.counters.injected += 1
            extra = {"Retry-After": faults.retry_after} if faults.retry_after else None
            return web.Response(status=status, headers=extra)
        if faults.fail_first > 0:
            attempt = self._attempts[webhook_id] = self._attempts.get(webhook_id, 0) + 1
            if attempt <= faults.fail_first:
                self.counters.injected += 1
                return web.Response(status=500, text="injected failure")
        return await self._store(webhook_id, doc, status or 200)

    async def _store(self, webhook_id: str, doc: Any, status: int) -> web.Response:
        if webhook_id in self._seen:
            self.counters.duplicates += 1
            return web.Response(status=status, body=_DUP, content_type="application/json")
        pending = self._inflight.get(webhook_id)
        is_new = pending is None
        if pending is None:
            received_at = datetime.now(UTC).isoformat(timespec="milliseconds")
            line = orjson.dumps(
                {"webhook_id": webhook_id, "received_at": received_at, "body": doc},
                option=orjson.OPT_APPEND_NEWLINE,
            )
            pending = self.journal.append(line)
            # a concurrent retry of the same id waits on this write instead of adding a line
            self._inflight[webhook_id] = pending
            pending.add_done_callback(lambda fut: self._settle(webhook_id, fut))
        try:
            await asyncio.shield(pending)
        except OSError:
            return web.Response(status=500, text="could not store the delivery")
        if is_new:
            self.counters.unique += 1
            return web.Response(status=status, body=_OK, content_type="application/json")
        self.counters.duplicates += 1
        return web.Response(status=status, body=_DUP, content_type="application/json")

    def _settle(self, webhook_id: str, fut: asyncio.Future[None]) -> None:
        self._inflight.pop(webhook_id, None)
        if not fut.cancelled() and fut.exception() is None:
            self._seen.add(webhook_id)


class WebhookSink:
    """Run a ``SinkApp`` in a background thread with its own event loop.

    Args:
        secret: The whsec_ secret (or several, e.g. during a rotation) requests must be signed with.
        out_path: The JSONL file of accepted deliveries (created, or resumed for dedupe).
        host: Address to bind; keep the loopback default outside tests of your own network.
        port: Port to bind; 0 picks a free one (see ``url``).
        max_body_bytes: Larger bodies get 413 without being buffered.
        faults: Fault injection knobs (also reachable as ``sink.faults``).
    """

    def __init__(
        self,
        secret: str | Sequence[str],
        out_path: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body_bytes: int = 1_048_576,
        faults: SinkFaults | None = None,
    ) -> None:
        self.app = SinkApp(secret, out_path, max_body_bytes=max_body_bytes, faults=faults)
        self.faults = self.app.faults
        self.host = host
        self._port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._listening = False

    @property
    def url(self) -> str:
        """The base URL to POST to (any path is accepted)."""
        return f"http://{self.host}:{self._port}/"

    def stats(self) -> dict[str, int]:
        """Return a snapshot of the counters."""
        return self.app.stats()

    def start(self) -> WebhookSink:
        """Start serving; return once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("webhook sink already started")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="webhook-sink", daemon=True
        )
        self._thread.start()
        ready.wait()
        if not self._listening:
            self._thread.join()
            self._thread = None
            raise self._error or RuntimeError("webhook sink failed to start")
        return self

    def _run(self, ready: threading.Event) -> None:
        async def body() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                runner, self._port = await self.app.start(self.host, self._port)
            except (OSError, JunctionError) as exc:
                self._error = exc
                return
            else:
                self._listening = True
            finally:
                # set on every path, so start() never waits on a thread that died
                ready.set()
            try:
                await self._stop.wait()
            finally:
                await self.app.stop(runner)

        asyncio.run(body())

    def stop(self) -> None:
        """Stop serving and close the file; safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        thread.join()

    def __enter__(self) -> WebhookSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


async def serve(
    secret: str | Sequence[str],
    out_path: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    max_body_bytes: int = 1_048_576,
    faults: SinkFaults | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Serve in the current event loop until ``stop`` is set (forever without one).

    Returns:
        The final counters.
    """
    app = SinkApp(secret, out_path, max_body_bytes=max_body_bytes, faults=faults)
    runner, bound = await app.start(host, port)
    try:
        if on_ready is not None:
            on_ready(f"http://{host}:{bound}/")
        await (stop or asyncio.Event()).wait()
    finally:
        await app.stop(runner)
    return app.stats()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sink in the foreground until SIGTERM or SIGINT; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m outbound.webhook.sink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument(
        "--secret",
        action="append",
        help="whsec_ secret; repeat during a rotation (default: $JUNCTION_SINK_SECRET)",
    )
    parser.add_argument("--out", required=True, help="JSONL file of accepted deliveries")
    parser.add_argument("--max-body-bytes", type=int, default=1_048_576)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--status", type=int, default=None)
    parser.add_argument("--delay-s", type=float, default=0.0)
    parser.add_argument("--redirect-to", default=None)
    args = parser.parse_args(argv)
    # the environment keeps the secret out of `ps`; --secret is for local demos
    secrets_ = args.secret or [os.environ.get("JUNCTION_SINK_SECRET", "")]
    if not all(secrets_):
        parser.error("give --secret or set JUNCTION_SINK_SECRET")
    faults = SinkFaults(
        fail_first=args.fail_first,
        status=args.status,
        delay_s=args.delay_s,
        redirect_to=args.redirect_to,
    )

    async def run() -> dict[str, int]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        def ready(url: str) -> None:
            sys.stdout.write(f"webhook sink listening on {url}\n")
            sys.stdout.flush()

        return await serve(
            secrets_,
            args.out,
            host=args.host,
            port=args.port,
            max_body_bytes=args.max_body_bytes,
            faults=faults,
            stop=stop,
            on_ready=ready,
        )

    try:
        final = asyncio.run(run())
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc.user_message}\n")
        return 2
    sys.stdout.write(orjson.dumps(final).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
