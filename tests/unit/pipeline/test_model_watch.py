"""ModelWatch: which stage changes cost a load, which never reload, and when a failure retries."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from junction.pipeline import model_watch
from junction.pipeline.config import ScoringConfig
from junction.pipeline.model_watch import ModelWatch
from scoring.stages import promote, stage
from tests.registry_support import add_version

MODEL = "lead-score"


@pytest.fixture
def models(models_dir: Path, tmp_path: Path) -> Path:
    """Versions 1 and 2 (copies of the session's default model), 1 in production."""
    root = tmp_path / "models"
    shutil.copytree(models_dir / MODEL / "1", root / MODEL / "1")
    add_version(root / MODEL / "1", root, MODEL, "2")
    promote(root, MODEL, "1", actor="test", reason="start")
    return root


def test_a_stage_change_that_leaves_production_costs_no_load(models: Path) -> None:
    watch = ModelWatch(str(models), ScoringConfig(model=MODEL), owner="test")
    first = watch.load()
    assert not watch.stale()
    stage(models, MODEL, "2", "staging", actor="test")
    assert watch.stale()
    assert watch.reload() is False
    assert watch.current is not None
    assert watch.current.scorer is first.scorer  # the same loaded scorer, new revision
    assert not watch.stale()

    promote(models, MODEL, "2", actor="test", reason="v2")
    assert watch.stale()
    assert watch.reload() is True
    assert watch.current.scorer.version == "2"
    assert watch.switches == 1


def test_a_pinned_version_is_not_watched(models: Path) -> None:
    watch = ModelWatch(str(models), ScoringConfig(model=MODEL, version="1"), owner="test")
    watch.load()
    promote(models, MODEL, "2", actor="test", reason="v2")
    assert not watch.watched
    assert not watch.stale()


def test_a_failed_reload_keeps_the_model_and_retries_later(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch = ModelWatch(str(models), ScoringConfig(model=MODEL), owner="test")
    first = watch.load()
    (models / MODEL / "2" / "compiled.json").write_text("{}", encoding="utf-8")
    promote(models, MODEL, "2", actor="test", reason="tampered", verify=False)

    assert watch.stale()
    assert watch.reload() is False
    assert watch.current is not None
    assert watch.current.scorer is first.scorer
    assert watch.failure is not None
    assert watch.failure.code == "model_load_error"
    assert not watch.stale()  # the same revision is not tried again at once ...
    monkeypatch.setattr(model_watch, "RETRY_S", 0.0)
    assert watch.stale()  # ... but after RETRY_S
