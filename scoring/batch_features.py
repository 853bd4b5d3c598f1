"""Feature extraction for a whole batch, column by column (the pipeline's scoring hot path).

:func:`extract_columns` gives the same values as :func:`scoring.features.extract` row by row,
but works one field at a time over the batch: comprehensions over memo dicts for the
categories and one ``numpy`` conversion for the numbers, about 1 µs per record instead of ~3.

The fast path assumes a clean batch of one record type.  When anything is off (mixed types, a
value of the wrong kind, a negative count) it falls back to :func:`~scoring.features.extract`
per record, which names the failing records; so a bad record costs its batch the slow path,
never a wrong score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from junction.core.errors import ScoringInputError
from scoring.features import (
    COUNTRY,
    FREE_DOMAIN,
    INDUSTRY,
    LEAD_SOURCE,
    SENIORITY,
    SOURCE_FIELDS,
    FeatureRow,
    extract,
)
from scoring.spec import FeatureColumns

# what the fast path can meet in a bad batch; anything else is a bug and propagates
_FAST_PATH_MISSES = (ScoringInputError, TypeError, ValueError, AttributeError, OverflowError)


def extract_columns(
    records: Sequence[Any],
) -> tuple[FeatureColumns, dict[int, ScoringInputError]]:
    """Extract the features of a batch of canonical leads (dicts or objects with the fields).

    Returns:
        The feature columns of the records that can be scored, and ``{batch index: error}``
        for those that cannot (empty for a clean batch).
    """
    if len(records) and len({type(r) for r in records}) == 1:
        try:
            return _fast(records), {}
        except _FAST_PATH_MISSES:
            pass  # some record is not clean: let the per-record path say which
    return _per_record(records)


_SOURCE_ROW = itemgetter(*SOURCE_FIELDS)
_AFTER = itemgetter(2)


def _gather(records: Sequence[Any]) -> Sequence[Sequence[Any]]:
    # one accessor for the whole batch: the records were checked to share one type
    first = records[0]
    if isinstance(first, Mapping):
        return [[r.get(f) for r in records] for f in SOURCE_FIELDS]
    fields = getattr(type(first), "model_fields", None)
    if isinstance(fields, dict) and all(f in fields for f in SOURCE_FIELDS):
        # a pydantic model keeps every field's value in its instance dict; reading it there
        # skips the attribute hooks (BaseModel defines __getattr__) eleven times per record
        try:
            return list(zip(*map(_SOURCE_ROW, map(vars, records)), strict=True))
        except KeyError:
            pass  # an instance built without some field: the attribute path below
    return [[getattr(r, f, None) for r in records] for f in SOURCE_FIELDS]


def _fast(records: Sequence[Any]) -> FeatureColumns:
    ls, ind, ctry, title, emp, rev, views, visits, opens, phone, email = _gather(records)
    cats = (
        list(map(LEAD_SOURCE.__getitem__, ls)),
        list(map(INDUSTRY.__getitem__, ind)),
        list(map(COUNTRY.__getitem__, ctry)),
        list(map(SENIORITY.__getitem__, title)),
    )
    # None becomes NaN here, exactly as features._number reads it
    num = np.array([emp, rev, views, visits, opens], dtype=np.float64)
    if ((num < 0.0) | np.isinf(num)).any():
        raise ValueError("negative or infinite number")
    missing = np.isnan(num)
    num[missing] = 0.0
    np.log1p(num[:2], out=num[:2])
    n = len(records)
    binary = np.empty((4, n), dtype=np.float64)
    binary[0] = np.fromiter(map(bool, phone), dtype=np.float64, count=n)
    if None in email:
        binary[1] = [FREE_DOMAIN[e[e.rfind("@") + 1 :]] if e else 0.0 for e in email]
    else:  # the same lookups over the domains, split off by C calls ("" has domain "": 0.0)
        binary[1] = list(
            map(FREE_DOMAIN.__getitem__, map(_AFTER, map(str.rpartition, email, repeat("@"))))
        )
    binary[2:] = missing[:2]
    return FeatureColumns(cats, num, binary, None)


def _per_record(records: Sequence[Any]) -> tuple[FeatureColumns, dict[int, ScoringInputError]]:
    good: list[FeatureRow] = []
    rows: list[int] = []
    errors: dict[int, ScoringInputError] = {}
    for i, record in enumerate(records):
        try:
            good.append(extract(record))
        except ScoringInputError as exc:
            exc.context.setdefault("index", i)
            errors[i] = exc
        else:
            rows.append(i)
    return columns_from_rows(good, rows if errors else None), errors


def columns_from_rows(rows: Sequence[FeatureRow], index: list[int] | None = None) -> FeatureColumns:
    """Turn feature rows (from :func:`scoring.features.extract`) into :class:`FeatureColumns`."""
    if not rows:
        empty = np.empty((0, 0), dtype=np.float64)
        return FeatureColumns(([], [], [], []), empty.reshape(5, 0), empty.reshape(4, 0), index)
    cols = list(zip(*rows, strict=True))
    cats = (list(cols[0]), list(cols[1]), list(cols[2]), list(cols[3]))
    num = np.array(cols[4:9], dtype=np.float64)
    binary = np.array(cols[9:13], dtype=np.float64)
    return FeatureColumns(cats, num, binary, index)


def to_matrix(rows: Sequence[FeatureRow]) -> npt.NDArray[np.object_]:
    """Return feature rows as the ``(n, 13)`` object array the scikit-learn pipeline takes."""
    out = np.empty((len(rows), 13), dtype=object)
    for i, row in enumerate(rows):
        out[i] = row
    return out
