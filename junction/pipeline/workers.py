"""Parallel processing of one large input: shares prepared and committed by several processes.

A file is shared out in one of two ways (ADR-0006).  When its connector can cut it into parts
that start at a record and know the row numbers before them (``plan_parts``: CSV files whose
lines are one record each), each share is one part, and the parts are handed out in file order
to whichever process is free.  Otherwise each of ``W`` shares reads the whole file and keeps the
batches ``j % W == w``.

The runner's own process takes shares too (it has nothing else to do meanwhile), next to
``W - 1`` worker processes, so ``W`` processes work and only ``W - 1`` extra interpreters hold
the compiled pipeline in memory.  Every share writes each batch's effects in one transaction and
reports it; the :class:`Dispatcher` moves the file's cursor only over the contiguous prefix of
committed batches, in file order.  A crash therefore replays at most the batches after that
prefix, and the idempotent inserts absorb the ones that had already committed.

A worker process loads the model once, in its initializer, but every share names the version
folder its run scores with: after a promotion or rollback the runner's next run passes the new
folder, and a worker whose model differs loads that one (and recompiles its pipeline) before the
share, so one run scores with one model in every process without restarting the pool.
"""

from __future__ import annotations

import fcntl
import gc
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing.queues import Queue
from pathlib import Path
from queue import Empty
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import event

from connectors.base import RawBatch, SourceConnector
from junction.core import tracing
from junction.core.errors import InternalError, JunctionError
from junction.pipeline import traces
from junction.pipeline.config import PipelineConfig
from junction.pipeline.extract import build_connector
from junction.pipeline.prepare import BatchPreparer, PreparedBatch
from junction.pipeline.score import load_scorer
from junction.store.crypto_rows import Presealed
from junction.store.engine import make_engine
from junction.store.repo import Store
from junction.store.wal import BackgroundCheckpoints, sqlite_file_of

# SQLite page cache of a worker's connection (KiB).  Another process commits between any two
# of this worker's transactions, so SQLite empties the cache at each one anyway: a batch's
# working set is all it ever holds.
WORKER_SQLITE_CACHE_KIB = 2048


class PartPlan(Protocol):
    """What the runner needs to know of a connector's plan for one stream."""

    @property
    def sha256(self) -> str:
        """The content hash of the stream (the file ledger's key)."""
        ...

    @property
    def parts(self) -> int:
        """How many parts the stream is read in (1: whole, shared by stride)."""
        ...


@runtime_checkable
class PartitionedSource(Protocol):
    """A connector that can plan a stream once and read it in independent parts."""

    def plan_parts(self, stream: str, cursor: dict[str, Any] | None, parts: int) -> PartPlan:
        """Scan ``stream`` and cut it into up to ``parts`` parts."""
        ...

    def read_part(self, plan: Any, part: int, cursor: dict[str, Any] | None) -> Iterator[RawBatch]:
        """Batches of one part after ``cursor``; row keys as a whole read gives them."""
        ...


@dataclass(frozen=True)
class WorkerReady:
    """A worker process finished its initializer."""

    pid: int


@dataclass(frozen=True)
class Share:
    """One share of a file: part ``part``, or every ``stride[1]``-th batch of it."""

    task: int
    part: int
    stride: tuple[int, int] | None


@dataclass(frozen=True)
class BatchDone:
    """One batch a share committed: batch ``index`` of part ``part``."""

    token: str
    part: int
    index: int
    cursor: dict[str, Any]
    read: int
    stored: int
    quarantined: int
    routed: int
    quarantine_codes: tuple[tuple[str, str], ...] = ()  # (stage, error code) per row, for metrics


@dataclass(frozen=True)
class ShareEnd:
    """A share finished: ``batches`` = how many batches part ``part`` had."""

    token: str
    task: int
    part: int
    batches: int
    already_done_sha: str | None = None
    error: JunctionError | None = None


# a share that finds another process writing prepares up to this many batches before it waits
WRITE_BACKLOG = 2
# batches one process commits between the background checkpoints it asks for (~190 WAL pages
# of 16 KiB a batch of 2,000 leads), and the WAL size at which a share's own commit still
# checkpoints (the engine's default is 2,500 pages: the background keeps the WAL below it)
CHECKPOINT_EVERY = 8
SHARE_AUTOCHECKPOINT = 10_000


