"""Outcome labels from the records themselves (``scoring.outcome`` in a pipeline's config).

A CRM poll that returns a later version of a lead says what became of it (``status:
converted``).  :class:`OutcomeRules` compiles the config's two CEL expressions over ``record``
(or the entity's name, as validation rules do) once; :meth:`OutcomeRules.rows` turns a batch's
stored records into outcome rows for ``junction.store.outcomes`` (label 1 when ``positive_when``
holds, else 0 when ``negative_when`` holds, else no row: the outcome is not known yet).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from junction.core.errors import RuleError
from junction.pipeline.config import OutcomeConfig
from junction.pipeline.route import check_rules_compile

log = logging.getLogger(__name__)


class OutcomeRules:
    """The compiled outcome expressions of one pipeline."""

    def __init__(
        self, pipeline: str, cfg: OutcomeConfig, entity: str, fields: set[str] | None
    ) -> None:
        """Compile ``cfg``'s expressions (a ConfigError names the one that does not compile)."""
        named = [("outcome.positive_when", cfg.positive_when)]
        if cfg.negative_when is not None:
            named.append(("outcome.negative_when", cfg.negative_when))
        compiled = check_rules_compile(named, entity, fields)
        self.positive = compiled[0]
        self.negative = compiled[1] if len(compiled) > 1 else None
        self.kind = cfg.kind
        self.pipeline = pipeline
        self.source = f"pipeline:{pipeline}"[:64]

    def label(self, record: Any) -> int | None:
        """1, 0 or None (not known yet) for one canonical record."""
        if self.positive.check(record):
            return 1
        if self.negative is not None and self.negative.check(record):
            return 0
        return None

    def rows(
        self, items: Sequence[tuple[str, Any]], now: float
    ) -> list[tuple[str, str, int, float, str, float]]:
        """Outcome rows for ``(source_key, canonical record)`` pairs of stored records.

        ``observed_at`` is the record's ``updated_at`` when it has one, else ``now``.  A record
        an expression cannot evaluate gives no outcome (counted in one warning per batch).
        """
        out: list[tuple[str, str, int, float, str, float]] = []
        kind, source, prefix = self.kind, self.source, f"{self.pipeline}:"
        failed = 0
        for source_key, record in items:
            try:
                label = self.label(record)
            except RuleError:
                failed += 1
                continue
            if label is None:
                continue
            changed = getattr(record, "updated_at", None)
            observed = changed.timestamp() if isinstance(changed, datetime) else now
            out.append((prefix + source_key, kind, label, observed, source, now))
        if failed:
            log.warning(
                "outcome expressions could not be evaluated",
                extra={"pipeline": self.pipeline, "records": failed},
            )
        return out


__all__ = ["OutcomeRules"]
