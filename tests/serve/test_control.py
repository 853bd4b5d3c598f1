"""The scheduler's control interface (``extras["scheduler"]``): run now, pause, resume."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from junction.api.context import SchedulerControl
from junction.core.errors import ConfigError
from junction.pipeline.config import load_config
from junction.pipeline.hub import Hub
from junction.serve.leases import PipelineLeases
from junction.serve.scheduler import Scheduler
from scoring.synthetic import write_lead_csv
from tests.integration.helpers import scalar
from tests.serve.helpers import drop, write_serve_config


async def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_run_now_pause_and_resume(tmp_path: Path, store_url: str, models_dir: Path) -> None:
    cfg = write_serve_config(tmp_path, store=store_url, models=models_dir)
    src = tmp_path / "leads.csv"
    write_lead_csv(src, 200, seed=16, messy=False)
    inbox = tmp_path / "inbox"

    def runs() -> int:
        return scalar(store_url, "SELECT count(*) FROM runs")

    async def scenario() -> None:
        hub = Hub(load_config(cfg))
        scheduler = Scheduler(hub, PipelineLeases(hub.store, "test"), tick_s=0.1)
        control: SchedulerControl = scheduler
        await asyncio.to_thread(scheduler.prepare)
        scheduler.start()
        try:
            assert control.ready()
            with pytest.raises(ConfigError):
                control.request_run("nope")
            # two requests before the coordinator wakes: the second joins the first
            assert control.request_run("leads") == "queued"
            assert control.request_run("leads") == "running"
            await _until(lambda: runs() == 1, 10, "the manual run")

            await asyncio.to_thread(control.pause, "leads")
            assert control.request_run("leads") == "paused"
            drop(src, inbox)
            await asyncio.sleep(1.0)  # many ticks: a paused pipeline claims nothing
            assert (inbox / "leads.csv").exists()
            assert runs() == 1

            await asyncio.to_thread(control.resume, "leads")
            await _until(
                lambda: (inbox / "processed" / "leads.csv").exists(), 10, "the file after resume"
            )
            assert scalar(store_url, "SELECT count(*) FROM records") == 200
        finally:
            # a bound, not a timing: nothing may be left running.  A run can still be closing
            # (its bookkeeping after the archive) when stop comes: stopped cleanly, it counts 1
            stopped, still_running = await scheduler.stop(30)
            assert still_running == 0
            assert stopped <= 1
            assert not control.ready()
            scheduler.close()
            hub.close()

    asyncio.run(scenario())
