"""The built-in lead feature spec (``lead.v1``) as a :class:`~scoring.spec.FeatureSpec` value.

The features and their derivation live in :mod:`scoring.features` (one row) and
:mod:`scoring.batch_features` (a batch, the pipeline's hot path); this wraps them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from junction.core.errors import ScoringInputError
from scoring.batch_features import extract_columns
from scoring.features import BINARY, CATEGORICAL, FEATURE_SCHEMA_HASH, NUMERIC, extract
from scoring.spec import FeatureColumns


class LeadSpec:
    """The thirteen lead features of :mod:`scoring.features`."""

    spec_id = "lead.v1"
    categorical: tuple[str, ...] = CATEGORICAL
    numeric: tuple[str, ...] = NUMERIC
    binary: tuple[str, ...] = BINARY
    schema_hash: str = FEATURE_SCHEMA_HASH
    source_fields: tuple[str, ...] = (
        "lead_source", "industry", "country", "title", "employees", "annual_revenue",
        "page_views", "visits", "email_opens", "phone", "email",
    )  # fmt: skip

    def extract(self, record: Any) -> tuple[Any, ...]:
        """The feature row of one canonical lead."""
        return extract(record)

    def extract_columns(
        self, records: Sequence[Any]
    ) -> tuple[FeatureColumns, dict[int, ScoringInputError]]:
        """Features of a batch of canonical leads."""
        return extract_columns(records)

    def to_dict(self) -> dict[str, Any]:
        """``{"spec": "lead.v1", "schema_hash": ...}``: the code is the spec."""
        return {"spec": self.spec_id, "schema_hash": self.schema_hash}

    def __repr__(self) -> str:
        return "LeadSpec(lead.v1)"


LEAD_SPEC = LeadSpec()
