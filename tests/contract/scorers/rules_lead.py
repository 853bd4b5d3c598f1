"""Scorer contract fixture: ``rules_lead`` (the built-in lead rules, no model, no training)."""

from __future__ import annotations

import pytest

from junction.pipeline.config import ScoringConfig
from scoring.rules import RulesLeadScorer
from scoring.synthetic import generate_leads
from tests.contract.scorer_support import ScorerContract


def contract(tmp_path_factory: pytest.TempPathFactory) -> ScorerContract:
    leads = generate_leads(200, seed=2024)
    for lead in leads:
        lead.pop("converted")
    return ScorerContract(
        scorer=RulesLeadScorer.from_config(ScoringConfig(scorer="rules_lead")),
        records=leads,
        bad_record={**leads[0], "page_views": -3},
        sparse_record={"email": "someone@example.com"},
    )
