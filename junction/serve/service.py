"""``junction serve``: the API, the scheduler, the file-drop watchers, the pipeline runs and the
delivery worker, in one process on one event loop.

The loop runs uvicorn (programmatically, on a socket bound here so a taken port is a clear
error), the scheduler's coordinator and the delivery worker.  Blocking work goes to threads: store
calls to the loop's executor, pipeline runs to daemon threads (one at a time per pipeline).

Shutdown on SIGTERM or SIGINT, bounded by ``api.shutdown_grace_s``:

1. stop intake: uvicorn stops accepting and finishes the requests in flight; the scheduler and
   the drift checks (:mod:`junction.serve.drift`) start nothing new; the delivery worker claims
   nothing new;
2. runs stop after the batch they are in (each batch is one transaction with its cursor, so the
   next start resumes exactly there, and claimed files stay in ``processing/``);
3. sends in flight finish, or are cancelled at the bound; delivery leases still held and the
   pipeline leases are given back, so another process (or the restart) takes over at once;
4. exit 0.  Past the bound the process exits 1, and a second signal exits at once: both are safe,
   because nothing is acknowledged before the store has it.

Each phase logs one structured line (``phase=...``).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from junction.api.app import create_app
from junction.api.context import SCHEDULER, ApiContext
from junction.core.errors import ConfigError, JunctionError
from junction.core.logging import configure, get_logger, set_pseudonymizer
from junction.core.pseudonym import Pseudonymizer
from junction.pipeline.config import HubConfig, load_config
from junction.pipeline.deliver import build_channels
from junction.pipeline.hub import Hub
from junction.pipeline.state import state_dir
from junction.serve.drift import DriftChecks
from junction.serve.leases import PipelineLeases
from junction.serve.outbox import DeliveryService, TrackedOutbox
from junction.serve.scheduler import Scheduler
from junction.store.channel_secrets import StoreSigningKeys

log = get_logger(__name__)

EXIT_OK = 0
EXIT_UNFINISHED = 1


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave the process's signal handlers alone."""
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the API's listening socket; a taken or invalid address is a ConfigError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}", details=f"{type(exc).__name__}: {exc.strerror}"
        ) from exc
    sock.set_inheritable(False)
    return sock


def exit_reserve(grace: float) -> float:
    """Seconds of the grace kept for giving leases back, closing, and the interpreter's exit.

    Tearing down the loaded stack (scikit-learn, NumPy, SQLAlchemy) alone takes about half a
    second; the rest of the grace goes to requests, batches and sends in flight.
    """
    return min(grace / 2, 1.5 + grace * 0.1)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


