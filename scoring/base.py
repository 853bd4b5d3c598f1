"""The scorer interface (ADR-0003)."""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from junction.core.errors import ScoringInputError
from schemas.score import Factor, Reason, Score

T = TypeVar("T")


@runtime_checkable
class Scorer(Protocol):
    """Scores canonical records (as dicts of canonical field values)."""

    name: str
    version: str

    def score(self, records: Sequence[Mapping[str, Any]]) -> list[Score]:
        """Score a batch; one Score per record, in order."""
        ...

    def score_one(self, record: Mapping[str, Any], key: str | None = None) -> Score:
        """Score a single record on the low-latency path (no pandas).

        ``key`` is the record's stable key (``pipeline:source_key``); only scorers that choose
        per record (the A/B scorer, :mod:`scoring.ab`) use it, the others accept and ignore it.
        """
        ...

    def score_columns(
        self, records: Sequence[Mapping[str, Any]], keys: Sequence[str] | None = None
    ) -> ScoreColumns:
        """Score a batch for the pipeline, returning columns rather than objects.

        ``keys`` (one per record, or None) are the records' stable keys, as for ``score_one``.
        """
        ...


class ScoreColumns:
    """Scores for a batch, column by column (the pipeline's hot path avoids one object per row).

    ``values[i]``, ``grades[i]`` and ``factors[i]`` belong to the i-th record of the batch;
    ``factors[i]`` is a list of ``(feature, contribution)`` pairs, largest magnitude first.

    ``variant`` and ``model_version`` hold for the whole batch unless ``variants`` /
    ``model_versions`` are given: then ``variants[i]`` and ``model_versions[i]`` are the i-th
    record's own (an A/B test splits one batch between two models; see :mod:`scoring.ab`).
    Use :meth:`variant_at` / :meth:`model_version_at` to read either form.

    ``data_sufficient[i]``, when the scorer computes it, says whether the i-th record had
    enough inputs for a reliable score (``None``: not computed).
    """

    __slots__ = (
        "data_sufficient",
        "factors",
        "grades",
        "model",
        "model_version",
        "model_versions",
        "values",
        "variant",
        "variants",
    )

    def __init__(
        self,
        *,
        values: list[float],
        grades: list[str],
        factors: list[list[tuple[str, float]]],
        model: str,
        model_version: str,
        variant: str = "production",
        variants: list[str] | None = None,
        model_versions: list[str] | None = None,
        data_sufficient: list[bool] | None = None,
    ) -> None:
        self.values = values
        self.grades = grades
        self.factors = factors
        self.model = model
        self.model_version = model_version
        self.variant = variant
        self.variants = variants
        self.model_versions = model_versions
        self.data_sufficient = data_sufficient

    def __len__(self) -> int:
        return len(self.values)

    def variant_at(self, i: int) -> str:
        """The i-th record's variant."""
        return self.variant if self.variants is None else self.variants[i]

    def model_version_at(self, i: int) -> str:
        """The model version that scored the i-th record."""
        return self.model_version if self.model_versions is None else self.model_versions[i]


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
        variants: list[str] | None = None,
        model_versions: list[str] | None = None,
        data_sufficient: list[bool] | None = None,
    ) -> None:
        super().__init__(
            values=values,
            grades=grades,
            factors=factors,
            model=model,
            model_version=model_version,
            variant=variant,
            variants=variants,
            model_versions=model_versions,
            data_sufficient=data_sufficient,
        )
        self.failed: dict[int, ScoringInputError] = failed or {}


def factor_pairs(
    names: list[list[str]], values: list[list[float]]
) -> list[list[tuple[str, float]]]:
    """Each row's ``(name, contribution)`` pairs, zero contributions left out.

    Built by map/zip over the rows, not a Python loop per row: only rows with a zero among
    their top contributions are filtered one by one.
    """
    out: list[list[tuple[str, float]]] = list(map(list, map(zip, names, values)))
    for i, row in enumerate(values):
        if 0.0 in row:
            out[i] = [(name, c) for name, c in out[i] if c]
    return out


def scores_from_columns(
    cols: ScoreColumns, reasons_for: Callable[[Sequence[tuple[str, float]]], list[Reason]]
) -> list[Score]:
    """Score objects of a batch's columns, in order, with reasons and the sufficiency flag.

    Raises:
        ScoringInputError: the first record that could not be scored.
    """
    failed = getattr(cols, "failed", None)
    if failed:
        raise next(iter(failed.values()))
    enough = cols.data_sufficient or [True] * len(cols)
    return [
        Score(
            value=v,
            grade=g,
            top_factors=[Factor(feature=f, contribution=c) for f, c in fs],
            model=cols.model,
            model_version=cols.model_version_at(i),
            variant=cols.variant_at(i),
            reasons=reasons_for(fs),
            data_sufficient=ok,
        )
        for i, (v, g, fs, ok) in enumerate(
            zip(cols.values, cols.grades, cols.factors, enough, strict=True)
        )
    ]


def spread(
    n: int,
    rows: Sequence[int] | None,
    failed: Container[int],
    column: Sequence[T],
    fill: Callable[[], T],
) -> list[T]:
    """A column of the scored positions spread back over a batch of ``n`` records.

    ``rows[pos]`` is the batch index of position ``pos`` (``None``: every record, in order);
    batch indexes in ``failed`` and those without a position get ``fill()`` (a fresh value
    each, so a list fill is never shared).
    """
    out = [fill() for _ in range(n)]
    for pos, i in enumerate(rows if rows is not None else range(n)):
        if i not in failed:
            out[i] = column[pos]
    return out
