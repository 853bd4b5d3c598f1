from __future__ import annotations

from pathlib import Path

import pytest

from scoring.registry import ensure_default_model


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model registry with the default lead model trained once for the session."""
    root = tmp_path_factory.mktemp("models")
    ensure_default_model(root, name="lead-score")
    return root
