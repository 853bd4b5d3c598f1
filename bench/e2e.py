"""End-to-end benchmark: a lead CSV through file → canonical → rules → score → route → outbox.

Numerator: the hub's rows/s (``Hub.run_once`` in a child process, so its peak RSS is its own).
Denominator: ``csv.DictReader`` iterating the same file, in the same run.  Ratio = hub ÷ raw.
"""

from __future__ import annotations

import csv
import multiprocessing as mp
import resource
import shutil
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from bench.procs import fresh_schema, work_folder

CONFIG = """\
store: "{store}"
models_dir: models
pipelines:
  bench:
    source: {{connector: csv_file, path: inbox/*.csv, settle_seconds: 0}}
    mapping: csv.lead
    batch_size: 2000
    rules:
      - {{name: has_email, expr: "lead.email != null"}}
    scoring: {{model: lead-score}}
    routes:
      - when: "score.value >= 0.5"
        to: [webhook.sales]
channels:
  webhook.sales: {{url: "http://127.0.0.1:9/never-called", secret: "{secret}"}}
"""

DATA = Path(__file__).parent / "data"


def raw_dictreader(path: Path) -> float:
    """Rows/s of csv.DictReader iterating every row of ``path``."""
    t0 = time.perf_counter()
    n = 0
    with path.open(newline="", encoding="utf-8") as f:
        for _ in csv.DictReader(f):
            n += 1
    return n / (time.perf_counter() - t0)


class _RssSampler(threading.Thread):
    """Samples the resident memory of this process and its workers (psutil), every 0.1 s.

    The workers are started before the clock, so the list of children is refreshed once a
    second (and when one ends) rather than at every sample.

    ``ru_maxrss`` is not used: Linux carries a parent's high-water mark across fork+exec, so a
    spawned process would report the memory its parent had.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.me = psutil.Process()
        self.main_mb = self.worker_mb = self.total_mb = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        children: list[psutil.Process] = []
        listed_at = 0.0
        while not self.stop.is_set():
            # listing children reads every process's /proc entry (~2.5 ms of this process's
            # CPU on a busy host): list them once a second, read the known ones' RSS each time
            if time.monotonic() - listed_at >= 1.0:
                try:
                    children = self.me.children(recursive=True)
                except psutil.Error:
                    continue
                listed_at = time.monotonic()
            try:
                main = self.me.memory_info().rss / 2**20
            except psutil.Error:
                continue
            kids = []
            for c in children:
                try:
                    kids.append(c.memory_info().rss / 2**20)
                except psutil.Error:  # ended since it was listed
                    listed_at = 0.0
            self.main_mb = max(self.main_mb, main)
            self.worker_mb = max([self.worker_mb, *kids])
            self.total_mb = max(self.total_mb, main + sum(kids))
            self.stop.wait(0.1)


def _hub_child(config: str, out: mp.Queue) -> None:  # type: ignore[type-arg]
    from junction.pipeline.hub import Hub

    sampler = _RssSampler()
    sampler.start()
    hub = Hub.from_file(config)
    try:
        runner = hub.runner("bench")  # compile and load the model before the clock starts
        t0 = time.perf_counter()
        # the worker processes compile and load the same; a running hub keeps them between runs
        [stream] = runner.connector.discover()
        workers = runner.start_workers(for_stream=stream.name)
        startup = time.perf_counter() - t0
        t0 = time.perf_counter()
        [summary] = hub.run_once()
        seconds = time.perf_counter() - t0
        counts = hub.store.counts()
    finally:
        hub.close()
    sampler.stop.set()
    sampler.join()
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # worker processes, reaped at close()
    out.put(
        {
            "seconds": seconds,
            "startup": startup,
            "workers": workers,
            "read": summary.read,
            "counts": counts,
            "peak_mb": sampler.main_mb,
            "worker_peak_mb": sampler.worker_mb,
            "total_peak_mb": sampler.total_mb,
            "cpu_main_s": me.ru_utime + me.ru_stime,
            "cpu_workers_s": kids.ru_utime + kids.ru_stime,
        }
    )


def _measure(work: Path, source: Path, url: str, config: str) -> dict:  # type: ignore[type-arg]
    """One hub run over a fresh copy of ``source`` in ``work``; the child's figures."""
    work.mkdir(parents=True)
    (work / "inbox").mkdir()
    shutil.copy(source, work / "inbox" / source.name)
    shutil.copytree(work.parent / "models", work / "models")
    (work / "junction.yaml").write_text(config.format(store=url))
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    p = ctx.Process(target=_hub_child, args=(str(work / "junction.yaml"), q))
    p.start()
    result: dict = q.get()  # type: ignore[type-arg]
    p.join()
    return result