class WriteTurn:
    """How the processes sharing a file's batches write to one SQLite file.

    **Turns.**  SQLite has one write lock, and a connection that finds it taken sleeps in its
    busy handler (1, 2, 5, 10, 15... ms) and may oversleep the other's ~20 ms batch by as much
    again, while its core idles.  An advisory ``flock`` beside the database lets a share ask
    first without waiting: when another process is writing, it prepares its next batch and
    writes both afterwards, waiting in the kernel (woken as soon as the lock is released).
    SQLite's own locking stays the authority: this only orders the shares' writes, which
    every other writer (the runner's cursor, an API) keeps ignoring.  The kernel releases the
    lock of a process that dies.

    **Checkpoints.**  Share connections checkpoint only as a last resort
    (:data:`SHARE_AUTOCHECKPOINT`); every :data:`CHECKPOINT_EVERY` committed batches this process
    asks a background thread for a ``PASSIVE`` checkpoint instead
    (:class:`~junction.store.wal.BackgroundCheckpoints`).
    """

    def __init__(self, db: str) -> None:
        """Open (creating it empty) the lock file beside the SQLite database file ``db``."""
        self.db = db
        self.path = f"{db}-shares.lock"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        self._checkpoints = BackgroundCheckpoints(db, CHECKPOINT_EVERY)

    @staticmethod
    def database_of(store_url: str) -> str | None:
        """The database file of a SQLite file store, else None (PostgreSQL, memory, URI)."""
        return sqlite_file_of(store_url)

    @classmethod
    def for_store(cls, store_url: str) -> WriteTurn | None:
        """The turn lock of a SQLite file store (``<db>-shares.lock``), else None."""
        db = cls.database_of(store_url)
        return cls(db) if db is not None else None

    def try_take(self) -> bool:
        """Take the turn if no other process holds it; return whether this one has it."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def take(self) -> None:
        """Wait for the turn (the GIL is released while waiting)."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def give(self) -> None:
        """Let the next process write."""
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def committed(self) -> None:
        """Count a committed batch; every :data:`CHECKPOINT_EVERY`, checkpoint in background."""
        self._checkpoints.committed()

    def wait_checkpoint(self, timeout: float | None = None) -> bool:
        """Wait until no background checkpoint runs; return whether none does."""
        return self._checkpoints.wait(timeout)

    def close(self) -> None:
        """Close the lock file (giving up the turn) and end the checkpoint thread."""
        self._checkpoints.close()
        os.close(self._fd)


@dataclass
class ShareContext:
    """What running a share needs: one process's compiled pipeline, store and connector."""

    name: str
    preparer: BatchPreparer
    store: Store
    connector: SourceConnector
    # whose turn it is to write to the SQLite file (None: PostgreSQL, or no other writer)
    turn: WriteTurn | None = None


_STATE: ShareContext | None = None
_QUEUE: Queue[Any] | None = None
_CFG: PipelineConfig | None = None
_MODEL_DIR: str | None = None  # the version folder this worker's scorer was loaded from


