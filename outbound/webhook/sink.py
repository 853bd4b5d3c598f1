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

import orjson

from junction.core.errors import ConfigError, JunctionError
from outbound.webhook.journal import read_sink_file
from outbound.webhook.sink_app import SinkApp, SinkFaults, SinkStats

__all__ = [
    "SinkApp",
    "SinkFaults",
    "SinkStats",
    "WebhookSink",
    "main",
    "read_sink_file",
    "serve",
]


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
        self._listening, self._error = False, None
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
