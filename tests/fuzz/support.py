"""Shared settings and strategies of the fuzz tests."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# a longer local hunt: JUNCTION_FUZZ_SCALE=50 multiplies every budget (CI runs with 1)
SCALE = max(1, int(os.environ.get("JUNCTION_FUZZ_SCALE", "1")))


def fuzz_settings(max_examples: int) -> Any:
    """``max_examples`` inputs, each with a generous deadline (it bounds a hang, not speed)."""
    return settings(
        max_examples=max_examples * SCALE,
        deadline=timedelta(seconds=10),  # bounds a hang; a loaded CI box is slow, not hung
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )


# values a raw record can hold: what JSON, CSV cells and XML converters produce
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "-1",
            "1e309",
            "NaN",
            "inf",
            "2026-02-30",
            "2026-03-01T10:00:00Z",
            "12,5",
            "1 234,56",
            "+7 (999) 123-45-67",
            "a@b",
            "@",
            "US",
            "ru",
            "\x00",
            "\ufeff",
            "true",
            "нет",
            "  x  ",
            "9" * 40,
            "1" * 400,
        ]
    ),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
