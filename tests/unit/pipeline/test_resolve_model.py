"""The pipeline scores with the production stage, a pinned version, or a first default model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from junction.core.errors import ModelLoadError
from junction.pipeline.config import ScoringConfig
from junction.pipeline.score import resolve_model_dir
from scoring import stages
from tests.registry_support import make_registry

NAME = "lead-score"


@pytest.fixture
def reg(models_dir: Path, tmp_path: Path) -> Path:
    return make_registry(models_dir / NAME / "1", tmp_path / "models", NAME, (0.7, 0.72, 0.75))


def test_unpinned_scores_with_production(reg: Path) -> None:
    assert resolve_model_dir(str(reg), ScoringConfig()) == reg / NAME / "3"  # before promotions
    stages.promote(reg, NAME, "2", actor="a", reason="r")
    assert resolve_model_dir(str(reg), ScoringConfig()) == reg / NAME / "2"
    stages.rollback(reg, NAME, actor="a", reason="r")
    assert resolve_model_dir(str(reg), ScoringConfig()) == reg / NAME / "3"


def test_a_pinned_version_must_exist(reg: Path) -> None:
    stages.promote(reg, NAME, "2", actor="a", reason="r")
    assert resolve_model_dir(str(reg), ScoringConfig(version="1")) == reg / NAME / "1"
    with pytest.raises(ModelLoadError, match="no such version") as exc:
        resolve_model_dir(str(reg), ScoringConfig(version="7"))
    assert exc.value.context == {"model": NAME, "version": "7"}


def test_no_production_among_existing_versions_refuses_to_guess(
    models_dir: Path, tmp_path: Path
) -> None:
    reg = make_registry(models_dir / NAME / "1", tmp_path / "models", NAME, (0.7,))
    stages.stage(reg, NAME, "1", "staging", actor="a", reason="candidate")
    with pytest.raises(ModelLoadError, match="no production version") as exc:
        resolve_model_dir(str(reg), ScoringConfig())
    assert exc.value.code == "no_production_version"
    assert not (reg / NAME / "2").exists()  # no default model trained over it


def test_a_deleted_production_folder_is_named(reg: Path) -> None:
    stages.promote(reg, NAME, "2", actor="a", reason="r")
    shutil.rmtree(reg / NAME / "2")
    with pytest.raises(ModelLoadError, match="no such version") as exc:
        resolve_model_dir(str(reg), ScoringConfig())
    assert exc.value.context == {"model": NAME, "version": "2"}


def test_a_corrupt_stages_file_refuses_to_score(reg: Path) -> None:
    (reg / NAME / stages.STAGES_FILE).write_text("{", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="corrupt"):
        resolve_model_dir(str(reg), ScoringConfig())


def test_an_empty_registry_trains_and_promotes_the_default_model(tmp_path: Path) -> None:
    got = resolve_model_dir(str(tmp_path), ScoringConfig())
    assert got == tmp_path / NAME / "1"
    assert stages.production_version(tmp_path, NAME) == "1"
    (entry,) = stages.history(tmp_path, NAME)
    assert (entry.action, entry.actor, entry.reason) == ("promote", "system", "first default model")
    # later calls resolve without training again
    assert resolve_model_dir(str(tmp_path), ScoringConfig()) == got
    assert stages.versions(tmp_path, NAME) == ["1"]
