"""What each role does to a batch of one pipeline's items, and the rows it writes.

``PipelineStages`` compiles one pipeline once (mapping, rules, scorer, routes).  Its methods
take the items of one batch and fill :class:`Effects` with the rows the batch writes
(records, scores, deliveries, quarantine, heads, outcomes) and return the items that go on.
A fused worker (``--role normalize,score``) calls them in turn on the same items, in memory.

Each stage writes the effect it owns, exactly as the single-process pipeline writes it
(``junction.pipeline.prepare``): normalize → the canonical record and the outcome labels;
score → the score row; deliver → the record's version head and its outbox deliveries.  Every row
has a stable key, so a batch read again after a crash inserts nothing new.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from junction.core.errors import JunctionError, RecordError
from junction.pipeline.config import PipelineConfig
from junction.pipeline.prepare import BatchPreparer, Row, quarantine_row
from junction.pipeline.route import delivery_id
from junction.pipeline.stages.topics import Item
from scoring.base import Scorer
from scoring.reasons import ReasonBook

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from junction.store.repo import Store

# canonical fields that change with every version without being a change worth routing
_VOLATILE = {"updated_at"}


@dataclass
class Effects:
    """The rows one batch writes, in one transaction with its relay rows."""

    records: list[Row] = field(default_factory=list)
    scores: list[Row] = field(default_factory=list)
    deliveries: list[Row] = field(default_factory=list)
    quarantined: list[Row] = field(default_factory=list)
    heads: list[Row] = field(default_factory=list)
    outcomes: list[Row] = field(default_factory=list)

    def write(self, store: Store, also: Callable[[Connection], object] | None = None) -> None:
        """Write these rows in one store transaction, with ``also`` (the batch's relay rows and
        marks) in the same one.  No cursor: a stage's position is its consumed offsets.

        Raises:
            UnavailableError: the store is away (nothing of the batch was written).
        """
        store.write_batch(
            records=self.records,
            scores=self.scores,
            deliveries=self.deliveries,
            quarantined=self.quarantined,
            cursor=None,
            heads=self.heads,
            outcomes=self.outcomes,
            also=also,
        )


def _where(item: Item) -> dict[str, Any]:
    prov = dict(item.provenance)
    if item.src is not None:
        prov["stage_message"] = f"{item.src.topic}:{item.src.partition}:{item.src.offset}"
    return prov


def _original(item: Item) -> bytes:
    """The bytes to keep in quarantine: the consumed message, else the source row."""
    if item.src is not None:
        return item.src.value
    return orjson.dumps(item.record)


class PipelineStages:
    """One pipeline compiled for the stage roles."""

    def __init__(
        self, name: str, cfg: PipelineConfig, scorer: Scorer | None, *, connector: str
    ) -> None:
        """Compile the mapping and rules, and the routes; ``scorer`` is loaded already.

        The compiled parts are the single-process pipeline's own (``BatchPreparer``), so both
        modes map, validate, score and route with the same objects.
        """
        compiled = BatchPreparer(name, cfg, connector, scorer)
        self.name = name
        self.cfg = cfg
        self.connector = connector
        self.normalizer = compiled.normalizer
        self.entity = compiled.entity
        self.model_cls: Any = self.normalizer.mapping.model
        self.router = compiled.router
        self.held_routes = compiled.held_routes
        self.scorer = scorer
        self.keyed_scoring = compiled.keyed_scoring
        self.reason_book: ReasonBook = compiled.reason_book
        self.outcomes = compiled.outcomes
        # a deliver-only worker loads no model, yet routes scored events
        self.event_type = f"{self.entity}.scored" if cfg.scoring else f"{self.entity}.received"

    def _quarantine(self, out: Effects, stage: str, item: Item, exc: JunctionError) -> None:
        out.quarantined.append(
            quarantine_row(
                self.name,
                stage,
                f"{self.name}:{item.key}",
                exc,
                _original(item),
                _where(item),
                None,
            )
        )

    def _models(self, items: list[Item], out: Effects, stage: str) -> list[Item]:
        """Give every item its canonical model (validated from the message when not fused).

        A worker's ``MessageReader`` has usually validated a consumed record with its message
        (ADR-0031); one it handed on is validated here from the dict its message decoded to.
        Either way its JSON is then the model's own serialization, as ``normalize`` writes it.
        """
        kept = []
        validate = self.model_cls.model_validate
        to_json = self.model_cls.__pydantic_serializer__.to_json
        for item in items:
            if item.model is None:
                try:
                    if item.body is not None:
                        item.model = self.model_cls.model_validate_json(item.body)
                    else:
                        item.model = validate(item.record or {})
                        item.body = to_json(item.model, exclude_none=True)
                except ValueError as exc:
                    err = RecordError(
                        "stage message's record is not a valid canonical "
                        f"{self.entity}: {type(exc).__name__}",
                        code="stage_message",
                        details=str(exc)[:500],
                    )
                    self._quarantine(out, stage, item, err)
                    continue
            kept.append(item)
        return kept

    # --- normalize: raw → canonical -----------------------------------------------------------

    def normalize(self, items: list[Item], out: Effects) -> list[Item]:
        """Map and validate raw rows; store the canonical records; failures to quarantine."""
        raw = [it.record or {} for it in items]
        good, bad = self.normalizer.apply(raw)
        for i, exc in bad:
            stage = "validate" if exc.code == "rule_failed" else "normalize"
            self._quarantine(out, stage, items[i], exc)
        now = time.time()
        source_keys = self.normalizer.mapping.keys_of([raw[i] for i, _ in good])
        to_json = self.model_cls.__pydantic_serializer__.to_json
        passed: list[Item] = []
        labelled: list[tuple[str, Any]] = []
        for (i, model), sk in zip(good, source_keys, strict=True):
            item = items[i]
            body = to_json(model, exclude_none=True)
            item.model, item.body = model, body
            item.source_key = sk or item.key
            item.entity, item.schema_version = self.entity, model.schema_version
            prov = {"connector": item.provenance.get("connector", self.connector), **_where(item)}
            out.records.append(
                (
                    item.record_id,
                    self.name,
                    self.entity,
                    str(prov["connector"]),
                    item.source_key,
                    model.schema_version,
                    body.decode(),
                    orjson.dumps(prov).decode(),
                    None,
                    now,
                )
            )
            labelled.append((item.source_key, model))
            passed.append(item)
        if labelled and self.outcomes is not None:
            out.outcomes.extend(self.outcomes.rows(labelled, now))
        return passed

    # --- score: canonical → scored ------------------------------------------------------------

    def score(self, items: list[Item], out: Effects) -> list[Item]:
        """Score canonical records; store the score rows; a record that cannot be scored is
        quarantined.  Without scoring configured the items pass on unscored."""
        items = self._models(items, out, "score")
        if self.scorer is None or not items:
            return items
        models = [it.model for it in items]
        if self.keyed_scoring:
            keys = [f"{self.name}:{it.source_key or it.key}" for it in items]
            cols = self.scorer.score_columns(models, keys)
        else:
            cols = self.scorer.score_columns(models)
        failed = dict(getattr(cols, "failed", {}) or {})
        enough = cols.data_sufficient
        given = getattr(cols, "reasons_json", None)
        now = time.time()
        model = cols.model
        passed = []
        for j, item in enumerate(items):
            if j in failed:
                self._quarantine(out, "score", item, failed[j])
                continue
            value, grade, factors = cols.values[j], cols.grades[j], cols.factors[j]
            version, variant = cols.model_version_at(j), cols.variant_at(j)
            factors_json = orjson.dumps(factors)
            out.scores.append(
                (
                    item.record_id,
                    version,
                    model,
                    value,
                    grade,
                    factors_json.decode(),
                    variant,
                    now,
                )
            )
            reasons = given[j] if given is not None else self.reason_book.reasons_json(factors)
            score: dict[str, Any] = {
                "value": value,
                "grade": grade,
                "top_factors": orjson.Fragment(factors_json),
                "reasons": orjson.Fragment(reasons),
            }
            if enough is not None:
                score["data_sufficient"] = bool(enough[j])
            # stored one by one (keys in the event's order): no keyword dict a record
            score["model"] = model
            score["model_version"] = version
            score["variant"] = variant
            item.score = score
            item.extra["event_type"] = self.event_type
            passed.append(item)
        return passed

    # --- deliver: scored → outbox -------------------------------------------------------------

    def deliver(self, items: list[Item], out: Effects) -> list[Item]:
        """Route scored records; write their version heads and outbox deliveries."""
        items = self._models(items, out, "route")
        if not items:
            return items
        views: list[dict[str, Any] | None] | None = None
        if any(it.score is not None for it in items):
            views = [
                {
                    "value": it.score["value"],
                    "grade": it.score["grade"],
                    "model_version": it.score.get("model_version"),
                }
                if it.score is not None
                else None
                for it in items
            ]
        routed = self.router.targets_batch([it.model for it in items], views)
        to_json = self.model_cls.__pydantic_serializer__.to_json
        now = time.time()
        event_type = self.event_type
        passed = []
        for item, found in zip(items, routed, strict=True):
            if not isinstance(found, list):
                self._quarantine(out, "route", item, found)
                continue
            passed.append(item)
            if item.version is not None and item.source_key is not None:
                digest = hashlib.sha256(to_json(item.model, exclude=_VOLATILE, exclude_none=True))
                if item.score is not None:
                    digest.update(f"|{item.score['value']!r}|{item.score['grade']}".encode())
                out.heads.append(
                    (
                        self.name,
                        item.source_key,
                        item.version,
                        item.record_id,
                        digest.hexdigest()[:32],
                    )
                )
            if not found:
                continue
            event = orjson.dumps(
                {
                    "type": event_type,
                    "record_id": item.record_id,
                    "pipeline": self.name,
                    "entity": self.entity,
                    "source_key": item.source_key,
                    "record": orjson.Fragment(item.body or b"{}"),
                    "score": item.score,
                }
            ).decode()
            for channel, route_key in found:
                out.deliveries.append(
                    (
                        delivery_id(item.record_id, channel),
                        item.record_id,
                        self.name,
                        channel,
                        event_type,
                        event,
                        "held" if route_key in self.held_routes else "pending",
                        0,
                        now,
                        now,
                        route_key,
                    )
                )
        return passed

    def run(self, role: str, items: list[Item], out: Effects) -> list[Item]:
        """Run one role over ``items``; return the items that go on to the next."""
        step = {"normalize": self.normalize, "score": self.score, "deliver": self.deliver}[role]
        return step(items, out)
