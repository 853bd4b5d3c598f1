"""Cron schedules under ``junction serve``: slots fire, once across processes, missed slots once,
paused pipelines never."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from croniter import croniter
from sqlalchemy import create_engine, text

from junction.store.repo import Store
from scoring.synthetic import write_lead_csv
from tests.integration.helpers import rows_of, scalar
from tests.serve.helpers import Serve, drop, pipeline_yaml, wait_for, write_serve_config

EVERY_SECOND = "* * * * * */1"  # croniter's 6th field is seconds


def _runs(store_url: str, pipeline: str) -> int:
    return scalar(store_url, f"SELECT count(*) FROM runs WHERE pipeline = '{pipeline}'")


def test_cron_schedule_fires_and_claims_files_only_when_it_does(
    tmp_path: Path, store_url: str, models_dir: Path
) -> None:
    cfg = write_serve_config(
        tmp_path,
        store=store_url,
        models=models_dir,
        pipelines=pipeline_yaml(schedule="* * * * * */4"),
    )
    src = tmp_path / "leads.csv"
    write_lead_csv(src, 100, seed=9, messy=False)
    inbox = tmp_path / "inbox"
    with Serve(cfg) as serve:
        serve.wait_ready()
        first = serve.wait_event("schedule fired", timeout=10)
        drop(src, inbox)
        time.sleep(1.2)  # ready after a poll or two, but the next slot is 4 s after the last
        assert (inbox / "leads.csv").exists()
        assert len(serve.find("schedule fired")) == 1
        wait_for(lambda: (inbox / "processed" / "leads.csv").exists(), 10, "the next slot")
        assert serve.stop() == 0
        fired = serve.find("schedule fired")
    slots = [f["slot"] for f in fired]
    assert slots[0] == first["slot"]
    assert len(slots) >= 2
    assert len(set(slots)) == len(slots)
    # each fire is one run, whether it found a file or not
    assert _runs(store_url, "leads") == len(fired)
    assert scalar(store_url, "SELECT count(*) FROM records") == 100


def test_two_processes_fire_each_slot_once(tmp_path: Path, pg_url: str, models_dir: Path) -> None:
    cfg = write_serve_config(
        tmp_path, store=pg_url, models=models_dir, pipelines=pipeline_yaml(schedule=EVERY_SECOND)
    )
    Store.open(pg_url).close()  # migrate once, before two processes race to
    with Serve(cfg) as a, Serve(cfg) as b:
        a.wait_ready()
        b.wait_ready()
        wait_for(
            lambda: len(a.find("schedule fired")) + len(b.find("schedule fired")) >= 5,
            15,
            "five fires",
        )
        assert a.stop() == 0
        assert b.stop() == 0
        fired = a.find("schedule fired") + b.find("schedule fired")
    slots = [f["slot"] for f in fired]
    assert len(slots) == len(set(slots)), "a slot fired twice"
    assert _runs(pg_url, "leads") == len(slots)
    runs = rows_of(pg_url, "SELECT started_at, finished_at FROM runs ORDER BY started_at")
    # and never two runs of the pipeline at once
    assert all(prev[1] <= nxt[0] for prev, nxt in itertools.pairwise(runs))


def test_missed_slots_fire_once_and_paused_pipelines_wait(
    tmp_path: Path, store_url: str, models_dir: Path
) -> None:
    hourly = "0 * * * *"
    pipelines = pipeline_yaml("leads", inbox="inbox", schedule=hourly) + pipeline_yaml(
        "held", inbox="held", schedule=EVERY_SECOND
    )
    cfg = write_serve_config(tmp_path, store=store_url, models=models_dir, pipelines=pipelines)
    Store.open(store_url).close()
    now = time.time()
    engine = create_engine(store_url)
    with engine.begin() as conn:
        # down for five hours: five slots of `leads` missed
        conn.execute(
            text("INSERT INTO schedules (pipeline, last_fired_at) VALUES ('leads', :t)"),
            {"t": now - 5 * 3600 - 60},
        )
        conn.execute(
            text(
                "INSERT INTO pipeline_state (pipeline, paused, updated_at) VALUES ('held', :p, :t)"
            ),
            {"p": True, "t": now},
        )
    with Serve(cfg) as serve:
        serve.wait_ready()
        start = time.time()
        wait_for(lambda: serve.find("schedule fired"), 10, "the missed slot")
        time.sleep(2.5)
        end = time.time()
        assert _runs(store_url, "held") == 0  # paused: none of its slots fired
        with engine.begin() as conn:
            conn.execute(text("UPDATE pipeline_state SET paused = :p"), {"p": False})
        wait_for(lambda: _runs(store_url, "held") >= 1, 10, "the resumed pipeline to run")
        assert serve.stop() == 0
        fired = serve.find("schedule fired")
    engine.dispose()
    leads = [f for f in fired if f["pipeline"] == "leads"]
    passing = 0  # hourly slots that passed during the test itself
    it = croniter(hourly, start)
    while it.get_next(float) <= end:
        passing += 1
    assert len(leads) == 1 + passing
    assert _runs(store_url, "leads") == 1 + passing
