"""The data-sufficiency flag: were enough of a record's inputs present for a reliable score?

Like Einstein's "insufficient data" and HubSpot's data-quality hint, but per record: a score is
*sufficient* when at least ``min_share`` (default 0.5) of the spec's informative inputs are
present.  ``needed = ceil(min_share * inputs)``; a record with ``present >= needed`` is
sufficient.  ``min_share = 0`` makes every record sufficient, ``1`` demands every input.

Informative inputs of the lead spec (``lead.v1``), eight of them, so 4 are needed by default:

==================  =========================================================================
input               present when
==================  =========================================================================
``lead_source``     the category is not ``missing``
``industry``        the category is not ``missing``
``country``         the category is not ``missing``
``seniority``       the category is not ``missing`` (a job title was given)
``employees``       ``employees_missing`` is 0
``annual_revenue``  ``annual_revenue_missing`` is 0
``engagement``      any of ``page_views``, ``visits``, ``email_opens`` is above 0 (one input:
                    a lead we have never seen engage looks the same as one we did not track)
``phone``           ``has_phone`` is 1
==================  =========================================================================

``free_email`` is not an input: 0 means both "a business address" and "no address".

Any other spec (e.g. a tabular one): each categorical is an input, present unless its value is
``missing`` or empty; each numeric is an input, present unless it is NaN or its indicator flag
(a binary feature named ``<name>_missing``, or ``<name without log_>_missing``) is 1.  Binary
features are not inputs (0 cannot be told from absent).

:func:`sufficient` takes one feature row (``spec.extract(record)``); :func:`sufficient_columns`
takes a batch's :class:`~scoring.spec.FeatureColumns` and returns one flag per column position
(the scorable records; ``cols.rows`` maps positions to the batch), numpy over the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from junction.core.errors import ConfigError
from scoring.spec import FeatureColumns, FeatureSpec

__all__ = [
    "DEFAULT_MIN_SHARE",
    "LEAD_INPUTS",
    "inputs",
    "needed",
    "present_columns",
    "present_count",
    "sufficient",
    "sufficient_columns",
]

DEFAULT_MIN_SHARE = 0.5
MISSING = "missing"
LEAD_INPUTS: tuple[str, ...] = (
    "lead_source",
    "industry",
    "country",
    "seniority",
    "employees",
    "annual_revenue",
    "engagement",
    "phone",
)
_LEAD_SPEC_ID = "lead.v1"
_ABSENT_CATEGORIES = frozenset({MISSING, ""})


@dataclass(frozen=True)
class _Plan:
    """Where a spec's informative inputs sit in its feature row."""

    names: tuple[str, ...]
    categorical: tuple[int, ...]  # positions within spec.categorical
    numeric: tuple[tuple[int, int | None], ...]  # (numeric position, its flag's binary position)


_PLANS: dict[tuple[str, str, tuple[str, ...]], _Plan] = {}


def _plan(spec: FeatureSpec) -> _Plan:
    key = (spec.spec_id, spec.schema_hash, (*spec.categorical, *spec.numeric, *spec.binary))
    plan = _PLANS.get(key)
    if plan is None:
        binary = {name: j for j, name in enumerate(spec.binary)}
        numeric: list[tuple[int, int | None]] = []
        for i, name in enumerate(spec.numeric):
            flag = binary.get(f"{name}_missing")
            if flag is None and name.startswith("log_"):
                flag = binary.get(f"{name[4:]}_missing")
            numeric.append((i, flag))
        plan = _Plan(
            names=(*spec.categorical, *spec.numeric),
            categorical=tuple(range(len(spec.categorical))),
            numeric=tuple(numeric),
        )
        if len(_PLANS) < 256:
            _PLANS[key] = plan
    return plan


def _is_lead(spec: FeatureSpec) -> bool:
    return spec.spec_id == _LEAD_SPEC_ID


def _check_share(min_share: float) -> float:
    share = float(min_share)
    if not 0.0 <= share <= 1.0:
        raise ConfigError("the data-sufficiency share must be between 0 and 1")
    return share


def inputs(spec: FeatureSpec) -> tuple[str, ...]:
    """Names of ``spec``'s informative inputs (see the module docstring)."""
    return LEAD_INPUTS if _is_lead(spec) else _plan(spec).names


def needed(spec: FeatureSpec, min_share: float = DEFAULT_MIN_SHARE) -> int:
    """How many inputs must be present for a sufficient record.

    Raises:
        ConfigError: ``min_share`` is not within [0, 1].
    """
    share = _check_share(min_share)
    # the epsilon keeps 0.5 * 8 at 4 whatever the float rounding
    return max(0, math.ceil(share * len(inputs(spec)) - 1e-9))


def present_count(spec: FeatureSpec, row: Sequence[Any]) -> int:
    """How many of ``spec``'s informative inputs one feature row has."""
    if _is_lead(spec):
        # (lead_source, industry, country, seniority, log_emp, log_rev, views, visits, opens,
        #  has_phone, free_email, employees_missing, annual_revenue_missing)
        return int(
            (row[0] != MISSING)
            + (row[1] != MISSING)
            + (row[2] != MISSING)
            + (row[3] != MISSING)
            + (not row[11])
            + (not row[12])
            + (row[6] > 0.0 or row[7] > 0.0 or row[8] > 0.0)
            + bool(row[9])
        )
    plan = _plan(spec)
    n_cat, n_num = len(spec.categorical), len(spec.numeric)
    count = sum(row[i] not in _ABSENT_CATEGORIES for i in plan.categorical)
    for i, flag in plan.numeric:
        x = row[n_cat + i]
        if x == x and (flag is None or not row[n_cat + n_num + flag]):
            count += 1
    return int(count)


def sufficient(
    spec: FeatureSpec, row: Sequence[Any], *, min_share: float = DEFAULT_MIN_SHARE
) -> bool:
    """Whether one feature row has enough inputs for a reliable score.

    Raises:
        ConfigError: ``min_share`` is not within [0, 1].
    """
    return present_count(spec, row) >= needed(spec, min_share)


def present_columns(spec: FeatureSpec, cols: FeatureColumns) -> np.ndarray:
    """How many informative inputs each column position of a batch has (an int array)."""
    n = int(cols.numeric.shape[1])
    count = np.zeros(n, dtype=np.int64)
    if n == 0:
        return count
    if _is_lead(spec):
        for values in cols.categorical:
            count += np.fromiter(map(MISSING.__ne__, values), dtype=bool, count=n)
        count += cols.binary[2] == 0.0
        count += cols.binary[3] == 0.0
        count += (cols.numeric[2:5] > 0.0).any(axis=0)
        count += cols.binary[0] != 0.0
        return count
    plan = _plan(spec)
    for i in plan.categorical:
        values = cols.categorical[i]
        count += np.fromiter((v not in _ABSENT_CATEGORIES for v in values), dtype=bool, count=n)
    for i, flag in plan.numeric:
        ok = ~np.isnan(cols.numeric[i])
        if flag is not None:
            ok &= cols.binary[flag] == 0.0
        count += ok
    return count


def sufficient_columns(
    spec: FeatureSpec, cols: FeatureColumns, *, min_share: float = DEFAULT_MIN_SHARE
) -> list[bool]:
    """:func:`sufficient` for each column position of a batch, vectorized.

    Raises:
        ConfigError: ``min_share`` is not within [0, 1].
    """
    need = needed(spec, min_share)
    flags: list[bool] = (present_columns(spec, cols) >= need).tolist()
    return flags
