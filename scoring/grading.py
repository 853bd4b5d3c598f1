"""Grade thresholds: the A/B/C cut points of a model's probabilities, fixed or from the data.

A score grades A when its probability is at least the A threshold, B at least B, C at least C,
else D (:class:`~scoring.sklearn_model.SklearnLeadScorer`).  Fixed thresholds such as the
default ``(0.75, 0.5, 0.25)`` suit a model whose probabilities spread over ``[0, 1]``; at an
11 % base rate a calibrated model rarely says 0.25 and every lead grades D.  So a model can
instead be given *shares*: :func:`thresholds_for_shares` places the cuts so that about the top
10 % of its probabilities grade A, the next 20 % B and the next 30 % C (the default shares).

* Cuts fall half-way between two neighbouring distinct probabilities, so a new score between
  them grades as its neighbours do, and every observed probability at a cut grades alike
  (ties never straddle a grade).
* With ties a band cannot always hold its exact share: each cut takes the distinct value whose
  share at or above it is closest to the target, below the previous cut.  Probabilities with
  too few distinct values for three strictly decreasing cuts are refused.
* :func:`holdout_proba` gives the probabilities the shares are taken on at training time: the
  model's calibrated probabilities for its holdout rows (out of sample, and under the time
  split the most recent rows, i.e. the nearest to what production will score).

Only numpy is imported here: the scorer reads a card's thresholds with :func:`card_thresholds`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from junction.core.errors import ConfigError

if TYPE_CHECKING:
    from scoring.train import TrainedModel

__all__ = [
    "DEFAULT_SHARES",
    "DEFAULT_THRESHOLDS",
    "GRADES",
    "MIN_VALUES",
    "Thresholds",
    "card_thresholds",
    "check_shares",
    "check_thresholds",
    "grade_shares",
    "holdout_proba",
    "thresholds_for_shares",
]

Thresholds = tuple[float, float, float]
"""The grade thresholds (A, B, C): ``1 >= A > B > C >= 0``."""

GRADES = ("A", "B", "C", "D")
DEFAULT_THRESHOLDS: Thresholds = (0.75, 0.5, 0.25)
DEFAULT_SHARES: Thresholds = (0.1, 0.2, 0.3)
MIN_VALUES = 20
"""Fewer probabilities than this cannot place three cuts meaningfully."""


def _three(values: Sequence[float], what: str) -> Thresholds:
    try:
        t = tuple(float(x) for x in values)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be three numbers") from None
    if len(t) != 3 or not all(math.isfinite(x) for x in t):
        raise ConfigError(f"{what} must be three numbers", context={"count": len(t)})
    return t[0], t[1], t[2]


def check_thresholds(values: Sequence[float]) -> Thresholds:
    """Validate grade thresholds (A, B, C): three numbers, ``1 >= A > B > C >= 0``.

    Raises:
        ConfigError: not three numbers, or not strictly decreasing within ``[0, 1]``.
    """
    t = _three(values, "grade thresholds")
    if not 1.0 >= t[0] > t[1] > t[2] >= 0.0:
        raise ConfigError("grade thresholds must be three numbers, 1 >= A > B > C >= 0")
    return t


def check_shares(values: Sequence[float]) -> Thresholds:
    """Validate grade shares (A, B, C): each above 0, together at most 1 (D takes the rest).

    Raises:
        ConfigError: not three numbers, one of them not above 0, or a sum above 1.
    """
    s = _three(values, "grade shares")
    if min(s) <= 0.0 or sum(s) > 1.0 + 1e-9:
        raise ConfigError(
            "grade shares must be three numbers above 0 that add up to at most 1",
            context={"shares": list(s)},
        )
    return s


def _probabilities(proba: Sequence[float] | npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    p = np.asarray(proba, dtype=np.float64).ravel()
    if p.size < MIN_VALUES:
        raise ConfigError(
            f"grade shares need at least {MIN_VALUES} probabilities", context={"n": int(p.size)}
        )
    if not np.all(np.isfinite(p)) or p.min() < 0.0 or p.max() > 1.0:
        raise ConfigError("probabilities must be finite numbers in [0, 1]")
    return p


def thresholds_for_shares(
    proba: Sequence[float] | npt.NDArray[Any], shares: Sequence[float] = DEFAULT_SHARES
) -> Thresholds:
    """The thresholds (A, B, C) that grade about ``shares`` of ``proba`` A, B and C.

    ``shares`` are the bands' own shares, best first: ``(0.1, 0.2, 0.3)`` grades the top 10 %
    A, the next 20 % B, the next 30 % C and the remaining 40 % D.

    Raises:
        ConfigError: invalid shares; fewer than :data:`MIN_VALUES` probabilities, or one not
            finite or outside ``[0, 1]``; too few distinct probabilities for three cuts.
    """
    s = check_shares(shares)
    p = _probabilities(proba)
    values, counts = np.unique(p, return_counts=True)
    values, counts = values[::-1], counts[::-1]  # highest first
    at_or_above = np.cumsum(counts) / p.size  # share of probabilities >= values[i]
    last = len(values) - 1
    cuts: list[float] = []
    start = 0
    for k, target in enumerate(np.cumsum(s).tolist()):
        # leave a lower distinct value for each cut still to place
        stop = last - (2 - k)
        if start > stop:
            raise ConfigError(
                "the probabilities take too few distinct values for three grade cuts",
                context={"distinct": len(values)},
            )
        window = np.abs(at_or_above[start : stop + 1] - target)
        i = start + int(np.argmin(window))  # the first of equals: the smaller share
        cut = values[i] if i == last else (values[i] + values[i + 1]) / 2.0
        cuts.append(float(cut))
        start = i + 1
    return check_thresholds(cuts)


def grade_shares(
    proba: Sequence[float] | npt.NDArray[Any], thresholds: Sequence[float]
) -> dict[str, float]:
    """The share of ``proba`` that each grade gets under ``thresholds`` (A to D)."""
    a, b, c = check_thresholds(thresholds)
    p = np.asarray(proba, dtype=np.float64).ravel()
    if p.size == 0:
        return dict.fromkeys(GRADES, 0.0)
    idx = (p < a).astype(np.intp) + (p < b) + (p < c)
    counts = np.bincount(idx, minlength=4)
    return {g: float(n) / p.size for g, n in zip(GRADES, counts.tolist(), strict=True)}


def card_thresholds(card: Mapping[str, Any]) -> Thresholds | None:
    """A model card's ``grade_thresholds`` (``{"A": .., "B": .., "C": ..}``), or None.

    None when the card has none or they are not valid thresholds (the caller's default
    applies, as for a card written before thresholds were recorded).
    """
    raw = card.get("grade_thresholds")
    if not isinstance(raw, Mapping):
        return None
    values = [raw.get(g) for g in "ABC"]
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
        return None
    try:
        return check_thresholds([float(v) for v in values])  # type: ignore[arg-type]
    except ConfigError:
        return None


def holdout_proba(trained: TrainedModel) -> npt.NDArray[np.float64]:
    """The calibrated probabilities of ``trained``'s holdout rows, as the trainer computed them."""
    if trained.holdout_proba is None:
        raise ConfigError("the trained model carries no holdout probabilities")
    return trained.holdout_proba
