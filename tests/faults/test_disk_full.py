"""Issue 11 fault suite: the disk fills up under a file drop and a file export.

No root tricks: the hub runs in a forked child whose ``RLIMIT_FSIZE`` is set to a seeded size
(with SIGXFSZ ignored, so a write past it fails with EFBIG, as a full disk fails one with
ENOSPC): the SQLite store, its WAL and the export file can grow only up to that size.  The limit
is drawn between a few KiB and the largest file an undisturbed run of the same drop writes, so it
lands while the hub stores batches, archives the drop, records deliveries or writes the export.

After the limited run:

- the child finished, or failed with a typed error (``JunctionError``), never anything else;
- the drop is archived to ``processed/`` only if the ledger says its file is done, with every
  row stored or quarantined (the reconciliation's ``missing`` is empty then);
- no export file shows a half-written row (its last row is complete).

Then "space returns" (a run without the limit, which replays the deliveries that went dead
while the disk was full, as an operator would): it finishes, ``junction reconcile`` is clean,
and the export holds every delivered delivery exactly once (``skip_duplicates`` is the file
channel's idempotency key) and nothing that was not delivered.
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from junction.core.errors import JunctionError
from junction.pipeline.hub import Hub
from junction.pipeline.replay import replay
from junction.store.repo import Store
from outbound.file.writer import complete_end
from scoring.synthetic import write_lead_csv
from tests.conftest import PG_URL
from tests.faults.support import SEEDS, fork, map_seeds, reconciled, wait_child
from tests.integration.helpers import rows_of

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]
ROWS = 60
MIN_LIMIT = 4096
PROBE = 999_999  # the undisturbed run's seed

CONFIG = """\
store: "{store}"
models_dir: {models}
pipelines:
  leads:
    source: {{connector: csv_file, path: inbox/*.csv, settle_seconds: 0}}
    mapping: csv.lead
    batch_size: {batch}
    rules:
      - {{name: has_email, expr: "lead.email != null"}}
    scoring: {{model: lead-score}}
    routes:
      - otherwise: [file.export]
channels:
  file.export: {{folder: "{root}/out", format: {fmt}, skip_duplicates: true}}
delivery:
  schedule_s: [0.05, 0.1, 0.1, 0.1]
  lease_s: 0.5
"""


def _limit(limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))


def _run_child(
    cfg: Path, limit: int | None, drain_wait_s: float = 0.3, *, at_delivery: bool = False
) -> tuple[int, str]:
    """Run the hub once (and deliver) in a child; return (exit code, the error's class).

    ``at_delivery``: the limit starts after the pipeline run, before the deliveries (so the
    export file, not the store, is what runs out of room first).
    """
    read, write = os.pipe()
    pid = fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read)
        code, what = 0, ""
        try:
            if limit is not None and not at_delivery:
                _limit(limit)
            hub = Hub.from_file(cfg)
            try:
                hub.run_once()
                if limit is not None and at_delivery:
                    _limit(limit)
                if limit is None:
                    # space is back: the operator replays what went dead meanwhile
                    for q in hub.store.list_quarantine(limit=1000):
                        if q["stage"] == "deliver":
                            replay(hub, q["id"])
                hub.deliver(drain_wait_s=drain_wait_s)
            finally:
                hub.close()
        except JunctionError as exc:
            code, what = 3, f"{type(exc).__name__}: {exc.user_message}"[:300]
        except BaseException as exc:
            code, what = 4, f"{type(exc).__name__}: {exc}"[:300]
        os.write(write, what.encode())
        os._exit(code)
    os.close(write)
    code = wait_child(pid)
    with os.fdopen(read, "rb") as pipe:
        return code, pipe.read().decode(errors="replace")


def _setup(
    root: Path, models: Path, rng: random.Random, seed: int, template: Path | str
) -> tuple[Path, str]:
    """Write the drop and the config; return (config, store URL).

    ``template``: a migrated SQLite file to copy (the schema exists before the limit), or a
    PostgreSQL server's URL (the seed's store is a new schema there).
    """
    (root / "inbox").mkdir(parents=True)
    if isinstance(template, Path):
        shutil.copyfile(template, root / "j.db")
        url = f"sqlite:///{root}/j.db"
    else:  # a schema of its own (seeds run in parallel), dropped by the caller
        admin = create_engine(template)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{_schema(seed)}"'))
        admin.dispose()
        url = f"{template}?options=-csearch_path%3D{_schema(seed)}"
        Store.open(url).close()
    cfg = root / "junction.yaml"
    batch, fmt = rng.choice([20, 60, 500]), rng.choice(["csv", "jsonl"])
    cfg.write_text(CONFIG.format(store=url, root=root, models=models, batch=batch, fmt=fmt))
    write_lead_csv(root / "inbox" / "leads.csv", ROWS, seed=seed, messy=True)
    return cfg, url


def _largest_file(root: Path) -> int:
    return max(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _export_ids(root: Path) -> list[str]:
    ids: list[str] = []
    for path in sorted((root / "out").glob("*")):
        if path.suffix == ".csv":
            import csv

            with path.open(newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))
            at = rows[0].index("delivery_id")
            ids += [r[at] for r in rows[1:]]
        else:
            import orjson

            ids += [orjson.loads(line)["delivery_id"] for line in path.read_bytes().splitlines()]
    return ids


def _torn(root: Path) -> list[str]:
    out = []
    for path in (root / "out").glob("*"):
        data = path.read_bytes()
        if complete_end([data], path.suffix == ".csv") != len(data):
            out.append(f"{path.name} ends in a half-written row ({len(data)} bytes)")
    return out


def _schema(seed: int) -> str:
    return f"jt_disk_{os.getpid()}_{seed}"


def _seed(
    root: Path, models: Path, seed: int, sizes: tuple[int, int, int], template: Path | str
) -> tuple[str | None, str]:
    try:
        return _seed_body(root, models, seed, sizes, template)
    finally:
        _drop(template, seed)


def _drop(template: Path | str, seed: int) -> None:
    if not isinstance(template, Path):
        admin = create_engine(template)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{_schema(seed)}" CASCADE'))
        admin.dispose()


def _seed_body(
    root: Path, models: Path, seed: int, sizes: tuple[int, int, int], template: Path | str
) -> tuple[str | None, str]:
    """``sizes``: the empty store's, the export's and the largest file's of an undisturbed run.

    With a SQLite ``template`` the limit fills the store: a small one its WAL early, a large
    one lets the store grow first.  With a PostgreSQL store (its files are the server's) the
    limit starts at the deliveries and fills the export; the limited run makes one pass, the
    retries come after space returns.
    """
    rng = random.Random(seed)
    cfg, url = _setup(root, models, rng, seed, template)
    empty, export, largest = sizes
    export_only = not isinstance(template, Path)
    if export_only:
        limit = rng.randint(1, export)
    elif rng.random() < 0.5:
        limit = rng.randint(MIN_LIMIT, max(MIN_LIMIT + 1, 2 * export))
    else:
        limit = rng.randint(empty, largest)
    code, error = _run_child(cfg, limit, 0.0 if export_only else 0.3, at_delivery=export_only)
    if code not in (0, 3):
        return f"the limited run exited {code}: {error}", error
    if export_only and not error:
        failed = [
            d for d, e in rows_of(url, "SELECT id, last_error FROM deliveries") if e is not None
        ]
        error = f"{len(failed)} deliveries failed to write" if failed else ""
    archived = (root / "processed" / "leads.csv").exists()
    if archived:
        done = rows_of(url, "SELECT status, rows FROM files")
        if done != [("done", ROWS)]:
            return f"archived with the ledger at {done}", error
    torn = _torn(root) if (root / "out").exists() else []
    if torn:
        return f"after the limited run: {torn}", error
    # a lease the limited run took and could not give back (recording failed) runs out first
    code, again = _run_child(cfg, None, drain_wait_s=1.0)
    if code != 0:
        return f"the run after space returned exited {code}: {again}", error
    if not (root / "processed" / "leads.csv").exists():
        return "the drop was not archived after space returned", error
    r = reconciled(url)
    if not r.clean or r.expected != ROWS or r.in_flight_deliveries or r.dead_deliveries:
        return f"reconciliation: {r.as_dict()}", error
    ids = _export_ids(root)
    delivered = {
        d for d, s in rows_of(url, "SELECT id, status FROM deliveries") if s == "delivered"
    }
    if len(ids) != len(set(ids)) or set(ids) != delivered:
        return f"export has {len(ids)} rows ({len(set(ids))} ids) for {len(delivered)}", error
    return None, error


def _sizes(tmp_path: Path, models: Path, template: Path | str) -> tuple[int, int, int]:
    probe = tmp_path / "probe"
    cfg, _url = _setup(probe, models, random.Random(0), PROBE, template)
    try:
        code, error = _run_child(cfg, None)
    finally:
        _drop(template, PROBE)
    assert code == 0, error
    export = sum(p.stat().st_size for p in (probe / "out").glob("*"))
    empty = template.stat().st_size if isinstance(template, Path) else 0
    return empty, export, _largest_file(probe)


def _run_seeds(tmp_path: Path, models: Path, template: Path | str, seeds: range) -> None:
    sizes = _sizes(tmp_path, models, template)
    started = time.monotonic()
    results = map_seeds(_seed, [(tmp_path / f"s{s}", models, s, sizes, template) for s in seeds])
    problems = [f"seed {s}: {p}" for s, (p, _e) in zip(seeds, results, strict=True) if p]
    errors = [e for _p, e in results]
    assert not problems, "\n".join(problems)
    # the limit bit: most seeds' first run failed with a typed error
    assert sum(bool(e) for e in errors) >= len(seeds) // 3, errors
    assert time.monotonic() - started < 60 + len(seeds) * 4


# the kind's seeds are split between the two places a disk fills up (SEEDS in all)
def test_disk_full_under_the_store_of_a_file_drop(tmp_path: Path, models_dir: Path) -> None:
    template = tmp_path / "empty.db"
    Store.open(f"sqlite:///{template}").close()
    _run_seeds(tmp_path, models_dir, template, range(0, SEEDS, 2))


@pytest.mark.postgres
def test_disk_full_under_the_file_export(
    tmp_path: Path, models_dir: Path, pg_available: bool
) -> None:
    if not pg_available:
        pytest.skip("PostgreSQL not reachable (set JUNCTION_REQUIRE_PG=1 to make this a failure)")
    _run_seeds(tmp_path, models_dir, PG_URL, range(1, SEEDS, 2))
