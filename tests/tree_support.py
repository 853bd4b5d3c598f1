"""Shared data for the tree and calibration tests: a small spec with NaNs, and lead data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from junction.core.errors import ScoringInputError
from scoring.lead_spec import LEAD_SPEC
from scoring.spec import FeatureColumns, per_record_columns, to_matrix
from scoring.synthetic import generate_leads


class ToySpec:
    """Two categoricals, two numerics (with missing values as NaN) and a flag."""

    spec_id = "tabular.v1"
    categorical: tuple[str, ...] = ("colour", "size")
    numeric: tuple[str, ...] = ("weight", "age")
    binary: tuple[str, ...] = ("flag",)
    schema_hash = "toy-hash"

    def extract(self, record: Any) -> tuple[Any, ...]:
        return tuple(record[n] for n in (*self.categorical, *self.numeric, *self.binary))

    def extract_columns(
        self, records: Sequence[Any]
    ) -> tuple[FeatureColumns, dict[int, ScoringInputError]]:
        return per_record_columns(self, records)

    def to_dict(self) -> dict[str, Any]:
        return {"spec": "tabular.v1", "schema_hash": self.schema_hash}


TOY_SPEC = ToySpec()
COLOURS = [f"c{i}" for i in range(12)]


def toy_rows(n: int, seed: int, *, colours: Sequence[str] = COLOURS) -> list[tuple[Any, ...]]:
    """Rows of TOY_SPEC; ``colours`` beyond the first twelve are unseen in training."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        weight = float(rng.normal(50, 15)) if rng.random() > 0.15 else float("nan")
        age = float(rng.integers(0, 90)) if rng.random() > 0.05 else float("nan")
        rows.append(
            (
                str(rng.choice(colours)),
                str(rng.choice(["s", "m", "l", "xl"])),
                weight,
                age,
                float(rng.random() < 0.3),
            )
        )
    return rows


def toy_labels(rows: Sequence[tuple[Any, ...]], seed: int) -> np.ndarray:
    """Labels with a known signal in every feature, NaN weight included."""
    rng = np.random.default_rng(seed + 1)
    z = []
    for colour, size, weight, age, flag in rows:
        v = (
            0.25 * (int(colour[1:]) % 5 if colour[1:].isdigit() else 0)
            - 0.6
            + (0.8 if size == "xl" else 0.0)
            + flag
        )
        v += 0.7 if weight != weight else 0.03 * (weight - 50)
        v += 0.0 if age != age else -0.02 * (age - 45)
        z.append(v)
    p = 1 / (1 + np.exp(-np.array(z)))
    labels: np.ndarray = (rng.random(len(rows)) < p).astype(np.int64)
    return labels


def lead_data(n: int, seed: int) -> tuple[list[tuple[Any, ...]], np.ndarray, np.ndarray]:
    """Feature rows, their ``to_matrix`` array and labels of ``n`` synthetic leads."""
    leads = generate_leads(n, seed=seed)
    y = np.array([lead.pop("converted") for lead in leads], dtype=np.int64)
    rows = [LEAD_SPEC.extract(lead) for lead in leads]
    return rows, to_matrix(LEAD_SPEC, rows), y
