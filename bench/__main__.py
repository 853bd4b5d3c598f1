"""``python -m bench <name>``: run a benchmark.

Benchmarks: ``e2e`` (and ``instructions``: its instruction counts, by callgrind), ``kafka``
(and ``stage-instructions``: a stage worker's batch work counted by callgrind), ``api``,
``crm``, ``erp``, ``deliver``, ``score``, ``dashboard``, ``soak`` (mixed traffic and
faults, reconciled); ``all`` runs every one and writes one Markdown report (``bench/all.py``).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    sub = parser.add_subparsers(dest="name", required=True)
    e2e = sub.add_parser("e2e", help="file → canonical → score → outbox vs raw csv.DictReader")
    e2e.add_argument("--rows", type=int, default=1_000_000)
    e2e.add_argument(
        "--store",
        default=None,
        help="store URL (default: SQLite in a temp dir; PostgreSQL: a fresh schema a run)",
    )
    e2e.add_argument("--keep", action="store_true", help="keep the work folder")
    e2e.add_argument(
        "--encrypt", action="store_true", help="also run with encryption at rest; print both"
    )
    e2e.add_argument(
        "--repeat", type=int, default=1, help="runs per kind, alternating; medians reported"
    )
    ins = sub.add_parser(
        "instructions", help="instructions per row of e2e (callgrind): raw, plain, encrypted"
    )
    ins.add_argument("--rows", type=int, default=20_000)
    ins.add_argument("--encrypt", action="store_true", help="also count the encrypted hub")
    ins.add_argument("--keep", action="store_true", help="keep the work folder")
    sti = sub.add_parser(
        "stage-instructions",
        help="instructions per record of a stage worker's batch work, by phase (callgrind)",
    )
    sti.add_argument("--roles", default="score", help="score, or normalize,score")
    sti.add_argument("--records", type=int, default=5_000, help="records counted")
    sti.add_argument("--warm", type=int, default=2_000, help="records run first, uncounted")
    sti.add_argument("--keep", action="store_true", help="keep the work folder")
    api = sub.add_parser("api", help="POST /score-lead vs a naive sklearn endpoint (open loop)")
    api.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    api.add_argument("--concurrency", type=int, default=32, help="closed-loop connections")
    api.add_argument("--repeat", type=int, default=3, help="max-throughput runs (median)")
    api.add_argument("--keep", action="store_true", help="keep the work folder")
    crm = sub.add_parser("crm", help="initial sync from each CRM fake vs the raw SDK")
    crm.add_argument("--records", type=int, default=100_000)
    crm.add_argument(
        "--systems", default="salesforce,salesforce-bulk,hubspot", help="comma-separated"
    )
    crm.add_argument("--keep", action="store_true", help="keep the work folder")
    erp = sub.add_parser("erp", help="CommerceML import and ODBC reads vs raw lxml and pyodbc")
    erp.add_argument("--products", type=int, default=200_000)
    erp.add_argument("--rows", type=int, default=1_000_000)
    erp.add_argument("--parts", default="commerceml,odbc", help="comma-separated")
    dlv = sub.add_parser("deliver", help="outbox → signed webhooks vs raw aiohttp, same receiver")
    dlv.add_argument("--deliveries", type=int, default=20_000)
    dlv.add_argument("--endpoints", type=int, default=1, help="webhook channels to spread over")
    dlv.add_argument("--concurrency", type=int, default=50, help="requests in flight (both)")
    dlv.add_argument("--store", default=None, help="store URL (default: SQLite in a temp dir)")
    dlv.add_argument("--uvloop", action="store_true", help="run both clients on uvloop")
    dlv.add_argument("--profile", default=None, help="write a cProfile of the hub run here")
    dlv.add_argument("--keep", action="store_true", help="keep the work folder")
    sc = sub.add_parser("score", help="compiled LR and trees vs raw sklearn predict_proba")
    sc.add_argument("--rows", type=int, default=20_000, help="synthetic training leads")
    sc.add_argument("--batch", type=int, default=10_000)
    sc.add_argument("--single", type=int, default=2_000, help="single-row calls (ours)")
    sc.add_argument("--repeat", type=int, default=5, help="batch runs (median)")
    from bench.kafka import add_parser as add_kafka

    add_kafka(sub)
    from bench.dashboard import add_parser as add_dashboard

    add_dashboard(sub)
    from bench.soak import add_parser as add_soak

    add_soak(sub)
    every = sub.add_parser("all", help="every benchmark, one Markdown report")
    every.add_argument("--out", default="docs/bench-report.md", help="the report's path")
    size = every.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="tiny sizes (seconds a bench)")
    size.add_argument("--full", action="store_true", help="each bench's own default size")
    every.add_argument("--only", default=None, help="comma-separated benches (default: all)")
    args = parser.parse_args(argv)
    from bench.procs import precompile

    precompile()  # the spawned processes start as a deployed hub's do
    if args.name == "dashboard":
        from bench.dashboard import run_args as run_dashboard

        return run_dashboard(args)
    if args.name == "all":
        from pathlib import Path

        from bench.all import run as run_all

        mode = "quick" if args.quick else "full" if args.full else "default"
        only = args.only.split(",") if args.only else None
        return run_all(mode=mode, out=Path(args.out), only=only)
    if args.name == "soak":
        from bench.soak import run_args as run_soak

        return run_soak(args)
    if args.name == "kafka":
        from bench.kafka import run_args

        return run_args(args)
    if args.name == "score":
        from bench.score import run as run_score

        return run_score(rows=args.rows, batch=args.batch, single=args.single, repeat=args.repeat)
    if args.name == "deliver":
        from bench.deliver import run as run_deliver

        return run_deliver(
            deliveries=args.deliveries,
            endpoints=args.endpoints,
            concurrency=args.concurrency,
            store=args.store,
            use_uvloop=args.uvloop,
            profile=args.profile,
            keep=args.keep,
        )
    if args.name == "erp":
        from bench.erp import run as run_erp

        return run_erp(products=args.products, rows=args.rows, parts=args.parts.split(","))
    if args.name == "crm":
        from bench.crm import SYSTEMS
        from bench.crm import run as run_crm

        wanted = [s for s in args.systems.split(",") if s in SYSTEMS]
        return run_crm(records=args.records, systems=wanted, keep=args.keep)
    if args.name == "api":
        from bench.api import run as run_api

        return run_api(
            seconds=args.seconds, concurrency=args.concurrency, repeat=args.repeat, keep=args.keep
        )
    if args.name == "stage-instructions":
        from bench.stage_instructions import run as run_stage_instructions

        return run_stage_instructions(
            roles=args.roles, records=args.records, warm=args.warm, keep=args.keep
        )
    if args.name == "instructions":
        from bench.instructions import run as run_instructions

        return run_instructions(rows=args.rows, encrypt=args.encrypt, keep=args.keep)
    if args.name == "e2e":
        from bench.e2e import run

        return run(
            rows=args.rows,
            store=args.store,
            keep=args.keep,
            encrypt=args.encrypt,
            repeat=args.repeat,
        )
    return 2


if __name__ == "__main__":
    sys.exit(main())
