"""Scorer contract fixture: ``sklearn_lead`` (the default lead model, trained once per session)."""

from __future__ import annotations

import pytest

from scoring.registry import ensure_default_model
from scoring.sklearn_model import SklearnLeadScorer
from scoring.synthetic import generate_leads
from tests.contract.scorer_support import ScorerContract


def contract(tmp_path_factory: pytest.TempPathFactory) -> ScorerContract:
    version_dir = ensure_default_model(tmp_path_factory.mktemp("contract-models"))
    leads = generate_leads(200, seed=2024)
    for lead in leads:
        lead.pop("converted")
    return ScorerContract(
        scorer=SklearnLeadScorer.load(version_dir),
        records=leads,
        bad_record={**leads[0], "page_views": -3},
        sparse_record={"email": "someone@example.com"},
    )