def _report(label: str, result: dict, raw_rate: float, rows: int) -> float:  # type: ignore[type-arg]
    """Print one hub run's figures; return its ratio to raw."""
    hub_rate = result["read"] / result["seconds"]
    c = result["counts"]
    ratio = hub_rate / raw_rate
    print(f"{label}")
    print(
        f"  hub file→canonical→score→outbox: {hub_rate:>10,.0f} rows/s ({result['seconds']:.1f}s)"
    )
    print(f"  ratio hub / raw         : {ratio:.3f}  (goal >= 0.25)")
    if result["workers"]:
        cold = result["read"] / (result["seconds"] + result["startup"])
        print(
            f"  worker start-up         : {result['startup']:.1f}s for {result['workers']} "
            f"(not timed above; with it: {cold:,.0f} rows/s, ratio {cold / raw_rate:.3f})"
        )
    print(f"  hub peak RSS            : {result['peak_mb']:.0f} MB  (goal < 300 MB)")
    if result["cpu_workers_s"]:
        print(f"  largest worker peak RSS : {result['worker_peak_mb']:.0f} MB")
        print(f"  hub + workers peak RSS  : {result['total_peak_mb']:.0f} MB")
    cpu = result["cpu_main_s"] + result["cpu_workers_s"]
    print(
        f"  CPU                     : main {result['cpu_main_s']:.1f}s + workers "
        f"{result['cpu_workers_s']:.1f}s = {cpu / result['read'] * 1e6:.1f} µs per row"
    )
    print(
        f"  records {c['records']:,}, quarantined {c['quarantined']:,}, scored {c['scored']:,}, "
        f"outbox {c['deliveries_pending']:,}"
    )
    assert c["records"] + c["quarantined"] == rows, "rows were lost"
    return ratio


def _median_run(tries: list[tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    """The run with the median rate (the lower middle one of an even count)."""
    ordered = sorted(tries, key=lambda t: t[1]["read"] / t[1]["seconds"])
    return ordered[(len(ordered) - 1) // 2]


def run(
    *,
    rows: int,
    store: str | None,
    keep: bool,
    encrypt: bool = False,
    repeat: int = 1,
    figures: dict[str, Any] | None = None,
) -> int:
    """Run the benchmark; with ``encrypt``, the hub runs twice (plain, then with encryption at
    rest on) against the same raw baseline, and the quotient of the two ratios is printed.

    ``repeat`` runs the hub that many times per kind, alternating plain and encrypted, and
    reports each kind's median run: on a shared machine the load drifts between two runs, and
    alternating spreads the drift over both kinds.  ``figures``, when given, receives the
    figures as data."""
    import os
    import secrets

    from outbound.webhook.config import generate_secret
    from scoring.registry import ensure_default_model
    from scoring.synthetic import write_lead_csv

    DATA.mkdir(exist_ok=True)
    source = DATA / f"leads-{rows}.csv"
    if not source.exists():
        t0 = time.perf_counter()
        write_lead_csv(source, rows, seed=2026, messy=True)
        print(f"generated {source} in {time.perf_counter() - t0:.1f}s")
    size_mb = source.stat().st_size / 1e6

    with work_folder("junction-bench-", keep=keep) as work:
        ensure_default_model(work / "models", name="lead-score")
        config = CONFIG.replace("{secret}", generate_secret())
        runs = [("plain", config, store)]
        if encrypt:
            if store is not None and not store.startswith("sqlite"):
                raise SystemExit("--encrypt needs a fresh store per run: use the SQLite default")
            os.environ["JUNCTION_BENCH_KEK"] = secrets.token_urlsafe(48)  # the spawned children's
            runs.append(("encrypted", config + "privacy:\n  kek: env:JUNCTION_BENCH_KEK\n", None))
        raw = [raw_dictreader(source) for _ in range(3)]
        measured: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for turn in range(max(1, repeat)):
            for label, text, url in runs:
                folder = work / f"{label}{turn}"
                # each run on an empty store: one that took the file already would skip it
                with fresh_schema(
                    url or f"sqlite:///{folder / 'bench.db'}", f"bench_e2e_{secrets.token_hex(4)}"
                ) as own:
                    measured.setdefault(label, []).append(
                        (url or own, _measure(folder, source, own, text))
                    )
                raw.append(raw_dictreader(source))
        results = [(label, *_median_run(tries)) for label, tries in measured.items()]
        raw_rate = statistics.median(raw)
        print(f"file: {source.name} ({rows:,} rows, {size_mb:.0f} MB)")
        if repeat > 1:
            print(f"each kind ran {repeat} times, alternating; its median run is reported")
        print(f"raw csv.DictReader        : {raw_rate:>10,.0f} rows/s (median of {len(raw)})")
        ratios = {}
        for label, url, result in results:
            ratios[label] = _report(f"{label} ({url.split(':')[0]})", result, raw_rate, rows)
        if encrypt:
            from junction.store.batch_seal import SEALER

            print(
                f"encrypted / plain ratio   : {ratios['encrypted'] / ratios['plain']:.3f}  "
                f"(goal >= 0.8; sealed by {SEALER})"
            )
        if figures is not None:
            figures.update(rows=rows, raw_rows_s=raw_rate, ratios=ratios)
            figures["runs"] = {
                label: {**result, "hub_rows_s": result["read"] / result["seconds"]}
                for label, _url, result in results
            }
    return 0
