"""Normalize and validate: the mapping turns raw dicts into canonical models, then CEL rules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from junction.core.errors import RecordError, RuleError
from junction.pipeline.route import check_rules_compile, failed_rule
from mappings.engine import compile_mapping, load_spec


class Normalizer:
    """A compiled mapping plus the pipeline's validation rules."""

    def __init__(self, mapping: str, rules: Sequence[tuple[str, str]]) -> None:
        """Load and compile the mapping spec and the rules."""
        self.mapping = compile_mapping(load_spec(mapping))
        self.entity: str = self.mapping.entity
        self.fields: set[str] = set(self.mapping.model.model_fields)
        self.rules = check_rules_compile(rules, self.entity, self.fields)

    def apply(
        self, records: Sequence[dict[str, Any]]
    ) -> tuple[list[tuple[int, Any]], list[tuple[int, RecordError]]]:
        """Return (index, model) for good records and (index, error) for the rest."""
        good, bad = self.mapping.apply_batch(records)
        if not self.rules:
            return good, list(bad)
        bad = list(bad)
        if len(self.rules) > 1:
            kept: list[tuple[int, Any]] = []
            for i, model in good:
                err = failed_rule(self.rules, model, self.entity)
                if err is None:
                    kept.append((i, model))
                else:
                    bad.append((i, err))
            return kept, bad
        # one rule (the usual case): failed_rule's loop without a call per record
        [rule] = self.rules
        check, name = rule.check, rule.name
        kept = []
        for i, model in good:
            try:
                ok = check(model)
            except RuleError as exc:
                bad.append((i, exc))
                continue
            if ok:
                kept.append((i, model))
            else:
                bad.append((i, RuleError(f"rule {name!r} failed", context={"rule": name})))
        return kept, bad
