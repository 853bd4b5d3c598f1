"""Model cards rendered as Markdown: every section a card must answer, whatever the card holds."""

from __future__ import annotations

from typing import Any

import pytest

from scoring.card_markdown import card_markdown

FULL: dict[str, Any] = {
    "name": "lead-score",
    "version": "4",
    "created_at": "2026-12-01T10:00:00Z",
    "algorithm": "hgb",
    "intended_use": "Rank leads.",
    "training_data": {"n_train": 800, "window": {"train_from": "2025-01-01"}},
    "features": {"numeric": ["visits", "page_views"], "categorical": ["country"]},
    "metrics": {"holdout": {"roc_auc": 0.81234, "brier": 0.1}, "train": {"roc_auc": 0.9}},
    "calibration": {"method": "sigmoid"},
    "limitations": ["Synthetic data.", "Watch drift."],
    "sklearn_version": "1.9.1",
    "artifact": {"sha256": "ab" * 32},
    "surprise": "kept",
}


def test_a_full_card_has_every_section() -> None:
    md = card_markdown(FULL, stage="production")
    assert md.startswith("# Model card: lead-score v4\n")
    for heading in (
        "## Intended use",
        "## Training data",
        "## Features",
        "## Metrics",
        "## Calibration",
        "## Limitations",
        "## Environment",
        "## Artifacts",
        "## Other",
    ):
        assert heading in md
    assert "| stage | production |" in md
    assert "| metric | holdout | train |" in md
    assert "| roc_auc | 0.8123 | 0.9 |" in md
    assert "- **numeric** (2): visits, page_views" in md
    assert "**window**" in md
    assert "- Watch drift." in md
    assert "_Not recorded" not in md
    assert "surprise" in md


@pytest.mark.parametrize(
    "card",
    [
        pytest.param({}, id="empty"),
        pytest.param({"metrics": "n/a", "features": None, "limitations": []}, id="odd-types"),
        pytest.param({"training_data": {}, "metrics": {"holdout": {}}}, id="empty-sections"),
    ],
)
def test_a_sparse_or_odd_card_still_renders(card: dict[str, Any]) -> None:
    md = card_markdown(card)
    assert md.startswith("# Model card: model v?")
    assert "_Not recorded in this card._" in md
    assert md.endswith("\n")


def test_table_cells_cannot_break_the_table() -> None:
    md = card_markdown({"name": "m", "version": "1", "intended_use": "a\nb", "x": {"k": "a|b"}})
    assert "a b" in md
    assert "a\\|b" in md
