"""Worker processes for large inputs: each takes every W-th batch of a file and commits it.

Worker ``w`` of ``W`` reads the file itself (parsing is cheap next to preparing), prepares the
batches whose index ``j`` satisfies ``j % W == w`` and writes their effects to the store in one
transaction each. It reports every committed batch to the runner over a queue; the runner moves
the file's cursor only over the contiguous prefix of committed batches. A crash therefore replays
at most the batches after that prefix, and the idempotent inserts absorb the ones that had already
committed (ADR-0006).
"""

from __future__ import annotations

import gc
import os
import threading
import time
from dataclasses import dataclass
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from connectors.base import SourceConnector
from junction.core.errors import InternalError, JunctionError, RecordError
from junction.pipeline.config import PipelineConfig
from junction.pipeline.extract import build_connector
from junction.pipeline.prepare import BatchPreparer
from junction.pipeline.score import load_scorer
from junction.store.engine import make_engine
from junction.store.repo import Store


@dataclass(frozen=True)
class BatchDone:
    """One batch a worker committed."""

    token: str
    index: int
    cursor: dict[str, Any]
    read: int
    stored: int
    quarantined: int
    routed: int


@dataclass(frozen=True)
class ShareEnd:
    """A worker finished its share of a file (``batches`` = how many batches the file had)."""

    token: str
    worker: int
    batches: int
    already_done_sha: str | None = None
    error: JunctionError | None = None


@dataclass
class _State:
    name: str
    preparer: BatchPreparer
    store: Store
    connector: SourceConnector
    queue: Queue[Any]


_STATE: _State | None = None


def _exit_with_parent(parent_pid: int) -> None:
    """End this worker when the runner's process is gone (e.g. SIGKILLed): no orphans."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(1)


def init_worker(
    name: str,
    cfg: PipelineConfig,
    store_url: str,
    model_dir: str | None,
    parent_pid: int,
    queue: Queue[Any],
) -> None:
    """Process initializer: compile the pipeline and open the store once per worker."""
    global _STATE
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    scorer = load_scorer(Path(model_dir), cfg.scoring) if model_dir and cfg.scoring else None
    connector = build_connector(name, cfg)
    preparer = BatchPreparer(name, cfg, connector.name, scorer)
    store = Store(make_engine(store_url))  # the runner migrated the schema already
    _STATE = _State(name, preparer, store, connector, queue)
    # the compiled pipeline lives as long as the worker: keep the cyclic GC from rescanning it,
    # and let young batches grow before a collection (they are acyclic and freed by refcount)
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def process_share(
    stream: str,
    cursor: dict[str, Any] | None,
    worker: int,
    workers: int,
    run_id: int,
    token: str,
) -> None:
    """Prepare and commit batches ``j % workers == worker`` of ``stream`` after ``cursor``."""
    if _STATE is None:  # pragma: no cover - the initializer always ran
        raise InternalError("worker process was not initialized")
    st = _STATE
    seen = 0
    try:
        for j, batch in enumerate(st.connector.read(stream, cursor)):
            seen = j + 1
            if j == 0 and cursor is None:
                sha = batch.cursor.get("sha256")
                if sha and st.store.file_status(st.name, sha) == "done":
                    st.queue.put(ShareEnd(token, worker, 0, already_done_sha=sha))
                    return
            if j % workers != worker:
                continue
            prepared = st.preparer.prepare(batch, run_id)
            st.store.write_batch(
                records=prepared.records,
                scores=prepared.scores,
                deliveries=prepared.deliveries,
                quarantined=prepared.quarantined,
                cursor=None,
            )
            st.queue.put(
                BatchDone(
                    token,
                    j,
                    prepared.cursor,
                    prepared.read,
                    len(prepared.records),
                    len(prepared.quarantined),
                    len(prepared.deliveries),
                )
            )
    except RecordError as exc:  # file-level: the runner quarantines the file
        st.queue.put(ShareEnd(token, worker, seen, error=exc))
        return
    except JunctionError as exc:
        st.queue.put(ShareEnd(token, worker, seen, error=exc))
        return
    except Exception as exc:  # noqa: BLE001 - stage boundary: reported as an internal error
        st.queue.put(
            ShareEnd(
                token, worker, seen, error=InternalError(f"worker failed: {type(exc).__name__}")
            )
        )
        return
    st.queue.put(ShareEnd(token, worker, seen))