class Service:
    """One ``junction serve`` process."""

    def __init__(self, config_path: Path) -> None:
        """Serve the hub that ``config_path`` describes."""
        self.config_path = config_path
        self.cfg: HubConfig | None = None
        self._stop = asyncio.Event()
        self._signalled_at: float | None = None
        self._must_exit_now = False

    # signals

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self._stop.is_set():
            # still safe: every acknowledgement waited for the store, which rolls back the rest
            log.warning("second signal, exiting now", phase="abort", signal=name)
            _flush()
            os._exit(128 + sig)
        self._signalled_at = time.monotonic()
        log.info("shutdown requested", phase="signal", signal=name)
        self._stop.set()
        grace = self.cfg.api.shutdown_grace_s if self.cfg is not None else 10.0
        # the bound holds even if a step below hangs (a store that stopped answering)
        timer = threading.Timer(grace, self._past_bound, args=(grace,))
        timer.daemon = True
        timer.start()

    @staticmethod
    def _past_bound(grace: float) -> None:
        log.error("shutdown bound reached, exiting", phase="exit", grace_s=grace, code=1)
        _flush()
        os._exit(EXIT_UNFINISHED)

    # the main task

    async def main(self) -> int:
        """Start everything, serve until a signal, shut down; return the exit code."""
        started = time.monotonic()
        self._install_signals(asyncio.get_running_loop())
        log.info("serve starting", phase="start", config=str(self.config_path), pid=os.getpid())
        cfg = self.cfg = load_config(self.config_path)
        # one log pseudonym key per deployment (its state folder), so pseudonyms link across
        # processes; JUNCTION_PSEUDONYM_KEY overrides it
        set_pseudonymizer(Pseudonymizer.load(state_dir(cfg)))
        hub = await asyncio.to_thread(Hub, cfg)
        try:
            leases = PipelineLeases.for_this_process(hub.store)
            scheduler = Scheduler(hub, leases)
            await asyncio.to_thread(scheduler.prepare)
            drift = DriftChecks(cfg, hub.store, leases)
            await asyncio.to_thread(drift.prepare)
            outbox = TrackedOutbox(hub.store)
            deliveries = DeliveryService(
                outbox,
                build_channels(
                    cfg.channels,
                    hub.registry,
                    egress=cfg.egress,
                    signing_keys=StoreSigningKeys(hub.store),
                ),
                cfg.delivery,
                **hub.delivery_options(),
            )
            ctx = ApiContext(cfg=cfg, hub=hub, config_path=self.config_path)
            ctx.extras[SCHEDULER] = scheduler
            app = create_app(ctx)
            sock = bind_socket(cfg.api.host, cfg.api.port)
        except BaseException:
            hub.close()
            raise
        server = _Server(
            uvicorn.Config(
                app,
                log_config=None,
                log_level="warning",
                access_log=False,
                lifespan="on",
                ws="none",
                timeout_graceful_shutdown=max(1, int(cfg.api.shutdown_grace_s / 2)),
            )
        )
        http = asyncio.create_task(server.serve(sockets=[sock]), name="http")
        while not server.started and not http.done():
            await asyncio.sleep(0.01)
        if http.done():
            hub.close()
            raise ConfigError("the API server did not start", details=repr(http.exception()))
        host, port = sock.getsockname()[:2]
        log.info("serve listening", phase="listen", host=host, port=port)
        scheduler.start()
        deliveries.start()
        drift.start()
        log.info(
            "serve ready",
            phase="ready",
            startup_s=round(time.monotonic() - started, 3),
            channels=len(cfg.channels),
            drift_checked=sorted(drift.checks),
            **scheduler.describe(),
        )
        await self._stop.wait()
        return await self._shutdown(cfg, hub, server, http, scheduler, deliveries, leases, drift)

    async def _shutdown(
        self,
        cfg: HubConfig,
        hub: Hub,
        server: uvicorn.Server,
        http: asyncio.Task[None],
        scheduler: Scheduler,
        deliveries: DeliveryService,
        leases: PipelineLeases,
        drift: DriftChecks,
    ) -> int:
        grace = cfg.api.shutdown_grace_s
        began = self._signalled_at or time.monotonic()
        deadline = began + grace - exit_reserve(grace)

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        log.info("intake stopped", phase="drain", grace_s=grace)
        server.should_exit = True
        runs = asyncio.create_task(scheduler.stop(left()))
        sends = asyncio.create_task(deliveries.stop(left()))
        checks = asyncio.create_task(drift.stop(left()))
        done, _ = await asyncio.wait([http], timeout=left())
        if not done:
            server.force_exit = True
            await asyncio.wait([http], timeout=0.5)
        log.info("http stopped", phase="http", clean=http.done())
        stopped, still_running = await runs
        log.info("runs stopped", phase="runs", stopped=stopped, still_running=still_running)
        sends_finished = await sends
        log.info("deliveries stopped", phase="deliveries", finished=sends_finished)
        log.info("drift checks stopped", phase="drift", finished=await checks)
        released, pipelines = 0, 0
        try:
            released = await asyncio.to_thread(deliveries.outbox.release_held)
            pipelines = await asyncio.to_thread(leases.release)
        except JunctionError as exc:  # they expire on their own
            log.warning("lease release failed", error=type(exc).__name__, code=exc.code)
        log.info("leases released", phase="release", deliveries=released, pipelines=pipelines)
        seconds = round(time.monotonic() - began, 3)
        if still_running or not http.done():
            # a run is inside a batch that outlasts the bound: its transaction rolls back
            self._must_exit_now = True
            log.warning("serve stopped", phase="exit", seconds=seconds, code=EXIT_UNFINISHED)
            return EXIT_UNFINISHED
        await deliveries.aclose()
        await asyncio.to_thread(scheduler.close)
        hub.close()
        log.info("serve stopped", phase="exit", seconds=seconds, code=EXIT_OK)
        return EXIT_OK

    def finish(self, code: int) -> int:
        """After the loop ended: exit at once when something may still hold the process."""
        children = multiprocessing.active_children()
        for child in children:  # batch workers of an interrupted run: their batch rolls back
            child.terminate()
        busy = [
            th
            for th in threading.enumerate()
            if th is not threading.main_thread() and not th.daemon and th.is_alive()
        ]
        if self._must_exit_now or children or busy:
            _flush()
            os._exit(code)
        return code


def serve(config_path: Path, *, log_json: bool = True) -> int:
    """Run ``junction serve`` until SIGTERM or SIGINT; return the process exit code.

    Raises:
        ConfigError: the configuration, a pipeline or the listening address is unusable.
    """
    configure(json=log_json)
    service = Service(config_path)
    code = asyncio.run(service.main())
    return service.finish(code)
