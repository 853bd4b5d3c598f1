"""Score: what the scoring engine says of one record."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Factor(BaseModel):
    """One feature's signed contribution to a score (log-odds units)."""

    model_config = ConfigDict(frozen=True)

    feature: str = Field(..., description="Feature name, e.g. lead_source=referral.")
    contribution: float = Field(..., description="Signed contribution to the log-odds.")


class Score(BaseModel):
    """A lead score: value, grade, top factors and the model that made it."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal["score.v1"] = "score.v1"
    value: float = Field(..., ge=0.0, le=1.0, description="Probability of conversion, 0 to 1.")
    grade: Literal["A", "B", "C", "D"] = Field(..., description="Grade by configured thresholds.")
    top_factors: list[Factor] = Field(default_factory=list, description="Largest contributions.")
    model: str = Field(..., description="Model name.")
    model_version: str = Field(..., description="Model version that produced the score.")
    variant: str = Field("production", description="A/B variant (production or challenger).")
