"""The pipeline runner: extract → prepare (normalize, validate, score, route) → commit.

Each batch's effects (records, scores, deliveries, quarantine rows) and the cursor that says where
to resume are written in ONE transaction.  A crash anywhere therefore replays at most the batches
in flight, and every insert is idempotent (stable ids, ``INSERT … ON CONFLICT DO NOTHING``), so a
re-run neither loses nor duplicates anything.  A file is archived only after its last batch commits.

Preparing a batch is CPU-bound; for large inputs it runs in worker processes (``workers``), while
this process reads the source and writes results strictly in order, so cursors only move forward.

**The model follows production.**  A runner lives as long as the hub, so it does not keep the
model it was built with: at the start of each run, and before a pushed batch at most once a
second, it compares the model's stages revision (one ``stat``; :mod:`junction.pipeline.model_watch`)
and, after a ``junction model promote`` or ``rollback``, loads the new production version and
rebuilds its :class:`BatchPreparer`.  A run in progress finishes with the model it started with,
in this process and in the worker processes (each share carries the run's version folder, and a
worker whose model differs loads that one first); every score row records its
``model_version``, so the switch is visible in the store.  A new production that fails to load
keeps the previously verified model (logged as an error, retried at the next change).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from queue import Empty
from typing import Any

from connectors.base import Capability, RawBatch, SourceConnector
from junction.core import metrics, tracing
from junction.core.errors import InternalError, JunctionError, RecordError
from junction.core.logging import get_logger
from junction.core.registry import Registry, default_registry
from junction.pipeline import traces
from junction.pipeline.config import HubConfig, PipelineConfig
from junction.pipeline.extract import build_connector
from junction.pipeline.model_watch import ModelWatch
from junction.pipeline.prepare import BatchPreparer, PreparedBatch, quarantine_row
from junction.pipeline.workers import (
    BatchDone,
    Dispatcher,
    PartitionedSource,
    PartPlan,
    ShareContext,
    WorkerReady,
    WriteTurn,
    init_worker,
    plan_shares,
    ready,
    share_store,
)
from junction.store.repo import Store

log = get_logger(__name__)

Progress = Callable[[int], None]
PARALLEL_MIN_BYTES = 8 * 1024 * 1024
# a file that can be cut is cut into up to this many parts per working process: they are handed
# out in file order to whichever process is free, so none idles long at the end
PARTS_PER_WORKER = 16
# ... and into parts of about this many bytes at most, so the part that runs last while the
# other processes have finished is short (1M leads, 225 MB: 53 parts of ~19k rows, not 32)
PART_BYTES = 4 << 20
# the parallel path saves the file's cursor at most this often (seconds)
CURSOR_SAVE_S = 1.0
# a pushed batch checks the model's stages revision at most this often (seconds)
MODEL_CHECK_S = 1.0


class RunInterrupted(Exception):
    """Raised by a progress callback to stop a run between committed batches (shutdown)."""


@dataclass
class RunSummary:
    """Counts of one run of one pipeline."""

    pipeline: str
    run_id: int
    files: int = 0
    files_failed: int = 0
    read: int = 0
    stored: int = 0
    quarantined: int = 0
    routed: int = 0
    # versions stored as history without routing: older than the newest, or nothing changed
    held_back: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly counts."""
        return {k: v for k, v in self.__dict__.items() if k != "errors"}


