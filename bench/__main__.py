"""``python -m bench <name>``: run a benchmark (``e2e``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    sub = parser.add_subparsers(dest="name", required=True)
    e2e = sub.add_parser("e2e", help="file → canonical → score → outbox vs raw csv.DictReader")
    e2e.add_argument("--rows", type=int, default=1_000_000)
    e2e.add_argument("--store", default=None, help="store URL (default: SQLite in a temp dir)")
    e2e.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    if args.name == "e2e":
        from bench.e2e import run

        return run(rows=args.rows, store=args.store, keep=args.keep)
    return 2


if __name__ == "__main__":
    sys.exit(main())
