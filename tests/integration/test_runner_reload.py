"""A long-lived pipeline runner follows `junction model promote` / `rollback` between runs.

The runner compares the model's stages revision at the start of each run (and before a pushed
batch, at most once a second); a run in progress finishes with the model it started with, in
this process and in its worker processes.  Every score row names its model version.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from junction.pipeline.hub import Hub
from junction.pipeline.push import PushIngestor
from scoring.stages import promote, rollback
from scoring.synthetic import write_lead_csv
from tests.integration.helpers import write_config
from tests.registry_support import add_version, copy_on_version_1, two_trained_versions

MODEL = "lead-score"
ROWS = 1200
PUSHED = {
    "lead_id": "L-1",
    "email": "Ada.Lovelace@Example.com",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "company": "Analytical Engines Ltd",
    "country": "GB",
}


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with the default version 1 and a differently trained version 2."""
    return two_trained_versions(tmp_path_factory.mktemp("reload-models"), MODEL, seed=41)


@pytest.fixture
def models(two_versions: Path, tmp_path: Path) -> Path:
    """This test's own copy of the registry, version 1 in production."""
    return copy_on_version_1(two_versions, tmp_path / "models", MODEL)


def _hub(root: Path, store_url: str, models: Path, workers: int = 0) -> Hub:
    cfg = write_config(
        root,
        store=store_url,
        url="http://127.0.0.1:9",
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        models=models,
        batch=200,
        workers=workers,
    )
    return Hub.from_file(cfg)


def _versions(store_url: str) -> dict[str, int]:
    """Score rows per model version."""
    eng = create_engine(store_url)
    try:
        with eng.connect() as conn:
            rows = conn.execute(
                text("SELECT model_version, COUNT(*) FROM scores GROUP BY model_version")
            ).all()
    finally:
        eng.dispose()
    return {str(v): int(n) for v, n in rows}


def _drop(root: Path, name: str, seed: int) -> None:
    write_lead_csv(root / "inbox" / f"{name}.csv", ROWS, seed=seed, messy=False)


@pytest.mark.parametrize("workers", [0, 2])
def test_the_next_run_scores_with_the_promoted_then_the_rolled_back_version(
    tmp_path: Path, store_url: str, models: Path, workers: int
) -> None:
    hub = _hub(tmp_path, store_url, models, workers)
    try:
        runner = hub.runner("leads")
        runner.shares_work = False  # with workers, every share runs in a worker process
        _drop(tmp_path, "a", seed=1)
        [first] = hub.run_once()
        assert first.stored > 0
        assert _versions(store_url) == {"1": first.stored}
        pool = runner._pool

        promote(models, MODEL, "2", actor="test", reason="v2 wins")
        _drop(tmp_path, "b", seed=2)
        [second] = hub.run_once()
        assert _versions(store_url) == {"1": first.stored, "2": second.stored}
        assert runner.model_dir == models / MODEL / "2"
        # the worker processes loaded the new version themselves: the pool was not recycled
        assert runner._pool is pool

        rollback(models, MODEL, actor="test", reason="v2 misbehaves")
        _drop(tmp_path, "c", seed=3)
        [third] = hub.run_once()
        assert _versions(store_url) == {"1": first.stored + third.stored, "2": second.stored}
    finally:
        hub.close()


def test_a_run_in_progress_finishes_with_the_model_it_started_with(
    tmp_path: Path, models: Path
) -> None:
    store_url = f"sqlite:///{tmp_path / 'j.db'}"
    hub = _hub(tmp_path, store_url, models)
    runner = hub.runner("leads")
    promoted: list[int] = []

    def promote_after_the_first_batch(read: int) -> None:
        if not promoted:
            promote(models, MODEL, "2", actor="test", reason="mid-run")
            promoted.append(read)
        runner._model_check_at = 0.0  # a pushed batch now would see the change at once

    try:
        _drop(tmp_path, "a", seed=1)
        summary = runner.run_once(promote_after_the_first_batch)
        assert promoted  # production changed after the first of several batches
        assert summary.read == ROWS
        assert _versions(store_url) == {"1": summary.stored}

        _drop(tmp_path, "b", seed=2)
        [after] = hub.run_once()
        assert _versions(store_url) == {"1": summary.stored, "2": after.stored}
    finally:
        hub.close()


def test_a_pushed_batch_scores_with_the_promoted_version(
    tmp_path: Path, store_url: str, models: Path
) -> None:
    hub = _hub(tmp_path, store_url, models)
    try:
        runner = hub.runner("leads")
        push = PushIngestor(runner)
        push.ingest([PUSHED], source="partner", event_id="evt-1")
        assert _versions(store_url) == {"1": 1}

        promote(models, MODEL, "2", actor="test", reason="v2 wins")
        runner._model_check_at = 0.0  # the once-a-second check is due
        push.ingest([PUSHED], source="partner", event_id="evt-2")
        assert _versions(store_url) == {"1": 1, "2": 1}
    finally:
        hub.close()


def test_a_corrupt_new_production_keeps_the_runner_on_its_verified_model(
    tmp_path: Path, models: Path
) -> None:
    store_url = f"sqlite:///{tmp_path / 'j.db'}"
    hub = _hub(tmp_path, store_url, models)
    try:
        runner = hub.runner("leads")
        vdir = add_version(models / MODEL / "2", models, MODEL, "3")
        compiled = vdir / "compiled.json"
        compiled.write_text(compiled.read_text(encoding="utf-8") + " ", encoding="utf-8")
        promote(models, MODEL, "3", actor="test", reason="tampered", verify=False)

        _drop(tmp_path, "a", seed=1)
        [summary] = hub.run_once()
        assert summary.stored > 0
        assert _versions(store_url) == {"1": summary.stored}
        assert runner.model is not None
        assert runner.model.failure is not None
        assert runner.model.failure.code == "model_load_error"

        rollback(models, MODEL, actor="test", reason="v3 is corrupt")
        _drop(tmp_path, "b", seed=2)
        [after] = hub.run_once()
        assert _versions(store_url) == {"1": summary.stored + after.stored}
        assert runner.model.failure is None
    finally:
        hub.close()
