"""Routing: CEL conditions pick channels; the one retry policy for deliveries lives here too."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from junction.core.errors import RuleError
from junction.pipeline.config import DeliveryConfig, Route
from junction.pipeline.expressions import Expression

SCORE_FIELDS = ("value", "grade", "model_version")


class Router:
    """Compiled routes of one pipeline."""

    def __init__(
        self, routes: Sequence[Route], entity: str, record_fields: set[str] | None = None
    ) -> None:
        """Compile every route condition once (field names checked against ``record_fields``)."""
        variables = {entity: "record", "record": "record", "score": "score"}
        fields = {"score": set(SCORE_FIELDS)}
        if record_fields is not None:
            fields.update({entity: record_fields, "record": record_fields})
        self._when: list[tuple[Expression, list[str]]] = []
        self._otherwise: list[str] = []
        for i, route in enumerate(routes):
            if route.when is not None:
                expr = Expression(
                    route.when, name=f"route[{i}]", variables=variables, fields=fields
                )
                self._when.append((expr, route.targets))
            else:
                self._otherwise.extend(route.targets)
        self.entity = entity
        self.empty = not self._when and not self._otherwise

    def targets(self, record: Any, score: Mapping[str, Any] | None) -> list[str]:
        """Return the channels for one record: every matching route, else the `otherwise` ones."""
        out: list[str] = []
        for expr, targets in self._when:
            if expr.check(record, score):
                for t in targets:
                    if t not in out:
                        out.append(t)
        return out or list(self._otherwise)

    def targets_batch(
        self, records: Sequence[Any], scores: Sequence[Mapping[str, Any] | None] | None
    ) -> list[list[str] | RuleError]:
        """:meth:`targets` of many records at once (``scores[k]`` belongs to ``records[k]``).

        A record whose route condition cannot be evaluated gets its ``RuleError`` in its place
        (its later routes are not evaluated, as :meth:`targets` stops there).  The returned
        lists may be shared between records: read them, do not change them.
        """
        n = len(records)
        views: Sequence[Mapping[str, Any] | None] = scores if scores is not None else [None] * n
        out: list[Any] = [None] * n  # None: no route matched (yet)
        for expr, targets in self._when:
            check = expr.check
            first = list(dict.fromkeys(targets))
            for k in range(n):
                cur = out[k]
                if cur.__class__ is not list and cur is not None:
                    continue  # an error stopped this record
                try:
                    hit = check(records[k], views[k])
                except RuleError as exc:
                    out[k] = exc
                    continue
                if hit:
                    if cur is None:
                        out[k] = first
                    else:
                        out[k] = cur = list(cur)
                        for t in targets:
                            if t not in cur:
                                cur.append(t)
        otherwise = self._otherwise
        return [otherwise if x is None else x for x in out]


def delivery_id(record_id: str, channel: str) -> str:
    """The idempotency key of one record's delivery to one channel (no dots, per the spec)."""
    return f"{record_id}:{channel}".replace(".", "_")


def next_delay(attempt_no: int, policy: DeliveryConfig, retry_after: float | None) -> float | None:
    """Seconds until the next attempt after failed attempt ``attempt_no``; None when exhausted.

    The schedule is the Standard Webhooks one with ±10 % jitter, so retries of many deliveries do
    not synchronize; a receiver's Retry-After is honoured when it asks for longer.
    """
    if attempt_no >= policy.max_attempts:
        return None
    base = policy.schedule_s[attempt_no - 1]
    delay = base * random.uniform(0.9, 1.1)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def check_rules_compile(
    rules: Sequence[tuple[str, str]], entity: str, record_fields: set[str] | None = None
) -> list[Expression]:
    """Compile validation rules (name, expr) for ``entity``."""
    variables = {entity: "record", "record": "record"}
    fields = {} if record_fields is None else {entity: record_fields, "record": record_fields}
    return [Expression(expr, name=name, variables=variables, fields=fields) for name, expr in rules]


def failed_rule(rules: Sequence[Expression], record: Any, entity: str) -> RuleError | None:
    """Return the first rule ``record`` fails, as a RuleError, or None."""
    for rule in rules:
        try:
            ok = rule.check(record)
        except RuleError as exc:
            return exc
        if not ok:
            return RuleError(f"rule {rule.name!r} failed", context={"rule": rule.name})
    return None
