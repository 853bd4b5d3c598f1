"""A large file read in shares by several processes stores exactly what the inline path stores.

The runner's process takes shares next to the worker processes; a file whose lines are one
record each is cut into parts, others are read whole by striding shares.  Either way the store
ends up the same as an inline run, the cursor only covers committed batches, and a run stopped
part-way resumes to exactly-once.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from connectors.csv_file import CsvFileConfig, CsvFileConnector
from junction.pipeline.hub import Hub
from junction.pipeline.workers import BatchDone, CommitPrefix, ShareEnd
from scoring.synthetic import write_lead_csv
from tests.integration.helpers import scalar, stored_effects, write_config

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ROWS = 4000


def _drop(root: Path, shape: str) -> Path:
    path = root / "inbox" / "leads.csv"
    root.joinpath("inbox").mkdir(parents=True, exist_ok=True)
    write_lead_csv(path, ROWS, seed=31, messy=True)
    text = path.read_text(encoding="utf-8")
    if shape != "plain":
        lines = text.splitlines(keepends=True)
        start = len(lines) * 3 // 4 if shape == "quoted-late" else 1
        # quote the company field of some rows: same values, but csv quoting from there on
        for i in range(start, len(lines), 7):
            lines[i] = re.sub(r",(\w[^,]*(?:Inc\.|GmbH|Ltd)),", r',"\1",', lines[i], count=1)
        text = "".join(lines)
        assert '"' in text
    path.write_text(text, encoding="utf-8")
    return path


def _ingest(root: Path, store: str, models: Path, shape: str, workers: int, share: bool) -> Any:
    cfg = write_config(
        root, store=store, url="http://127.0.0.1:9", secret=SECRET, models=models, batch=150,
        workers=workers,
    )  # fmt: skip
    _drop(root, shape)
    hub = Hub.from_file(cfg)
    try:
        runner = hub.runner("leads")
        runner.shares_work = share
        [summary] = hub.run_once()
    finally:
        hub.close()
    assert summary.read == ROWS
    assert (root / "processed" / "leads.csv").exists()
    return stored_effects(store)


@pytest.mark.parametrize("shape", ["plain", "quoted-late", "quoted"])
def test_shares_store_what_the_inline_path_stores(
    tmp_path: Path, store_url: str, models_dir: Path, shape: str
) -> None:
    inline_store = f"sqlite:///{tmp_path / 'inline.db'}"
    inline = _ingest(tmp_path / "inline", inline_store, models_dir, shape, 0, share=True)
    shared = _ingest(tmp_path / "shared", store_url, models_dir, shape, 2, share=True)
    assert len(inline) > 2 * ROWS
    assert shared == inline


def test_worker_processes_alone_store_the_same(tmp_path: Path, models_dir: Path) -> None:
    inline = _ingest(
        tmp_path / "inline", f"sqlite:///{tmp_path / 'a.db'}", models_dir, "plain", 0, True
    )
    pool_only = _ingest(
        tmp_path / "pool", f"sqlite:///{tmp_path / 'b.db'}", models_dir, "quoted-late", 2, False
    )
    quoted_inline = _ingest(
        tmp_path / "q", f"sqlite:///{tmp_path / 'c.db'}", models_dir, "quoted-late", 0, True
    )
    assert pool_only == quoted_inline
    assert len(inline) == len(pool_only)


class _Stop(Exception):
    pass


def test_a_run_stopped_part_way_resumes_to_exactly_once(
    tmp_path: Path, store_url: str, models_dir: Path
) -> None:
    cfg = write_config(
        tmp_path, store=store_url, url="http://127.0.0.1:9", secret=SECRET, models=models_dir,
        batch=100, workers=2,
    )  # fmt: skip
    _drop(tmp_path, "plain")
    hub = Hub.from_file(cfg)
    seen = 0

    def stop_after_some(n: int) -> None:
        nonlocal seen
        seen += n
        if seen >= 1200:
            raise _Stop

    try:
        runner = hub.runner("leads")
        assert runner.start_workers() == 1  # two working processes: this one and a worker
        with pytest.raises(_Stop):
            runner.run_once(stop_after_some)
        cursor = hub.store.get_cursor("leads", str(tmp_path / "inbox" / "leads.csv"))
        stored = scalar(store_url, "SELECT count(*) FROM records") + scalar(
            store_url, "SELECT count(*) FROM quarantine"
        )
        assert 0 < stored < ROWS
        # the saved cursor is a committed prefix: every row up to it is stored.  On a loaded
        # machine the worker's later share can commit its 1,200 rows before the first share
        # commits anything: then no prefix is committed and rightly no cursor is saved
        resumed_at = 0 if cursor is None else cursor["row"]
        assert resumed_at <= stored
        [again] = hub.run_once()
    finally:
        hub.close()
    assert again.read == ROWS - resumed_at
    counts = (
        scalar(store_url, "SELECT count(*) FROM records"),
        scalar(store_url, "SELECT count(*) FROM quarantine"),
        scalar(store_url, "SELECT count(DISTINCT id) FROM records"),
    )
    assert counts[0] + counts[1] == ROWS
    assert counts[2] == counts[0]
    assert scalar(store_url, "SELECT count(*) FROM deliveries") == counts[0]


def _done(part: int, index: int, row: int) -> BatchDone:
    return BatchDone("t", part, index, {"row": row}, 1, 1, 0, 0)


def test_the_commit_prefix_follows_file_order() -> None:
    prefix = CommitPrefix([1, 1, 1])
    assert prefix.batch(_done(1, 0, 20)) is None  # part 0 has not started yet
    assert prefix.batch(_done(0, 0, 10)) == {"row": 10}
    assert prefix.end(ShareEnd("t", 0, 0, 1)) == {"row": 20}  # part 0 done: part 1's batch
    assert prefix.end(ShareEnd("t", 2, 2, 0)) is None  # an empty part 2 waits for part 1
    assert not prefix.complete
    assert prefix.end(ShareEnd("t", 1, 1, 1)) is None
    assert prefix.complete


def test_striding_shares_complete_a_part_together() -> None:
    prefix = CommitPrefix([2])
    assert prefix.batch(_done(0, 1, 20)) is None
    assert prefix.end(ShareEnd("t", 1, 0, 3)) is None
    assert prefix.batch(_done(0, 0, 10)) == {"row": 20}
    assert prefix.batch(_done(0, 2, 30)) == {"row": 30}
    assert not prefix.complete  # the other share has not ended
    prefix.end(ShareEnd("t", 0, 0, 3))
    assert prefix.complete


@pytest.mark.parametrize(
    ("shape", "cut"), [("plain", True), ("quoted-late", True), ("quoted", False)]
)
def test_which_files_are_cut(tmp_path: Path, shape: str, cut: bool) -> None:
    path = _drop(tmp_path, shape)
    conn = CsvFileConnector(CsvFileConfig(path=str(path), settle_seconds=0))
    plan = conn.plan_parts(str(path), None, 32)
    assert (plan.parts > 1) is cut
