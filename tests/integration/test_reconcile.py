"""``junction reconcile``: every source row accounted for once, on SQLite and PostgreSQL.

A file drop runs through the hub and its deliveries reach a real receiver: the reconciliation
is clean.  Then each kind of damage a fault could leave is made by hand in the store, and the
reconciliation names it (and the command exits 1): a lost record, a record no source row has,
a lost score, a delivery whose record is gone, a delivery acknowledged twice, a row both stored
and still quarantined as unparseable.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, delete, insert, select
from typer.testing import CliRunner

from junction.cli.main import app
from junction.pipeline.hub import Hub
from junction.store import tables as t
from junction.store.reconcile import reconcile
from junction.store.repo import Store
from scoring.synthetic import write_lead_csv
from tests.integration.delivery_support import receiver
from tests.integration.helpers import write_config

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ROWS = 600
runner = CliRunner()


def _reconcile_cli(cfg: Path) -> tuple[int, dict]:
    result = runner.invoke(app, ["reconcile", str(cfg), "--json"], catch_exceptions=False)
    return result.exit_code, json.loads(result.output)


@pytest.fixture
def ran(tmp_path: Path, store_url: str, models_dir: Path):
    with receiver(SECRET) as sink:
        cfg = write_config(
            tmp_path,
            store=store_url,
            url=f"{sink.url}/e",
            secret=SECRET,
            models=models_dir,
            batch=200,
        )
        write_lead_csv(tmp_path / "inbox" / "leads.csv", ROWS, seed=5)
        hub = Hub.from_file(cfg)
        try:
            [summary] = hub.run_once()
            hub.deliver(drain_wait_s=1.0)
        finally:
            hub.close()
        assert summary.read == ROWS
        yield cfg, store_url, sink


def test_a_clean_run_reconciles(ran) -> None:
    cfg, _, sink = ran
    code, report = _reconcile_cli(cfg)
    assert code == 0, report
    assert report["clean"] is True
    assert report["expected"] == ROWS
    assert report["records"] + report["quarantined"] == ROWS
    assert report["scores"] == report["records"]
    assert report["deliveries"] == report["records"]  # one route or the other, per record
    assert len(sink.ids("sales") + sink.ids("nurture")) == report["deliveries"]


def test_each_kind_of_damage_is_named(ran) -> None:
    cfg, url, _ = ran
    store = Store.open(url)
    eng = create_engine(url)
    try:
        with eng.begin() as conn:
            ids = list(conn.execute(select(t.records.c.id).order_by(t.records.c.id)).scalars())
            lost, unscored, orphaned, sent_twice = ids[0], ids[1], ids[2], ids[3]
            conn.execute(delete(t.records).where(t.records.c.id == lost))
            conn.execute(delete(t.scores).where(t.scores.c.record_id.in_([lost, unscored])))
            conn.execute(delete(t.deliveries).where(t.deliveries.c.record_id == lost))
            # a record no source row explains (a row number past the file's end)
            stray = ids[4].rsplit(":", 1)[0] + f":{ROWS + 7}"
            row = conn.execute(select(t.records).where(t.records.c.id == ids[4])).one()._asdict()
            conn.execute(insert(t.records).values({**row, "id": stray}))
            conn.execute(
                insert(t.scores).values(
                    record_id=stray,
                    model_version="v",
                    model="m",
                    value=0.5,
                    grade="B",
                    factors="[]",
                    variant="production",
                    scored_at=time.time(),
                )
            )
            # a delivery whose record is gone, and one acknowledged twice
            conn.execute(delete(t.records).where(t.records.c.id == orphaned))
            conn.execute(delete(t.scores).where(t.scores.c.record_id == orphaned))
            did = conn.execute(
                select(t.deliveries.c.id).where(t.deliveries.c.record_id == sent_twice)
            ).scalar_one()
            conn.execute(
                insert(t.attempts).values(
                    delivery_id=did,
                    attempt_no=9,
                    started_at=time.time(),
                    duration_ms=1.0,
                    status_code=200,
                    outcome="delivered",
                )
            )
            # stored, yet still quarantined as unreadable
            conn.execute(
                insert(t.quarantine).values(
                    pipeline="leads",
                    stage="normalize",
                    record_key=ids[5],
                    error_type="MappingError",
                    error_code="mapping_error",
                    message="x",
                    context="{}",
                    provenance="{}",
                    status="open",
                    created_at=time.time(),
                )
            )
        r = reconcile(store, "leads", scored=True)
    finally:
        eng.dispose()
        store.close()
    assert not r.clean
    assert r.missing.sample == sorted([lost, orphaned])
    assert r.unexpected.sample == [stray]
    assert r.unscored.sample == [unscored]
    assert r.orphans.count == 1  # the orphaned record's delivery
    assert r.duplicate_sends.sample == [did]
    assert r.contradictory.sample == [ids[5]]
    code, report = _reconcile_cli(cfg)
    assert code == 1
    assert report["clean"] is False
    assert report["missing"]["count"] == 2


def test_polled_keys_from_a_file(ran, tmp_path: Path) -> None:
    cfg, _, _ = ran
    keys = tmp_path / "keys.txt"
    keys.write_text("never-seen-1\nnever-seen-2\n")
    result = runner.invoke(
        app,
        ["reconcile", str(cfg), "--pipeline", "leads", "--keys", str(keys), "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["missing"]["sample"] == ["leads:never-seen-1", "leads:never-seen-2"]
