"""Model registries for tests: real versions made by copying one trained version folder.

Copying a whole version folder keeps it loadable (the card's hashes are of ``model.skops`` and
``compiled.json``, which do not change); only the card's ``version`` and, when asked, its holdout
metrics are rewritten, so the gate has something to compare.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path


def add_version(
    source: Path, models_dir: Path, name: str, version: str, *, roc_auc: float | None = None
) -> Path:
    """Copy the version folder ``source`` to ``models_dir/name/version`` and fix its card."""
    target = models_dir / name / version
    shutil.copytree(source, target)
    card_path = target / "card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["name"] = name
    card["version"] = version
    if roc_auc is not None:
        card["metrics"]["holdout"]["roc_auc"] = roc_auc
    card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return target


def make_registry(
    source: Path, models_dir: Path, name: str = "lead-score", aucs: Sequence[float] = (0.7, 0.72)
) -> Path:
    """A registry with versions 1..len(aucs) of ``name``, version i having holdout AUC aucs[i-1]."""
    for i, auc in enumerate(aucs, start=1):
        add_version(source, models_dir, name, str(i), roc_auc=auc)
    return models_dir


def two_trained_versions(root: Path, name: str = "lead-score", *, seed: int = 31) -> Path:
    """A registry at ``root`` with the default version 1 and a differently trained version 2."""
    from scoring.registry import ensure_default_model, save_model
    from scoring.synthetic import generate_leads
    from scoring.train import train_lead_model

    ensure_default_model(root, name=name)
    leads = generate_leads(2000, seed=seed)
    trained = train_lead_model(leads, [lead["converted"] for lead in leads], seed=seed, c=0.3)
    save_model(trained, root, name, training_data={"seed": seed}, version="2")
    return root


def copy_on_version_1(source: Path, target: Path, name: str = "lead-score") -> Path:
    """A private copy of the registry ``source`` at ``target`` with version 1 in production."""
    from scoring.stages import promote

    shutil.copytree(source, target)
    promote(target, name, "1", actor="test", reason="start on v1")
    return target
