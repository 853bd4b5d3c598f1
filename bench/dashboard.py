"""``python -m bench dashboard``: every dashboard page's render time with N records in the store.

Fills a store (PostgreSQL by ``--store``, with a fresh schema dropped afterwards, or SQLite in a
temp dir) with ``--records`` records shaped like pipeline output — two pipelines over 30 days,
scores (two A/B variants), deliveries with attempts (delivered, dead, pending), quarantine
entries (open, replayed, discarded) and hourly runs — bulk loaded (COPY on PostgreSQL,
``executemany`` in large transactions on SQLite).  Then it serves the API app in-process
(uvicorn on 127.0.0.1), signs in to the dashboard and loads every page: *cold* is the first load
after the dashboard's aggregate cache is emptied (as after a start), *warm* a repeat within the
cache's 10 s.  It prints p50 and max per page against the 300 ms goal (issue 10).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from junction.store.outbox import ATTEMPT_COLS
from junction.store.repo import RECORD_COLS, SCORE_COLS

GOAL_MS = 300.0
DAYS = 30
PIPELINES = (("leads", 0.8), ("partners", 0.2))
CONFIG = """\
store: "{store}"
models_dir: {models}
pipelines:
  leads:
    source: {{connector: csv_file, path: inbox/leads/*.csv, settle_seconds: 0}}
    mapping: csv.lead
    workers: 0
    scoring: {{model: lead-score}}
    routes:
      - when: "score.value >= 0.5"
        to: [webhook.sales]
  partners:
    source: {{connector: csv_file, path: inbox/partners/*.csv, settle_seconds: 0}}
    mapping: csv.lead
    workers: 0
    scoring: {{model: lead-score}}
    routes:
      - when: "score.value >= 0.5"
        to: [webhook.sales, webhook.ops]
channels:
  webhook.sales: {{url: "http://127.0.0.1:9/sales/", secret: "{secret}", timeout_s: 2}}
  webhook.ops: {{url: "http://127.0.0.1:9/ops/", secret: "{secret}", timeout_s: 2}}
api:
  signing_key: "bench-dashboard-signing-key-0123456789abcdef"
"""
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
_TOKEN = re.compile(r'name="token" value="([^"]+)"')
QUARANTINE_CODES = (
    ("normalize", "MappingError", "missing_field", "lead_id is required (csv.lead line 4)"),
    ("normalize", "MappingError", "bad_date", "created_at: '31.02.2026' is not a date"),
    ("validate", "RuleError", "rule_failed", "rule has_email failed: lead.email is null"),
    ("validate", "ValidationError", "bad_email", "email: 'ann@' is not an email address"),
    ("score", "ScoringError", "model_unavailable", "model lead-score has no production version"),
)


# --- data -----------------------------------------------------------------------------------------


def _pipeline(rng: random.Random) -> str:
    return PIPELINES[0][0] if rng.random() < PIPELINES[0][1] else PIPELINES[1][0]


def _payload(i: int, rng: random.Random) -> str:
    return json.dumps(
        {
            "lead_id": f"L-{i:08d}",
            "email": f"person{i}@example.com",
            "first_name": "Ann",
            "last_name": "Lee",
            "phone": f"+1415555{i % 10000:04d}",
            "company": f"Company {i % 5000}",
            "title": "VP Sales",
            "industry": rng.choice(("software", "retail", "finance", "health")),
            "country": rng.choice(("US", "DE", "FR", "GB")),
            "employees": rng.randint(1, 5000),
            "annual_revenue": rng.randint(10_000, 50_000_000),
            "page_views": rng.randint(0, 80),
            "visits": rng.randint(0, 20),
            "email_opens": rng.randint(0, 15),
        },
        separators=(",", ":"),
    )


class Rows:
    """Every table's rows for ``n`` records, generated lazily in time order."""

    def __init__(self, n: int, now: float, seed: int = 7) -> None:
        self.n = n
        self.now = now
        self.start = now - DAYS * 86400
        self.seed = seed
        self.delivery_ids: list[tuple[str, str]] = []  # sample for detail pages
        self.record_ids: list[tuple[str, str]] = []
        self.quarantine_n = 0

    def at(self, i: int) -> float:
        return self.start + (i + 0.5) * (DAYS * 86400) / self.n

    def all(self) -> dict[str, Iterator[tuple[Any, ...]]]:
        return {
            "records": self._records(),
            "scores": self._scores(),
            "deliveries": self._deliveries(),
            "attempts": self._attempts(),
            "quarantine": self._quarantine(),
            "runs": self._runs(),
        }

    def _rid(self, i: int, rng: random.Random) -> tuple[str, str]:
        p = _pipeline(rng)
        return p, f"{p}:{i // 10000:016x}:{i % 10000}"

    def _records(self) -> Iterator[tuple[Any, ...]]:
        rng = random.Random(self.seed)
        for i in range(self.n):
            p, rid = self._rid(i, rng)
            prov = f'{{"file":"inbox/{p}/part-{i // 10000}.csv","row":{i % 10000}}}'
            if i % 50_000 == 0:
                self.record_ids.append((p, rid))
            yield (
                rid,
                p,
                "lead",
                "csv",
                f"L-{i:08d}",
                "1",
                _payload(i, rng),
                prov,
                1 + i // 5000,
                self.at(i),
            )

    def _scored(self) -> Iterator[tuple[int, str, str, float, random.Random]]:
        """(i, pipeline, record id, value, rng) of the 95% of records that were scored."""
        rng = random.Random(self.seed + 1)
        ids = random.Random(self.seed)
        for i in range(self.n):
            p, rid = self._rid(i, ids)
            _payload(i, ids)  # keep the id stream in step with _records
            if rng.random() < 0.95:
                yield i, p, rid, rng.betavariate(2, 3), rng

    def _scores(self) -> Iterator[tuple[Any, ...]]:
        for i, _p, rid, value, rng in self._scored():
            grade = "A" if value >= 0.75 else "B" if value >= 0.5 else "C" if value >= 0.25 else "D"
            variant = "challenger" if rng.random() < 0.1 else "control"
            version = "2" if variant == "challenger" else "1"
            factors = '[["page_views",0.21],["email_opens",0.12],["employees",-0.04]]'
            yield (rid, version, "lead-score", value, grade, factors, variant, self.at(i) + 0.5)

    def _deliveries_of(self) -> Iterator[tuple[Any, ...]]:
        for i, p, rid, value, rng in self._scored():
            if value < 0.5:
                continue
            channels = ("webhook.sales",) if p == "leads" else ("webhook.sales", "webhook.ops")
            for ch in channels:
                t0 = self.at(i) + 1.0
                roll = rng.random()
                age = self.now - t0
                if age < 3600 and roll < 0.3:
                    status, attempts, done = "pending", int(roll * 10), None
                elif roll < 0.03:
                    status, attempts, done = "dead", 5, None
                else:
                    status, attempts, done = "delivered", 1 if roll < 0.9 else 2, t0 + 0.2
                yield (i, p, rid, ch, status, attempts, t0, done)

    def _deliveries(self) -> Iterator[tuple[Any, ...]]:
        for i, p, rid, ch, status, attempts, t0, done in self._deliveries_of():
            did = f"{rid}:{ch}"
            if i % 50_000 < 2:
                self.delivery_ids.append((status, did))
            body = f'{{"type":"lead.scored","record_id":"{rid}","score":0.7}}'
            last = {"delivered": 200, "dead": 500}.get(status)
            yield (
                did,
                rid,
                p,
                ch,
                "lead.scored",
                body,
                status,
                attempts,
                t0 if status != "pending" else t0 + 30,
                last,
                "HTTP 500" if status == "dead" else None,
                t0,
                done,
            )

    def _attempts(self) -> Iterator[tuple[Any, ...]]:
        for _i, _p, rid, ch, status, attempts, t0, _done in self._deliveries_of():
            did = f"{rid}:{ch}"
            for k in range(attempts):
                last = k == attempts - 1
                code, outcome = (
                    (200, "delivered") if status == "delivered" and last else (500, "retry")
                )
                if status == "dead" and last:
                    outcome = "failed"
                yield (did, k + 1, t0 + k * 30, 35.0 + k, code, outcome, None)

    def _quarantine(self) -> Iterator[tuple[Any, ...]]:
        rng = random.Random(self.seed + 2)
        n = max(10, self.n // 50)  # 2% of records
        self.quarantine_n = n
        for j in range(n):
            i = j * 50 + 25
            stage, etype, code, msg = rng.choice(QUARANTINE_CODES)
            p = _pipeline(rng)
            roll = rng.random()
            status = "open" if roll < 0.7 else "replayed" if roll < 0.95 else "discarded"
            key = f"{p}:q{i // 10000:015x}:{i % 10000}" + ("" if status == "open" else f"#{j}")
            ctx = '{"field":"lead_id","value":null}'
            raw = f"L-{i:08d},Ann,Lee,person{i}@example.com".encode()
            prov = f'{{"file":"inbox/{p}/part-{i // 10000}.csv","row":{i % 10000}}}'
            created = self.at(i)
            resolved = None if status == "open" else created + 3600
            yield (p, stage, key, etype, code, msg, ctx, raw, prov, status, created, resolved)

    def _runs(self) -> Iterator[tuple[Any, ...]]:
        for h in range(DAYS * 24):
            for p, share in PIPELINES:
                t0 = self.start + h * 3600
                per = int(self.n * share / (DAYS * 24))
                counts = json.dumps({"read": per, "stored": per, "quarantined": per // 50})
                yield (p, "succeeded", t0, t0 + 42.0, counts, None)


COLUMNS = {
    "records": RECORD_COLS,
    "scores": SCORE_COLS,
    "deliveries": (
        "id",
        "record_id",
        "pipeline",
        "channel",
        "event_type",
        "payload",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status",
        "last_error",
        "created_at",
        "delivered_at",
    ),
    "attempts": ATTEMPT_COLS,
    "quarantine": (
        "pipeline",
        "stage",
        "record_key",
        "error_type",
        "error_code",
        "message",
        "context",
        "payload",
        "provenance",
        "status",
        "created_at",
        "resolved_at",
    ),
    "runs": ("pipeline", "status", "started_at", "finished_at", "counts", "error"),
}


def load(engine: Any, rows: Rows) -> dict[str, int]:
    """Bulk-load every table; returns rows per table."""
    counts: dict[str, int] = {}
    pg = engine.dialect.name == "postgresql"
    for table, it in rows.all().items():
        cols = COLUMNS[table]
        t0 = time.perf_counter()
        n = 0
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            if pg:
                with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                    for row in it:
                        copy.write_row(row)
                        n += 1
            else:
                marks = ", ".join("?" * len(cols))
                sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})"
                batch: list[tuple[Any, ...]] = []
                for row in it:
                    batch.append(row)
                    if len(batch) >= 50_000:
                        cur.executemany(sql, batch)
                        n += len(batch)
                        batch.clear()
                if batch:
                    cur.executemany(sql, batch)
                    n += len(batch)
            raw.commit()
        finally:
            raw.close()
        counts[table] = n
        print(f"  loaded {table:<11} {n:>9,} rows in {time.perf_counter() - t0:6.1f} s", flush=True)
    return counts


VACUUM = {name: f"VACUUM ANALYZE {name}" for name in COLUMNS}


def settle(engine: Any) -> None:
    """What autovacuum does on a live store: statistics and the visibility map."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in COLUMNS:  # this schema's tables only (names from the search path)
                conn.exec_driver_sql(VACUUM[table])
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


# --- serving and timing ---------------------------------------------------------------------------


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """``app`` under uvicorn on 127.0.0.1 in a thread; yields the base URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def sign_in(http: httpx.Client, client_id: str, secret: str) -> None:
    """Sign in to the dashboard (the cookie jar keeps the session)."""
    form = http.get("/ui/login")
    token = _TOKEN.search(form.text)
    if token is None:
        raise RuntimeError("the sign-in form has no token")
    data = {"client_id": client_id, "secret": secret, "token": token.group(1), "next": "/ui/"}
    r = http.post("/ui/login", data=data)
    if r.status_code != 303:
        raise RuntimeError(f"sign-in failed: {r.status_code}")


def pages(rows: Rows, qid: int, version: str) -> list[tuple[str, str]]:
    """(label, path) of every dashboard page, with real ids from the loaded data."""
    p, rid = rows.record_ids[len(rows.record_ids) // 2]
    did = next((d for s, d in rows.delivery_ids if s == "delivered"), rows.delivery_ids[0][1])
    key = "L-" + rid.rsplit(":", 1)[0][-4:]  # any key: a miss is a search too
    i = rows.n // 2
    return [
        ("overview (24 h)", "/ui/"),
        ("overview (7 days)", "/ui/?hours=168"),
        ("pipelines", "/ui/pipelines"),
        ("pipeline leads", "/ui/pipelines/leads"),
        ("pipeline partners", "/ui/pipelines/partners"),
        ("records (form)", "/ui/records"),
        ("records by key", f"/ui/records?key=L-{i:08d}"),
        ("records of a pipeline", "/ui/records?pipeline=leads"),
        ("record journey", f"/ui/records/{p}/{httpx.URL(rid).raw_path.decode()}"),
        ("quarantine", "/ui/quarantine"),
        ("quarantine group", "/ui/quarantine?stage=normalize&code=missing_field"),
        ("quarantine entry", f"/ui/quarantine/{qid}"),
        ("deliveries", "/ui/deliveries"),
        ("deliveries dead", "/ui/deliveries?status=dead"),
        ("delivery", f"/ui/delivery?id={httpx.URL(did).raw_path.decode()}"),
        ("models", "/ui/models"),
        ("model version", f"/ui/models/lead-score/versions/{version}"),
        ("not found", f"/ui/{key}-nothing"),
    ]


def measure(
    http: httpx.Client, ctx: Any, paths: Sequence[tuple[str, str]], cold: int, warm: int
) -> list[tuple[str, list[float], list[float]]]:
    """Cold (cache emptied first) and warm load times in ms per page."""
    out = []
    for label, path in paths:
        colds: list[float] = []
        warms: list[float] = []
        for _ in range(cold):
            ctx.extras.pop("dashboard.cache", None)
            colds.append(_get(http, path))
        for _ in range(warm):
            warms.append(_get(http, path))
        out.append((label, colds, warms))
        print(f"  {label:<24} cold {max(colds):8.1f} ms  warm {max(warms):8.1f} ms", flush=True)
    return out


def _get(http: httpx.Client, path: str) -> float:
    t0 = time.perf_counter()
    r = http.get(path)
    ms = (time.perf_counter() - t0) * 1000
    if r.status_code not in (200, 404):
        raise RuntimeError(f"GET {path}: {r.status_code} {r.text[:300]}")
    return ms


def report(results: list[tuple[str, list[float], list[float]]], n: int, backend: str) -> bool:
    """Print the table; True when every page met the goal (cold and warm p50 under it)."""
    print(f"\ndashboard pages, {n:,} records, {backend} (goal: every page under {GOAL_MS:.0f} ms)")
    print(f"{'page':<24} {'cold p50':>9} {'cold max':>9} {'warm p50':>9} {'warm max':>9}  goal")
    ok = True
    for label, colds, warms in results:
        met = max(statistics.median(colds), statistics.median(warms)) < GOAL_MS
        ok &= met
        print(
            f"{label:<24} {statistics.median(colds):9.1f} {max(colds):9.1f} "
            f"{statistics.median(warms):9.1f} {max(warms):9.1f}  {'met' if met else 'NOT met'}"
        )
    print(f"every page under {GOAL_MS:.0f} ms: {'yes' if ok else 'no'}")
    return ok


# --- run ------------------------------------------------------------------------------------------


@contextmanager
def _pg_schema(url: str, schema: str | None) -> Iterator[tuple[str, bool]]:
    """A PostgreSQL URL on ``schema`` (fresh unless named and kept); yields (url, existed)."""
    from sqlalchemy import create_engine, text

    name = schema or f"bench_dash_{uuid.uuid4().hex[:10]}"
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise SystemExit("--schema: lower-case letters, digits and _ only")
    admin = create_engine(url)
    with admin.begin() as conn:
        existed = bool(
            conn.execute(
                text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :s"),
                {"s": name},
            ).first()
        )
        if not existed:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))  # name checked above
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{name}", existed
    finally:
        if schema is None:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


def run(
    *,
    records: int,
    store: str | None,
    schema: str | None = None,
    cold: int = 3,
    warm: int = 5,
    keep: bool = False,
) -> int:
    """Load (unless a kept ``schema`` already holds data), serve, time every page, report."""
    from junction.api.app import create_app
    from junction.api.context import ApiContext
    from junction.pipeline.config import load_config
    from junction.pipeline.hub import Hub
    from junction.store.clients import ClientStore
    from scoring.registry import ensure_default_model, latest_version

    work = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    try:
        models = work / "models"
        ensure_default_model(models, name="lead-score")
        version = latest_version(models, "lead-score") or "1"
        with _store_url(store, schema, work) as (url, existed):
            cfg_path = work / "junction.yaml"
            cfg_path.write_text(CONFIG.format(store=url, models=models, secret=SECRET))
            cfg = load_config(cfg_path)
            hub = Hub(cfg)
            try:
                engine = hub.store.engine
                backend = engine.dialect.name
                rows = Rows(records, time.time())
                if existed:
                    print(f"reusing schema {schema} (its data)", flush=True)
                    for _ in rows.all()["records"]:
                        pass
                    for _ in rows.all()["deliveries"]:
                        pass
                else:
                    print(f"loading {records:,} records into {backend}", flush=True)
                    load(engine, rows)
                t0 = time.perf_counter()
                settle(engine)
                print(f"  vacuum/analyze {time.perf_counter() - t0:.1f} s", flush=True)
                qid = _open_quarantine_id(hub.store)
                client, secret = ClientStore(hub.store).create("bench-dashboard", ["admin"])
                ctx = ApiContext(cfg=cfg, hub=hub, config_path=cfg_path)
                app = create_app(ctx)
                with (
                    serve(app) as base,
                    httpx.Client(base_url=base, timeout=120, headers={"Accept": "text/html"}) as h,
                ):
                    sign_in(h, client.id, secret)
                    results = measure(h, ctx, pages(rows, qid, version), cold, warm)
                ok = report(results, records, backend)
            finally:
                hub.close()
        return 0 if ok else 1
    finally:
        if keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _open_quarantine_id(store: Any) -> int:
    from sqlalchemy import func, select

    from junction.store import tables as t

    with store.begin() as conn:
        found = conn.execute(
            select(func.max(t.quarantine.c.id)).where(t.quarantine.c.status == "open")
        ).scalar()
    return int(found or 1)


@contextmanager
def _store_url(store: str | None, schema: str | None, work: Path) -> Iterator[tuple[str, bool]]:
    if store is None or store.startswith("sqlite"):
        yield store or f"sqlite:///{work / 'junction.db'}", False
        return
    with _pg_schema(store, schema) as found:
        yield found


def add_parser(sub: Any) -> None:
    """The ``dashboard`` subcommand of ``python -m bench``."""
    p = sub.add_parser("dashboard", help="every dashboard page's render time with N records")
    _arguments(p)


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument(
        "--store",
        default=None,
        help="store URL, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test "
        "(a fresh schema, dropped after); default SQLite in a temp dir",
    )
    p.add_argument(
        "--schema", default=None, help="PostgreSQL: keep and reuse this schema (loads once)"
    )
    p.add_argument("--cold", type=int, default=3, help="cold loads per page")
    p.add_argument("--warm", type=int, default=5, help="warm loads per page")
    p.add_argument("--keep", action="store_true", help="keep the work folder")


def run_args(args: argparse.Namespace) -> int:
    """Run from parsed arguments."""
    return run(
        records=args.records,
        store=args.store,
        schema=args.schema,
        cold=args.cold,
        warm=args.warm,
        keep=args.keep,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.dashboard``."""
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard")
    _arguments(parser)
    return run_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
