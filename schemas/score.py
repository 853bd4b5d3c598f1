"""Score: what the scoring engine says of one record."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Factor(BaseModel):
    """One feature's signed contribution to a score (log-odds units)."""

    model_config = ConfigDict(frozen=True)

    feature: str = Field(..., description="Feature name, e.g. lead_source=referral.")
    contribution: float = Field(
        ..., description="Signed contribution: log-odds for ML models, points for rules."
    )


class Reason(BaseModel):
    """A top factor in words a salesperson understands (a reason code)."""

    model_config = ConfigDict(frozen=True)

    code: str = Field(..., description="Stable code, e.g. SENIORITY_C_LEVEL or ENGAGEMENT_LOW.")
    text: str = Field(..., description="The reason in plain words, e.g. 'Senior decision maker'.")
    direction: Literal["positive", "negative"] = Field(
        ..., description="Whether the factor raised (positive) or lowered (negative) the score."
    )


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
    reasons: list[Reason] = Field(
        default_factory=list, description="The top factors as reason codes in plain words."
    )
    data_sufficient: bool = Field(
        True,
        description="False when too few of the model's inputs were present for a reliable score.",
    )
