"""The scorer interface (ADR-0003)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from junction.core.errors import ScoringInputError
from schemas.score import Score


@runtime_checkable
class Scorer(Protocol):
    """Scores canonical records (as dicts of canonical field values)."""

    name: str
    version: str

    def score(self, records: Sequence[Mapping[str, Any]]) -> list[Score]:
        """Score a batch; one Score per record, in order."""
        ...

    def score_one(self, record: Mapping[str, Any]) -> Score:
        """Score a single record on the low-latency path (no pandas)."""
        ...

    def score_columns(self, records: Sequence[Mapping[str, Any]]) -> ScoreColumns:
        """Score a batch for the pipeline, returning columns rather than objects."""
        ...


class ScoreColumns:
    """Scores for a batch, column by column (the pipeline's hot path avoids one object per row).

    ``values[i]``, ``grades[i]`` and ``factors[i]`` belong to the i-th record of the batch;
    ``factors[i]`` is a list of ``(feature, contribution)`` pairs, largest magnitude first.
    """

    __slots__ = ("factors", "grades", "model", "model_version", "values", "variant")

    def __init__(
        self,
        *,
        values: list[float],
        grades: list[str],
        factors: list[list[tuple[str, float]]],
        model: str,
        model_version: str,
        variant: str = "production",
    ) -> None:
        self.values = values
        self.grades = grades
        self.factors = factors
        self.model = model
        self.model_version = model_version
        self.variant = variant

    def __len__(self) -> int:
        return len(self.values)


class PartialScoreColumns(ScoreColumns):
    """Scores for a batch in which some records may not have been scored.

    Every column stays aligned with the batch.  ``failed`` maps the index of each record that
    could not be scored to its :class:`~junction.core.errors.ScoringInputError` (ascending
    index order; empty for a clean batch).  At those positions ``values`` holds NaN,
    ``grades`` an empty string and ``factors`` an empty list: the caller quarantines those
    records instead of routing them.
    """

    __slots__ = ("failed",)

    def __init__(
        self,
        *,
        values: list[float],
        grades: list[str],
        factors: list[list[tuple[str, float]]],
        model: str,
        model_version: str,
        variant: str = "production",
        failed: dict[int, ScoringInputError] | None = None,
    ) -> None:
        super().__init__(
            values=values,
            grades=grades,
            factors=factors,
            model=model,
            model_version=model_version,
            variant=variant,
        )
        self.failed: dict[int, ScoringInputError] = failed or {}
