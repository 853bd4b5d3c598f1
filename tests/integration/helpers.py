"""Helpers for pipeline integration tests: configs, file drops, counting."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, text

from junction.store import tables as t
from junction.store.repo import Store

CONFIG = """\
store: "{store}"
models_dir: {models}
pipelines:
  leads:
    source:
      connector: csv_file
      path: inbox/*.csv
      settle_seconds: 0
    mapping: csv.lead
    batch_size: {batch}
    workers: {workers}
    rules:
      - {{name: has_email, expr: "lead.email != null"}}
    scoring: {{model: lead-score}}
    routes:
      - when: "score.value >= 0.5"
        to: [webhook.sales]
      - otherwise: [webhook.nurture]
channels:
  webhook.sales: {{url: "{url}/sales", secret: "{secret}", timeout_s: 5}}
  webhook.nurture: {{url: "{url}/nurture", secret: "{secret}", timeout_s: 5}}
delivery:
  schedule_s: {schedule}
  lease_s: {lease}
"""


def write_config(
    root: Path,
    *,
    store: str,
    url: str,
    secret: str,
    models: Path,
    batch: int = 500,
    schedule: str = "[0.05, 0.1, 0.2]",
    lease: float = 30,
    workers: int | str = 0,
) -> Path:
    (root / "inbox").mkdir(parents=True, exist_ok=True)
    cfg = root / "junction.yaml"
    cfg.write_text(
        CONFIG.format(
            store=store,
            models=models,
            batch=batch,
            url=url.rstrip("/"),
            secret=secret,
            schedule=schedule,
            lease=lease,
            workers=workers,
        )
    )
    return cfg


def scalar(store_url: str, sql: str) -> int:
    eng = create_engine(store_url)
    try:
        with eng.connect() as conn:
            return int(conn.execute(text(sql)).scalar() or 0)
    finally:
        eng.dispose()


@contextmanager
def records_held(store_url: str) -> Iterator[Callable[[], int]]:
    """Keep new records from being stored while the block runs; yield a count of those stored.

    SQLite: the database's write lock (``BEGIN IMMEDIATE``; readers go on under WAL, every writer
    waits). PostgreSQL: a SHARE lock on ``records``, taken once the batch being written has
    committed, which keeps the next one from inserting. Either way the count cannot move under
    the caller, and the writers go on where they were when the block ends.
    """
    url = make_url(store_url)
    count = "SELECT count(*) FROM records"
    if url.get_backend_name() == "sqlite":
        lite = sqlite3.connect(url.database or "", isolation_level=None, timeout=30)
        try:
            lite.execute("BEGIN IMMEDIATE")  # its failure is raised as it is, no ROLLBACK over it
            try:
                yield lambda: int(lite.execute(count).fetchone()[0])
            finally:
                lite.execute("ROLLBACK")
        finally:
            lite.close()
        return
    eng = create_engine(url)
    try:
        with eng.connect() as conn, conn.begin():
            conn.execute(text("LOCK TABLE records IN SHARE MODE"))
            yield lambda: int(conn.execute(text(count)).scalar() or 0)
    finally:
        eng.dispose()


# stage relay rows not published yet: no published_at and above their scope's watermark
UNPUBLISHED_RELAY = (
    "SELECT count(*) FROM stage_relay r WHERE r.published_at IS NULL AND r.id > coalesce("
    "(SELECT m.published_through FROM stage_relay_marks m WHERE m.scope = r.scope), 0)"
)


def rows_of(store_url: str, sql: str) -> list[tuple]:
    eng = create_engine(store_url)
    try:
        with eng.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql)).all()]
    finally:
        eng.dispose()


def stored_effects(store: str) -> list[Any]:
    """Every record, score, delivery and quarantine row, in key order (file path left out)."""
    return [
        *[
            (rid, payload, {k: v for k, v in json.loads(prov).items() if k != "file"})
            for rid, payload, prov in rows_of(
                store, "SELECT id, payload, provenance FROM records ORDER BY id"
            )
        ],
        *rows_of(store, "SELECT record_id, value, grade, factors FROM scores ORDER BY record_id"),
        *rows_of(store, "SELECT id, channel, payload FROM deliveries ORDER BY id"),
        *rows_of(
            store,
            "SELECT record_key, stage, error_code, payload FROM quarantine ORDER BY record_key",
        ),
    ]


def run_once_and_quarantine(hub) -> tuple:
    """Run every pipeline once, then return (the only summary, open quarantine, record count)."""
    try:
        [summary] = hub.run_once()
        items = hub.store.list_quarantine()
        records = hub.store.counts()["records"]
    finally:
        hub.close()
    return summary, items, records


def run_once(cfg: Path) -> Any:
    """Run the config's (single) pipeline once through a fresh hub; return its RunSummary."""
    from junction.pipeline.hub import Hub

    hub = Hub.from_file(cfg)
    try:
        return hub.run_once()[0]
    finally:
        hub.close()


def insert_delivery(store: Store, delivery_id: str, **values: Any) -> None:
    """Store one ``deliveries`` row: a delivered ``lead.scored`` of pipeline ``leads``.

    ``values`` (``channel``, ``record_id``, ``remote_id``, ``route``, times, ...) replace the
    defaults; ``next_attempt_at`` and ``created_at`` default to now.
    """
    now = time.time()
    row: dict[str, Any] = {
        "id": delivery_id,
        "record_id": "leads:1",
        "pipeline": "leads",
        "channel": "webhook.sales",
        "event_type": "lead.scored",
        "payload": "{}",
        "status": "delivered",
        "attempts": 1,
        "next_attempt_at": now,
        "created_at": now,
    }
    row.update(values)
    with store.begin() as conn:
        conn.execute(t.deliveries.insert().values(**row))


def insert_alert(store: Store, delivery_id: str, record_id: str) -> None:
    """Store one pending alert of route ``hot`` on ``slack.ops``, due to escalate (not acked)."""
    insert_delivery(
        store,
        delivery_id,
        record_id=record_id,
        channel="slack.ops",
        next_attempt_at=1.0,
        created_at=1.0,
        route="hot",
        escalate_at=2.0,
    )
