"""Routing: CEL conditions pick channels; the one retry policy for deliveries lives here too."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from junction.core.errors import RuleError
from junction.pipeline.config import DeliveryConfig, Route
from junction.pipeline.expressions import Expression

SCORE_FIELDS = ("value", "grade", "model_version")


# one routing target: (channel, route key); the route key names the route that chose the channel
Target = tuple[str, str]


class Router:
    """Compiled routes of one pipeline.

    Every target is a ``(channel, route key)`` pair (:meth:`Route.key`): the route that chose a
    channel decides its template and hygiene (dedupe, throttle, digest, escalation).  When two
    matching routes name the same channel, the first route wins it.
    """

    def __init__(
        self, routes: Sequence[Route], entity: str, record_fields: set[str] | None = None
    ) -> None:
        """Compile every route condition once (field names checked against ``record_fields``)."""
        variables = {entity: "record", "record": "record", "score": "score"}
        fields = {"score": set(SCORE_FIELDS)}
        if record_fields is not None:
            fields.update({entity: record_fields, "record": record_fields})
        # per `when` route: its condition, its targets (channels unique) and their channels
        self._when: list[tuple[Expression, list[Target], frozenset[str]]] = []
        otherwise: list[Target] = []
        for i, route in enumerate(routes):
            key = route.key(i)
            pairs = [(ch, key) for ch in dict.fromkeys(route.targets)]
            if route.when is not None:
                expr = Expression(
                    route.when, name=f"route[{i}]", variables=variables, fields=fields
                )
                self._when.append((expr, pairs, frozenset(route.targets)))
            else:
                otherwise.extend(pairs)
        self._otherwise = _first_per_channel(otherwise)
        self.entity = entity
        self.empty = not self._when and not self._otherwise

    def targets(self, record: Any, score: Mapping[str, Any] | None) -> list[Target]:
        """Return the targets of one record: every matching route, else the `otherwise` ones."""
        out: list[Target] = []
        seen: set[str] = set()
        for expr, pairs, _ in self._when:
            if expr.check(record, score):
                for pair in pairs:
                    if pair[0] not in seen:
                        seen.add(pair[0])
                        out.append(pair)
        return out or list(self._otherwise)

    def targets_batch(
        self, records: Sequence[Any], scores: Sequence[Mapping[str, Any] | None] | None
    ) -> list[list[Target] | RuleError]:
        """:meth:`targets` of many records at once (``scores[k]`` belongs to ``records[k]``).

        A record whose route condition cannot be evaluated gets its ``RuleError`` in its place
        (its later routes are not evaluated, as :meth:`targets` stops there).  The returned
        lists (and their pairs) may be shared between records: read them, do not change them.
        """
        n = len(records)
        views: Sequence[Mapping[str, Any] | None] = scores if scores is not None else [None] * n
        out: list[Any] = [None] * n  # None: no route matched (yet)
        for expr, pairs, channels in self._when:
            check = expr.check
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
                        out[k] = pairs
                    else:
                        taken = {ch for ch, _ in cur}
                        if not channels <= taken:
                            out[k] = [*cur, *(p for p in pairs if p[0] not in taken)]
        otherwise = self._otherwise
        return [otherwise if x is None else x for x in out]


def _first_per_channel(pairs: Sequence[Target]) -> list[Target]:
    """``pairs`` without the later ones of a channel already taken."""
    seen: set[str] = set()
    out: list[Target] = []
    for pair in pairs:
        if pair[0] not in seen:
            seen.add(pair[0])
            out.append(pair)
    return out


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