def _usable_cpus() -> int:
    """CPUs this process may run on (not the host's count inside a container), at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _raise_failed(futures: list[Future[Any]]) -> None:
    """Re-raise the first exception of a finished worker task (e.g. a dead worker)."""
    for fut in futures:
        exc = fut.exception() if fut.done() else None
        if exc is not None:
            raise exc


class PipelineRunner:
    """Runs one configured pipeline against the store."""

    def __init__(
        self,
        name: str,
        cfg: PipelineConfig,
        hub: HubConfig,
        store: Store,
        registry: Registry = default_registry,
    ) -> None:
        """Compile everything the pipeline needs once: connector, mapping, rules, scorer, routes."""
        self.name = name
        self.cfg = cfg
        self.store = store
        self.connector: SourceConnector = build_connector(name, cfg, registry)
        self.model: ModelWatch | None = None
        self.model_dir: Path | None = None
        scorer = None
        if cfg.scoring is not None:
            self.model = ModelWatch(hub.models_dir, cfg.scoring, owner=f"pipeline:{name}")
            loaded = self.model.load()
            self.model_dir, scorer = loaded.model_dir, loaded.scorer
        self._preparer = BatchPreparer(name, cfg, self.connector.name, scorer)
        # one batch at a time through the compiled mapping and CEL programs: runs, replays and
        # pushed records (API threads) may share this runner.  Reentrant, because a pushed
        # batch reads `preparer` (which may refresh the model) while holding it
        self.prepare_lock = threading.RLock()
        # serializes model refreshes; taken before prepare_lock, never after
        self._model_lock = threading.Lock()
        self._model_check_at = time.monotonic() + MODEL_CHECK_S
        self.store_url = hub.store
        self._pool: ProcessPoolExecutor | None = None
        self._pool_size = 0
        self._queue: Any = None

    @property
    def preparer(self) -> BatchPreparer:
        """The compiled pipeline for batches outside a run (pushed records, replays).

        At most once a second this checks whether the model's production stage changed and
        refreshes the model first (:meth:`refresh_model`); callers may hold ``prepare_lock``.
        """
        watch = self.model
        if watch is not None and watch.watched and time.monotonic() >= self._model_check_at:
            self.refresh_model(wait=False)
        return self._preparer

    def refresh_model(self, *, wait: bool = True) -> bool:
        """Load the production model again if ``stages.json`` changed; return whether it did.

        The new scorer is loaded and verified before the :class:`BatchPreparer` built on it
        replaces the old one (under ``prepare_lock``), so a batch is prepared wholly with one
        model.  A failed load keeps the current model (see :mod:`junction.pipeline.model_watch`).
        With ``wait`` False, a refresh already under way elsewhere is not waited for.
        """
        watch = self.model
        if watch is None or not watch.watched:
            return False
        if not self._model_lock.acquire(blocking=wait):
            return False
        try:
            self._model_check_at = time.monotonic() + MODEL_CHECK_S
            if not watch.stale() or not watch.reload():
                return False
            loaded = watch.current
            assert loaded is not None
            with self.prepare_lock:
                self._preparer = BatchPreparer(
                    self.name, self.cfg, self.connector.name, loaded.scorer
                )
                self.model_dir = loaded.model_dir
            return True
        finally:
            self._model_lock.release()

    def _compiled(self) -> tuple[BatchPreparer, Path | None]:
        """The preparer and model folder a run uses from start to end (after a refresh)."""
        self.refresh_model()
        with self.prepare_lock:
            return self._preparer, self.model_dir

    def close(self) -> None:
        """Release the connector and worker processes."""
        self.connector.close()
        self.close_pool()

    def run_once(self, progress: Progress | None = None) -> RunSummary:
        """Process every ready input once, then return the counts."""
        started = time.perf_counter()
        run_id = self.store.start_run(self.name)
        summary = RunSummary(self.name, run_id)
        status, error = "succeeded", None
        try:
            # the whole run scores with one model, even if production changes meanwhile
            preparer, model_dir = self._compiled()
            for stream in self.streams():
                if self.polls:
                    self._run_poll_stream(stream, summary, progress, preparer)
                else:
                    self._run_stream(stream, summary, progress, preparer, model_dir)
        except RunInterrupted:
            status = "interrupted"  # stopped between batches; the cursor resumes it
            raise
        except JunctionError as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc.user_message}"
            raise
        except BaseException as exc:  # a bug or an interrupt still closes the run as failed
            status, error = "failed", type(exc).__name__
            raise
        finally:
            summary.seconds = time.perf_counter() - started
            self.store.finish_run(run_id, status, summary.as_dict(), error)
            metrics.observe_run(self.name, status)
        return summary

    @property
    def polls(self) -> bool:
        """Whether the source is polled (a CRM, a database) rather than a file drop."""
        return Capability.FILES not in self.connector.capabilities

    def streams(self) -> list[str]:
        """The streams one run reads: the configured ones, else every discovered stream."""
        if self.cfg.source.streams:
            return list(self.cfg.source.streams)
        return [s.name for s in self.connector.discover()]

    def _run_poll_stream(
        self,
        stream: str,
        summary: RunSummary,
        progress: Progress | None,
        preparer: BatchPreparer,
    ) -> None:
        """Read a polled stream from its committed cursor; each batch commits with its cursor.

        A failure (the source down, a rate limit, a crash) leaves the cursor after the last
        committed batch, so the next run resumes there: nothing is lost, and what is read again
        is deduplicated by its stable ids (and by the connector's own cursor dedupe).
        """
        cursor = self.store.get_cursor(self.name, stream)
        read_ns = traces.read_started()
        for batch in self.connector.read(stream, cursor):
            with traces.batch(self.name, self.connector.name, batch, read_ns):
                with self.prepare_lock:
                    prepared = preparer.prepare(batch, summary.run_id, split_personal=self.seals())
                self.commit(prepared, summary)
            read_ns = traces.read_started()
            if progress is not None:
                progress(prepared.read)

    def _workers_for(self, stream: str) -> int:
        w = self.cfg.workers
        if w == "auto":
            try:
                big = os.path.getsize(stream) >= PARALLEL_MIN_BYTES
            except OSError:
                big = False
            return _usable_cpus() if big else 0
        return w

    def _pool_for(self, workers: int) -> tuple[ProcessPoolExecutor, Any]:
        if self._pool is None or self._pool_size != workers:
            self.close_pool()
            ctx = get_context("spawn")
            self._queue = ctx.Queue()
            self._pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=ctx,
                initializer=init_worker,
                initargs=(
                    self.name,
                    self.cfg,
                    self.store_url,
                    str(self.model_dir) if self.model_dir else None,
                    os.getpid(),
                    self._queue,
                    tracing.settings(),
                ),
            )
            self._pool_size = workers
            self._started: set[int] = set()  # pids of workers that reported ready
        return self._pool, self._queue

    def close_pool(self) -> None:
        """Stop the worker processes, if any, and close this process's share store."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        if self._local_store is not None:
            self._local_store.close()
            self._local_store = None
        if self._local_turn is not None:
            self._local_turn.close()
            self._local_turn = None

    # The runner's own process takes shares of a large file next to the worker processes, so
    # `workers: N` means N working processes but only N - 1 extra interpreters in memory.  By
    # default it does so when it runs on the main thread (a CLI run); a run on another thread
    # (a service whose main thread serves an API) leaves all the work to N worker processes,
    # so the GIL stays free for the service.  True or False decides it explicitly.
    shares_work: bool | None = None
    _local_store: Store | None = None  # the store this process writes its shares through
    _local_turn: WriteTurn | None = None  # and its turn to write (SQLite)

    def _sharing(self) -> bool:
        if self.shares_work is not None:
            return self.shares_work
        return threading.current_thread() is threading.main_thread()

    def _spawned_for(self, workers: int) -> int:
        return workers - 1 if self._sharing() else workers

    def start_workers(self, workers: int | None = None, *, for_stream: str | None = None) -> int:
        """Start the worker processes now rather than at the first large file; return how many.

        A long-running hub keeps its workers between runs; this lets it (and the benchmark)
        pay their start-up (imports, compiling the pipeline, loading the model) up front.

        Args:
            workers: working processes (default: the pipeline's ``workers``, ``auto`` = CPUs).
            for_stream: start as many as this input would use (none for a small file).
        """
        if for_stream is not None:
            workers = self._workers_for(for_stream)
        elif workers is None:
            workers = self.cfg.workers if self.cfg.workers != "auto" else _usable_cpus()
        size = self._spawned_for(workers)
        if size < 1:
            return 0
        pool, queue = self._pool_for(size)
        if len(self._started) >= size:
            return size
        futures = [pool.submit(ready) for _ in range(size)]  # each spawns a process
        deadline = time.monotonic() + 300
        while len(self._started) < size and time.monotonic() < deadline:
            try:
                msg = queue.get(timeout=0.5)
            except Empty:
                _raise_failed(futures)
                continue
            if isinstance(msg, WorkerReady):
                self._started.add(msg.pid)
        return len(self._started)

    def _plan(self, stream: str, cursor: dict[str, Any] | None, workers: int) -> PartPlan | None:
        """The connector's plan for ``stream`` when it can be read in parts, else None."""
        if not isinstance(self.connector, PartitionedSource):
            return None
        try:
            size = os.path.getsize(stream)
        except OSError:
            size = 0  # the connector's plan reports the missing file
        parts = max(workers * PARTS_PER_WORKER, size // PART_BYTES)
        return self.connector.plan_parts(stream, cursor, parts)

    def _run_stream_parallel(
        self,
        stream: str,
        summary: RunSummary,
        progress: Progress | None,
        workers: int,
        preparer: BatchPreparer,
        model_dir: Path | None,
    ) -> None:
        """``workers`` processes commit shares of the file; the cursor follows their prefix."""
        cursor = self.store.get_cursor(self.name, stream)
        summary.files += 1
        try:
            plan = self._plan(stream, cursor, workers)  # scans the file once, here
        except RecordError as exc:  # a file-level size or encoding error
            self._fail_file(stream, (cursor or {}).get("sha256"), exc, summary)
            return
        if plan is not None and self.store.file_status(self.name, plan.sha256) == "done":
            log.info("file already ingested; archiving", pipeline=self.name)
            self._archive(stream, self.cfg.archive.processed)
            return
        size = self._spawned_for(workers)
        pool, queue = self._pool_for(size) if size > 0 else (None, None)
        shares, prefix = plan_shares(plan.parts if plan is not None else 1, workers)
        last, saved = cursor, cursor
        saved_at = time.monotonic()

        def save_cursor() -> None:
            nonlocal saved, saved_at
            if last is not saved and last is not None:
                self.store.set_cursor(self.name, stream, last)
                saved, saved_at = last, time.monotonic()

        def on_advance(advanced: dict[str, Any]) -> None:
            nonlocal last
            last = advanced
            # one short write transaction every CURSOR_SAVE_S, not one per batch: the shares
            # need SQLite's single write lock; a crash replays a little more
            if time.monotonic() - saved_at >= CURSOR_SAVE_S:
                save_cursor()

        def on_batch(msg: BatchDone) -> None:
            metrics.observe_batch(self.name, msg.read, msg.stored, msg.quarantine_codes)
            summary.read += msg.read
            summary.stored += msg.stored
            summary.quarantined += msg.quarantined
            summary.routed += msg.routed
            if progress is not None:
                progress(msg.read)

        local = None
        if self._sharing():
            if self._local_store is None:
                self._local_store = share_store(self.store_url)
                self._local_turn = WriteTurn.for_store(self.store_url)
            local = ShareContext(
                self.name, preparer, self._local_store, self.connector, self._local_turn
            )
        dispatch = Dispatcher(
            shares=shares,
            prefix=prefix,
            local=local,
            pool=pool,
            queue=queue,
            pool_size=size,
            stream=stream,
            cursor=cursor,
            plan=plan,
            run_id=summary.run_id,
            token=f"{summary.run_id}:{stream}",
            on_batch=on_batch,
            on_advance=on_advance,
            on_ready=self._started.add if size > 0 else (lambda pid: None),
            model_dir=str(model_dir) if model_dir is not None else None,
        )
        try:
            self._dispatch(dispatch, summary, workers)
        except BaseException as exc:
            # stop handing out work; running shares finish and their stale reports are ignored
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
            try:
                save_cursor()
            except JunctionError:
                log.warning("could not save the cursor of a failed run", pipeline=self.name)
            if not isinstance(exc, BrokenProcessPool):
                raise
            raise InternalError(
                "a worker process died; the file's cursor covers only committed batches, "
                "and the next run resumes from there",
                details=str(exc),
            ) from exc
        ends = dispatch.ends
        sha = plan.sha256 if plan is not None else (last or {}).get("sha256")
        if any(e.already_done_sha for e in ends):
            log.info("file already ingested; archiving", pipeline=self.name)
            self._archive(stream, self.cfg.archive.processed)
            return
        errors = [e.error for e in sorted(ends, key=lambda e: e.part) if e.error is not None]
        if errors:
            save_cursor()
            if isinstance(errors[0], RecordError):
                self._fail_file(stream, sha, errors[0], summary)
                return
            raise errors[0]
        if not prefix.complete:
            save_cursor()
            raise InternalError(
                f"batches of {Path(stream).name} were not reported; "
                "the next run resumes after the committed prefix"
            )
        rows = int((last or {}).get("row", 0))
        self.store.finish_file(self.name, stream, sha or "", stream, "done", rows)
        self._archive(stream, self.cfg.archive.processed)

    def _dispatch(self, dispatch: Dispatcher, summary: RunSummary, workers: int) -> None:
        """Run the shares; with tracing on, in the file's ``junction.file`` span (ADR-0022)."""
        if not tracing.enabled():
            dispatch.run()
            return
        attrs: dict[str, tracing.AttrValue] = {
            "junction.pipeline": self.name,
            "junction.connector": self.connector.name,
            "junction.workers": workers,
            "junction.shares": len(dispatch.shares),
        }
        before = summary.read, summary.stored, summary.quarantined
        with tracing.span("junction.file", attrs) as sp:
            dispatch.tracing_settings = tracing.settings()
            dispatch.traceparent = sp.traceparent
            try:
                dispatch.run()
            finally:
                sp.set("junction.read", summary.read - before[0])
                sp.set("junction.records", summary.stored - before[1])
                sp.set("junction.quarantined", summary.quarantined - before[2])

    def _run_stream(
        self,
        stream: str,
        summary: RunSummary,
        progress: Progress | None,
        preparer: BatchPreparer,
        model_dir: Path | None,
    ) -> None:
        workers = self._workers_for(stream)
        if workers > 0:
            self._run_stream_parallel(stream, summary, progress, workers, preparer, model_dir)
            return
        cursor = self.store.get_cursor(self.name, stream)
        summary.files += 1
        # a resumed file starts from its cursor: when its last batch had committed before a
        # crash, nothing is left to read, and the ledger still needs its hash and row count
        sha: str | None = (cursor or {}).get("sha256")
        rows = int((cursor or {}).get("row", 0))
        try:
            read_ns = traces.read_started()
            for j, batch in enumerate(self.connector.read(stream, cursor)):
                sha = batch.cursor.get("sha256", sha)
                if j == 0 and sha and self.store.file_status(self.name, sha) == "done":
                    log.info("file already ingested; archiving", pipeline=self.name, sha256=sha)
                    break
                with traces.batch(self.name, self.connector.name, batch, read_ns):
                    with self.prepare_lock:
                        prepared = preparer.prepare(
                            batch, summary.run_id, split_personal=self.seals()
                        )
                    self.commit(prepared, summary)
                read_ns = traces.read_started()
                rows = int(prepared.cursor.get("row", 0))
                if progress is not None:
                    progress(prepared.read)
        except RecordError as exc:  # a file-level parse, encoding or size error
            self._fail_file(stream, sha, exc, summary)
            return
        self.store.finish_file(self.name, stream, sha or "", stream, "done", rows)
        self._archive(stream, self.cfg.archive.processed)

    def seals(self) -> bool:
        """Whether the store encrypts personal data (then batches are prepared split for it)."""
        return self.store.privacy() is not None

    def commit(
        self, prepared: PreparedBatch, summary: RunSummary, *, with_cursor: bool = True
    ) -> None:
        """Write one prepared batch and its cursor in one transaction."""
        with tracing.span("junction.store", traces.stored(prepared)) as sp:
            held_back, routed = self.store.write_batch(
                records=prepared.records,
                scores=prepared.scores,
                deliveries=prepared.deliveries,
                quarantined=prepared.quarantined,
                cursor=(self.name, prepared.stream, prepared.cursor) if with_cursor else None,
                heads=prepared.heads,
                outcomes=prepared.outcomes,
                personal=prepared.personal,
            )
            sp.set("junction.routed", routed)
            sp.set("junction.held_back", held_back)
        metrics.observe_batch(
            self.name,
            prepared.read,
            len(prepared.records),
            [(q[1], q[4]) for q in prepared.quarantined],
        )
        summary.read += prepared.read
        summary.stored += len(prepared.records)
        summary.quarantined += len(prepared.quarantined)
        summary.routed += routed
        summary.held_back += held_back

    def process_batch(
        self, batch: RawBatch, summary: RunSummary, *, commit_cursor: bool = True
    ) -> None:
        """Prepare and commit one batch inline (replays and tests)."""
        with traces.batch(self.name, self.connector.name, batch, traces.read_started()):
            with self.prepare_lock:
                prepared = self.preparer.prepare(
                    batch, summary.run_id or None, split_personal=self.seals()
                )
            self.commit(prepared, summary, with_cursor=commit_cursor)

    def _fail_file(
        self, stream: str, sha: str | None, exc: RecordError, summary: RunSummary
    ) -> None:
        path = Path(stream)
        payload: bytes | None = None
        try:
            if path.stat().st_size <= 16 * 1024 * 1024:
                payload = path.read_bytes()
        except OSError:
            payload = None
        key = f"{self.name}:file:{sha or path.name}"
        self.store.quarantine_one(
            quarantine_row(
                self.name,
                "extract",
                key,
                exc,
                payload,
                {"connector": self.connector.name, "stream": stream, "sha256": sha},
                summary.run_id,
            )
        )
        self.store.finish_file(self.name, stream, sha or f"failed:{path.name}", stream, "failed", 0)
        summary.files_failed += 1
        summary.quarantined += 1
        summary.errors.append(f"{path.name}: {type(exc).__name__}: {exc.user_message}")
        log.warning(
            "file quarantined", pipeline=self.name, file=path.name, error=type(exc).__name__
        )
        metrics.observe_quarantine(self.name, "extract", exc.code)
        dest = self._archive(stream, self.cfg.archive.failed)
        if dest is not None:  # why, for whoever looks in the folder: code and safe message only
            reason = f"error: {type(exc).__name__}\ncode: {exc.code}\nmessage: {exc.user_message}\n"
            dest.with_name(dest.name + ".reason.txt").write_text(reason, encoding="utf-8")

    def _archive(self, stream: str, folder: str) -> Path | None:
        src = Path(stream)
        if not src.exists():
            return None
        dest_dir = Path(folder)
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / src.name
        if dest.exists():
            dest = dest_dir / f"{src.stem}.{int(time.time() * 1000)}{src.suffix}"
        shutil.move(str(src), str(dest))
        marker = src.with_name(src.name + ".done")
        if marker.exists():
            marker.unlink()
        return dest
