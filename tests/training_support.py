"""Generated training data with a planted signal (or none), shared by the training tests."""

from __future__ import annotations

import math
import random
from typing import Any

from scoring.tabular import TabularSpec

SPEC = TabularSpec.model_validate(
    {
        "name": "signal",
        "features": [
            {"name": "x1", "kind": "numeric"},
            {"name": "x2", "kind": "numeric"},
            {"name": "tier", "kind": "categorical", "source": "Tier"},
        ],
        "label": {"field": "outcome", "positive": ["won"], "negative": ["lost"]},
        "exclude": ["call_seconds"],
    }
)


def planted(n: int, seed: int, *, signal: bool) -> list[dict[str, Any]]:
    """Rows whose outcome depends on x1 and the tier (``signal``) or on nothing at all."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        x1, x2 = rng.gauss(0, 1), rng.gauss(0, 1)
        tier = rng.choice(["gold", "silver", "bronze"])
        logit = -1.0 + (1.8 * x1 + {"gold": 1.0, "silver": 0.0, "bronze": -1.0}[tier]) * signal
        won = rng.random() < 1 / (1 + math.exp(-logit))
        rows.append(
            {
                "x1": f"{x1:.4f}",
                "x2": f"{x2:.4f}",
                "Tier": tier,
                "outcome": "won" if won else "lost",
                "call_seconds": str(i),
            }
        )
    return rows
