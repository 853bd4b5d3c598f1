"""Instructions per row of the e2e path, counted by callgrind: a measure that does not drift.

``python -m bench e2e`` times the hub on this shared VM, where the same code's ratio moves by
±20 % from one run to the next.  This counts the CPU instructions instead (valgrind's callgrind,
deterministic to about ±1 %): the raw ``csv.DictReader`` loop, and the hub in one process
(``workers: 1``: the runner reads, maps, scores and writes its shares itself) without and with
encryption at rest, each over the same file.  Instrumentation is switched on only around the
measured call (``callgrind_control -i on``), so start-up, imports and compiling are left out.

The quotients printed are the instruction-count analogues of the e2e goals: raw ÷ hub (the
ratio, at one process; the timed ratio also pays for the second process's dispatch and waits)
and plain ÷ encrypted (the encryption overhead).  A few thousand rows already give stable counts
per row, but the per-value caches of the mapping are colder than over a long file: compare
counts of the same row count only.

Needs valgrind (``apt-get install valgrind``); CI runs it only tiny, in its test, to keep it
working.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import sys
from pathlib import Path

from bench.callgrind import MISSING, available, count, switch
from bench.e2e import CONFIG, DATA
from bench.procs import work_folder


def _child(kind: str, arg: str) -> None:
    """Run the measured part in this (valgrind'ed) process; print what it counted."""
    if kind == "raw":
        switch(True)
        n = 0
        with open(arg, newline="", encoding="utf-8") as f:
            for _ in csv.DictReader(f):
                n += 1
        switch(False)
        print(json.dumps({"rows": n}))
        return
    from junction.pipeline.hub import Hub

    hub = Hub.from_file(arg)
    try:
        hub.runner("bench")  # compile and load the model before the count starts
        switch(True)
        [summary] = hub.run_once()
        switch(False)
        counts = hub.store.counts()
    finally:
        hub.close()
    print(json.dumps({"rows": summary.read, "records": counts["records"]}))


def _count(kind: str, arg: str, work: Path) -> tuple[int, dict[str, int]]:
    """Instructions counted in a child running ``kind``, and what the child printed."""
    return count("bench.instructions", [kind, arg], work / kind, kind)


def run(*, rows: int, encrypt: bool, keep: bool) -> int:
    """Count and print instructions per row: raw, plain hub and (with ``encrypt``) encrypted."""
    if not available():
        print(MISSING)
        return 2
    from outbound.webhook.config import generate_secret
    from scoring.registry import ensure_default_model
    from scoring.synthetic import write_lead_csv

    DATA.mkdir(exist_ok=True)
    source = DATA / f"leads-{rows}.csv"
    if not source.exists():
        write_lead_csv(source, rows, seed=2026, messy=True)
    with work_folder("junction-instr-", keep=keep) as work:
        ensure_default_model(work / "models", name="lead-score")
        base = CONFIG.replace("{secret}", generate_secret()).replace(
            "    batch_size: 2000\n", "    batch_size: 2000\n    workers: 1\n"
        )
        kinds = [("plain", base)]
        if encrypt:
            os.environ["JUNCTION_BENCH_KEK"] = secrets.token_urlsafe(48)  # the child's
            kinds.append(("encrypted", base + "privacy:\n  kek: env:JUNCTION_BENCH_KEK\n"))
        raw_ir, raw = _count("raw", str(source), work)
        per_row = {"raw": raw_ir / raw["rows"]}
        print(f"file: {source.name} ({rows:,} rows), instructions counted by callgrind")
        print(f"{'raw csv.DictReader':<18} : {per_row['raw']:>10,.0f} per row")
        for kind, text in kinds:
            folder = work / kind
            (folder / "inbox").mkdir(parents=True)
            shutil.copy(source, folder / "inbox" / source.name)
            shutil.copytree(work / "models", folder / "models")
            config = folder / "junction.yaml"
            config.write_text(text.format(store=f"sqlite:///{folder / 'bench.db'}"))
            ir, got = _count(kind, str(config), folder)
            assert got["rows"] == rows, f"{kind}: read {got['rows']} of {rows} rows"
            per_row[kind] = ir / got["rows"]
            print(
                f"{'hub, ' + kind:<18} : {per_row[kind]:>10,.0f} per row  "
                f"(raw / hub {per_row['raw'] / per_row[kind]:.3f}; {got['records']:,} records)"
            )
        if encrypt:
            print(
                f"{'plain / encrypted':<18} : {per_row['plain'] / per_row['encrypted']:.3f}  "
                "(the encryption overhead by instructions; goal >= 0.8 on the timed ratio)"
            )
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit("run it as: python -m bench instructions [--rows N] [--encrypt]")
