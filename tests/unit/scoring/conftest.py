"""Fixtures for the scoring tests: one default model trained once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from scoring.registry import ensure_default_model
from scoring.sklearn_model import SklearnLeadScorer
from scoring.synthetic import generate_leads


@pytest.fixture(scope="session")
def default_version_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model, trained on first use into a session-wide registry (do not modify)."""
    return ensure_default_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def scorer(default_version_dir: Path) -> SklearnLeadScorer:
    return SklearnLeadScorer.load(default_version_dir)


@pytest.fixture
def version_copy(default_version_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the default model's version directory, free to tamper with."""
    target = tmp_path / "models" / "lead-score" / "1"
    shutil.copytree(default_version_dir, target)
    return target


@pytest.fixture(scope="session")
def holdout_leads() -> list[dict]:
    """1,000 unseen synthetic leads (another seed than training), label removed."""
    leads = generate_leads(1000, seed=4242)
    for lead in leads:
        lead.pop("converted")
    return leads