def _exit_with_parent(parent_pid: int) -> None:
    """End this worker when the runner's process is gone (e.g. SIGKILLed): no orphans."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(1)


def _small_page_cache(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA cache_size=-{WORKER_SQLITE_CACHE_KIB:d}")
    cur.close()


def _rare_autocheckpoint(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA wal_autocheckpoint={SHARE_AUTOCHECKPOINT:d}")
    cur.close()


def share_store(store_url: str) -> Store:
    """The store a process writes its shares through (the runner migrated the schema already).

    On SQLite its connections keep a small page cache (:data:`WORKER_SQLITE_CACHE_KIB`), and
    on a SQLite file they leave checkpoints to :class:`WriteTurn` (the same URL's).
    """
    engine = make_engine(store_url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _small_page_cache)
        if WriteTurn.database_of(store_url) is not None:
            event.listen(engine, "connect", _rare_autocheckpoint)
    return Store(engine)


def init_worker(
    name: str,
    cfg: PipelineConfig,
    store_url: str,
    model_dir: str | None,
    parent_pid: int,
    queue: Queue[Any],
    tracing_settings: tracing.Settings | None = None,
) -> None:
    """Process initializer: compile the pipeline and open the store once per worker.

    A spawned worker starts with tracing off: ``tracing_settings`` (the runner's
    :func:`junction.core.tracing.settings`) configures it as the runner's process is, and the
    SDK's provider flushes its exporter when the worker exits (ADR-0022).
    """
    global _STATE, _QUEUE, _CFG, _MODEL_DIR
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    tracing.configure_from(tracing_settings)
    scorer = load_scorer(Path(model_dir), cfg.scoring) if model_dir and cfg.scoring else None
    connector = build_connector(name, cfg)
    preparer = BatchPreparer(name, cfg, connector.name, scorer)
    _STATE = ShareContext(
        name, preparer, share_store(store_url), connector, WriteTurn.for_store(store_url)
    )
    _QUEUE = queue
    _CFG, _MODEL_DIR = cfg, model_dir
    # the compiled pipeline lives as long as the worker: keep the cyclic GC from rescanning it,
    # and let young batches grow before a collection (they are acyclic and freed by refcount)
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    queue.put(WorkerReady(os.getpid()))


def ready() -> int:
    """A no-op task: submitting it makes the pool start a process."""
    return os.getpid()


def use_model(model_dir: str | None) -> None:
    """Make this worker score with the model in ``model_dir`` (its run's version folder).

    A no-op when it already does, or when ``model_dir`` is None (keep the loaded model);
    otherwise the scorer is loaded and verified and the pipeline recompiled around it before
    the worker's state is replaced.

    Raises:
        ModelLoadError: the folder does not load (the worker's state is left as it was).
    """
    global _STATE, _MODEL_DIR
    if model_dir is None or model_dir == _MODEL_DIR or _STATE is None or _CFG is None:
        return
    cfg = _CFG
    scorer = load_scorer(Path(model_dir), cfg.scoring) if cfg.scoring else None
    preparer = BatchPreparer(_STATE.name, cfg, _STATE.connector.name, scorer)
    _STATE = replace(_STATE, preparer=preparer)
    _MODEL_DIR = model_dir
    gc.freeze()  # the new compiled pipeline lives as long as the worker too


def process_share(
    stream: str,
    cursor: dict[str, Any] | None,
    share: Share,
    plan: Any,
    run_id: int,
    token: str,
    model_dir: str | None = None,
    tracing_settings: tracing.Settings | None = None,
    traceparent: str | None = None,
) -> None:
    """Worker task: run one share with the model in ``model_dir`` and report over the queue.

    Tracing is configured as the runner's process has it now (``tracing_settings``: a no-op
    when unchanged since the last share), and the share's span continues ``traceparent`` (the
    file's span).  The spans go out on the exporter's schedule and when the worker exits, not
    at the end of each share: a slow or unreachable collector must not hold the shares up.
    """
    if _STATE is None or _QUEUE is None:  # pragma: no cover - the initializer always ran
        raise InternalError("worker process was not initialized")
    try:
        use_model(model_dir)
        tracing.configure_from(tracing_settings)
    except JunctionError as exc:  # the run verified this folder; it changed on disk since
        _QUEUE.put(ShareEnd(token, share.task, share.part, 0, error=exc))
        return
    run_share(
        _STATE, _QUEUE.put, stream, cursor, share, plan, run_id, token, traceparent=traceparent
    )


def run_share(
    ctx: ShareContext,
    report: Callable[[BatchDone | ShareEnd], None],
    stream: str,
    cursor: dict[str, Any] | None,
    share: Share,
    plan: Any,
    run_id: int,
    token: str,
    between: Callable[[], None] | None = None,
    *,
    traceparent: str | None = None,
) -> None:
    """Prepare and commit the batches of one share of ``stream`` after ``cursor``.

    With a ``plan``, the share is part ``share.part`` of it; without one, the connector reads
    the whole stream.  Each committed batch is reported as a :class:`BatchDone`, the end as a
    :class:`ShareEnd` (carrying the error, if the share failed).  Exceptions raised by
    ``report`` or ``between`` (called after each reported batch) propagate.

    With a :class:`WriteTurn` (SQLite), a prepared batch is written when no other process is
    writing; otherwise this process prepares the next batch first and then waits its turn,
    so it never sleeps in SQLite's busy handler while it has work (:data:`WRITE_BACKLOG`).

    With tracing on, the share runs in a ``junction.share`` span, child of ``traceparent`` (the
    file's span, ADR-0022); each batch is a ``junction.batch`` span under it (read, map, score,
    route), whose records store its ids, and its write a ``junction.store`` span child of the
    batch's (the write may wait its turn after the batch span ended).
    """
    if not tracing.enabled():
        _run_share(ctx, report, stream, cursor, share, plan, run_id, token, between)
        return
    attrs: dict[str, tracing.AttrValue] = {
        "junction.pipeline": ctx.name,
        "junction.connector": ctx.connector.name,
        "junction.part": share.part,
    }
    if share.stride is not None:
        attrs["junction.stride"] = share.stride[1]
    with tracing.span("junction.share", attrs, parent=traceparent) as sp:

        def traced(msg: BatchDone | ShareEnd) -> None:
            if isinstance(msg, ShareEnd):
                sp.set("junction.batches", msg.batches)
                if msg.error is not None:  # the class only: a message may quote a value
                    sp.set("error.type", type(msg.error).__name__)
            report(msg)

        _run_share(ctx, traced, stream, cursor, share, plan, run_id, token, between)


def _run_share(
    ctx: ShareContext,
    report: Callable[[BatchDone | ShareEnd], None],
    stream: str,
    cursor: dict[str, Any] | None,
    share: Share,
    plan: Any,
    run_id: int,
    token: str,
    between: Callable[[], None] | None,
) -> None:
    task, part, stride = share.task, share.part, share.stride
    turn = ctx.turn
    seen = 0
    try:
        if plan is not None:
            source = ctx.connector.read_part(plan, part, cursor)  # type: ignore[attr-defined]
        else:
            source = ctx.connector.read(stream, cursor)
        batches = enumerate(source)
    except JunctionError as exc:
        report(ShareEnd(token, task, part, 0, error=exc))
        return
    # each prepared batch waits with its done report, its sealed rows and its span's traceparent
    backlog: list[tuple[PreparedBatch, BatchDone, Presealed | None, str | None]] = []
    end = False
    while not end:
        committed: list[BatchDone] = []
        error: JunctionError | None = None
        try:
            read_ns = traces.read_started()
            item = next(batches, None)
            if item is None:
                end = True
            else:
                j, batch = item
                seen = j + 1
                if plan is None and j == 0 and cursor is None:
                    sha = batch.cursor.get("sha256")
                    if sha and ctx.store.file_status(ctx.name, sha) == "done":
                        report(ShareEnd(token, task, part, 0, already_done_sha=sha))
                        return
                if stride is None or j % stride[1] == stride[0]:
                    with traces.batch(ctx.name, ctx.connector.name, batch, read_ns) as bsp:
                        # encryption at rest: the preparer hands the personal members over
                        # apart, and they are sealed now, so the write turn is not spent on it
                        prepared = ctx.preparer.prepare(
                            batch, run_id, split_personal=ctx.store.privacy() is not None
                        )
                        del batch, item  # free the raw batch before the rows are written
                        sealed = ctx.store.preseal(
                            prepared.records, prepared.deliveries, prepared.personal
                        )
                    done = _done(token, part, j, prepared)
                    backlog.append((prepared, done, sealed, bsp.traceparent))
                    del prepared, sealed
            if backlog and _my_turn(turn, wait=end or len(backlog) >= WRITE_BACKLOG):
                try:
                    while backlog:
                        prepared, done, sealed, parent = backlog[0]
                        with tracing.span("junction.store", traces.stored(prepared), parent=parent):
                            _write(ctx.store, prepared, sealed)
                        del backlog[0], prepared, sealed
                        committed.append(done)
                        if turn is not None:
                            turn.committed()
                finally:
                    if turn is not None:
                        turn.give()
        except JunctionError as exc:  # a RecordError is file-level: the file is quarantined
            error = exc
        except Exception as exc:  # noqa: BLE001 - stage boundary: reported as an internal error
            error = InternalError(f"share failed: {type(exc).__name__}")
        for done in committed:
            report(done)
            if between is not None:
                between()
        if error is not None:
            report(ShareEnd(token, task, part, seen, error=error))
            return
    report(ShareEnd(token, task, part, seen))


def _my_turn(turn: WriteTurn | None, *, wait: bool) -> bool:
    """Whether this process may write now (taking the turn); with ``wait``, wait for it."""
    if turn is None:
        return True
    if turn.try_take():
        return True
    if wait:
        turn.take()
        return True
    return False


def _write(store: Store, prepared: PreparedBatch, sealed: Presealed | None = None) -> None:
    store.write_batch(
        records=prepared.records,
        scores=prepared.scores,
        deliveries=prepared.deliveries,
        quarantined=prepared.quarantined,
        cursor=None,
        outcomes=prepared.outcomes,
        presealed=sealed,
    )


def _done(token: str, part: int, index: int, prepared: PreparedBatch) -> BatchDone:
    return BatchDone(
        token,
        part,
        index,
        prepared.cursor,
        prepared.read,
        len(prepared.records),
        len(prepared.quarantined),
        len(prepared.deliveries),
        tuple((q[1], q[4]) for q in prepared.quarantined),
    )


class CommitPrefix:
    """The contiguous prefix of committed batches of one file, in file order.

    Batches are ordered by part, then by index within the part.  Part ``p`` is read by
    ``tasks[p]`` shares (one per part when the file is cut, ``W`` striding shares when it is
    not); it is complete when all of them ended and every batch below the count they
    reported has committed.
    """

    def __init__(self, tasks: list[int]) -> None:
        """``tasks[p]``: how many shares report part ``p``."""
        self.tasks = tasks
        self.ends: list[list[ShareEnd]] = [[] for _ in tasks]
        self.committed: dict[tuple[int, int], dict[str, Any]] = {}
        self.part = 0
        self.index = 0

    def batch(self, msg: BatchDone) -> dict[str, Any] | None:
        """Record a committed batch; return the cursor the prefix advanced to, if it did."""
        self.committed[(msg.part, msg.index)] = msg.cursor
        return self._advance()

    def end(self, msg: ShareEnd) -> dict[str, Any] | None:
        """Record a finished share; return the cursor the prefix advanced to, if it did."""
        self.ends[msg.part].append(msg)
        return self._advance()

    @property
    def complete(self) -> bool:
        """Every batch of every part has committed."""
        return self.part == len(self.tasks)

    def _advance(self) -> dict[str, Any] | None:
        advanced = None
        while self.part < len(self.tasks):
            key = (self.part, self.index)
            if key in self.committed:
                advanced = self.committed.pop(key)
                self.index += 1
                continue
            ends = self.ends[self.part]
            if len(ends) == self.tasks[self.part] and self.index >= max(e.batches for e in ends):
                self.part, self.index = self.part + 1, 0
                continue
            break
        return advanced


def plan_shares(parts: int, processes: int) -> tuple[list[Share], CommitPrefix]:
    """The shares of a file read in ``parts`` parts by ``processes`` processes."""
    if parts > 1:
        return [Share(p, p, None) for p in range(parts)], CommitPrefix([1] * parts)
    return [Share(w, 0, (w, processes)) for w in range(processes)], CommitPrefix([processes])


@dataclass
class Dispatcher:
    """Hands the shares of one file to the worker pool and to this process, in file order.

    This process (``local``) takes the next share whenever it is free and takes in the
    workers' reports between its own batches.  While more shares wait than the pool has
    workers, the pool keeps one queued beyond the running ones, so a worker that finishes
    never waits for this process to notice.  Every report goes through :meth:`handle`:
    ``on_batch`` sees each committed batch, ``on_advance`` each cursor the committed prefix
    advances to.  After a failed share no new share starts.
    """

    shares: list[Share]
    prefix: CommitPrefix
    local: ShareContext | None
    pool: ProcessPoolExecutor | None
    queue: Any
    pool_size: int
    stream: str
    cursor: dict[str, Any] | None
    plan: Any
    run_id: int
    token: str
    on_batch: Callable[[BatchDone], None]
    on_advance: Callable[[dict[str, Any]], None]
    on_ready: Callable[[int], None] = lambda pid: None
    # the version folder every share of this run scores with (None: the workers keep theirs)
    model_dir: str | None = None
    # the runner's tracing, for the workers to configure theirs, and the file's span: every
    # share's span is its child, so one file's run is one trace (ADR-0022)
    tracing_settings: tracing.Settings | None = None
    traceparent: str | None = None
    ends: list[ShareEnd] = field(default_factory=list)
    futures: list[Future[None]] = field(default_factory=list)
    _pending: deque[Share] = field(default_factory=deque)
    _in_pool: set[int] = field(default_factory=set)
    _dropped: int = 0

    def run(self) -> None:
        """Run every share to its end (this process's shares included)."""
        if self.pool is None and self.local is None:  # pragma: no cover - caller's contract
            raise InternalError("no process to run the shares")
        self._pending = deque(self.shares)
        self._fill_pool()
        if self.local is None:
            self._loop()
            return
        # this process builds batches too: keep the cyclic GC from rescanning the long-lived
        # objects (the hub, the compiled pipeline) at every collection, as workers do
        thresholds = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
        try:
            self._loop()
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()

    def _loop(self) -> None:
        while len(self.ends) + self._dropped < len(self.shares):
            if self.local is not None and self._pending:
                share = self._pending.popleft()
                run_share(
                    self.local,
                    self.handle,
                    self.stream,
                    self.cursor,
                    share,
                    self.plan,
                    self.run_id,
                    self.token,
                    self.poll,
                    traceparent=self.traceparent,
                )
                continue
            try:
                msg = self.queue.get(timeout=0.5)
            except Empty:
                self._check_pool()
                continue
            self.handle(msg)

    def poll(self) -> None:
        """Take in the workers' reports without waiting (between this process's batches)."""
        if self.queue is None:
            return
        while True:
            try:
                msg = self.queue.get_nowait()
            except Empty:
                break
            self.handle(msg)
        self._check_pool()

    def handle(self, msg: Any) -> None:
        """Take one report: a committed batch, a finished share or a worker that started."""
        if isinstance(msg, WorkerReady):
            self.on_ready(msg.pid)
            return
        if not isinstance(msg, BatchDone | ShareEnd) or msg.token != self.token:
            return  # left over from a run that failed part-way
        if isinstance(msg, ShareEnd):
            self.ends.append(msg)
            advanced = self.prefix.end(msg)
            if msg.error is not None or msg.already_done_sha:
                self._dropped += len(self._pending)  # start nothing new
                self._pending.clear()
            self._in_pool.discard(msg.task)
            self._fill_pool()
        else:
            advanced = self.prefix.batch(msg)
            self.on_batch(msg)
        if advanced is not None:
            self.on_advance(advanced)

    def _fill_pool(self) -> None:
        if self.pool is None:
            return
        while self._pending:
            if self.local is None:
                want = len(self.shares)  # the pool queues them all
            elif self._pending[0].stride is not None:
                want = self.pool_size  # striding shares all run at once, one of them here
            else:
                want = self.pool_size + (len(self._pending) > self.pool_size + 1)
            if len(self._in_pool) >= want:
                return
            share = self._pending.popleft()
            self._in_pool.add(share.task)
            self.futures.append(
                self.pool.submit(
                    process_share,
                    self.stream,
                    self.cursor,
                    share,
                    self.plan,
                    self.run_id,
                    self.token,
                    self.model_dir,
                    self.tracing_settings,
                    self.traceparent,
                )
            )

    def _check_pool(self) -> None:
        """Re-raise the failure of a pool task (a dead worker: BrokenProcessPool)."""
        for fut in self.futures:
            exc = fut.exception() if fut.done() else None
            if exc is not None:
                raise exc
