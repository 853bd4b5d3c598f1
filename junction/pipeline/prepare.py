"""Prepare one batch: normalize → validate → score → route → rows to write.

This is the CPU-bound part of a pipeline.  It holds no connection and touches no file, so the
runner can run it inline or in worker processes; the runner alone writes to the store.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from connectors.base import RawBatch
from junction.core import tracing
from junction.core.errors import JunctionError, RecordError
from junction.core.gc_pause import gc_paused
from junction.core.rows import HeaderRows
from junction.pipeline.config import PipelineConfig
from junction.pipeline.labels import OutcomeRules
from junction.pipeline.normalize import Normalizer
from junction.pipeline.personal import PersonalSplit
from junction.pipeline.route import Router, Target, delivery_id
from scoring.ab import ABScorer
from scoring.base import Scorer
from scoring.reasons import DEFAULT_BOOK, ReasonBook

Row = tuple[Any, ...]
# rows taken through all the stages at a time: a chunk's objects (raw row, mapped dict, model,
# score, JSON) stay within a core's L2 cache from one stage to the next, where a whole batch of
# 2,000 leads (~5 MB of them) is evicted between stages; the batch still commits as one
# (2026-12-06, AMD EPYC with 1 MiB L2: 37.6 -> 36.1 us of CPU a row in `bench e2e`)
PREP_CHUNK = 256
# canonical fields that change with every version without being a change worth routing
_VOLATILE = {"updated_at"}


@dataclass
class PreparedBatch:
    """The rows one batch writes, and the cursor to commit with them."""

    stream: str
    cursor: dict[str, Any]
    read: int
    records: list[Row] = field(default_factory=list)
    scores: list[Row] = field(default_factory=list)
    deliveries: list[Row] = field(default_factory=list)
    quarantined: list[Row] = field(default_factory=list)
    # (pipeline, source_key, version, record_id, content hash) of versioned records
    # (``junction.store.heads``)
    heads: list[Row] = field(default_factory=list)
    # (lead id, kind, label, observed_at, source, recorded_at): what the records say became of
    # their leads (``scoring.outcome``; ``junction.store.outcomes``)
    outcomes: list[Row] = field(default_factory=list)
    # with ``prepare(split_personal=True)``: each record's personal members (by the schema's
    # ``x-pii`` marks), parallel to ``records``, whose payloads then hold only the other
    # members: encryption at rest seals these without parsing the payload (``Store.preseal``)
    personal: list[dict[str, Any]] | None = None


def quarantine_row(
    pipeline: str,
    stage: str,
    key: str,
    exc: JunctionError,
    payload: bytes | None,
    provenance: dict[str, Any],
    run_id: int | None,
    extra_context: dict[str, Any] | None = None,
) -> Row:
    """Build one quarantine row (the original bytes, the error and where it came from)."""
    err = exc.to_dict()
    if extra_context:
        err["context"] = {**err["context"], **extra_context}
    return (
        pipeline,
        stage,
        key,
        err["type"],
        err["code"],
        err["message"],
        orjson.dumps(err["context"]).decode(),
        payload,
        orjson.dumps(provenance).decode(),
        "open",
        time.time(),
        run_id,
    )


class BatchPreparer:
    """Everything compiled once for one pipeline: mapping, rules, scorer, routes."""

    def __init__(
        self, name: str, cfg: PipelineConfig, connector: str, scorer: Scorer | None
    ) -> None:
        """Compile the pipeline's mapping, rules and routes; ``scorer`` is already loaded."""
        self.name = name
        self.connector = connector
        self.normalizer = Normalizer(cfg.mapping, [(r.name, r.expr) for r in cfg.rules])
        self.entity = self.normalizer.entity
        self.router = Router(cfg.routes, self.entity, self.normalizer.fields)
        # deliveries of a digest route wait ("held") until their digest gathers them
        self.held_routes = frozenset(
            r.key(i) for i, r in enumerate(cfg.routes) if r.digest is not None
        )
        self.scorer = scorer
        # an A/B test assigns each record by its stable key, so only then are keys passed
        self.keyed_scoring = isinstance(scorer, ABScorer)
        # the wording of reasons: the production model's own book (its coefficients' signs)
        book_of = scorer.production if isinstance(scorer, ABScorer) else scorer
        self.reason_book: ReasonBook = getattr(book_of, "reason_book", None) or DEFAULT_BOOK
        outcome = cfg.scoring.outcome if cfg.scoring is not None else None
        self.outcomes = (
            OutcomeRules(name, outcome, self.entity, self.normalizer.fields)
            if outcome is not None
            else None
        )
        self.event_type = f"{self.entity}.scored" if scorer else f"{self.entity}.received"
        self._split = PersonalSplit(self.normalizer.mapping.model)

    def prepare(
        self, batch: RawBatch, run_id: int | None, *, split_personal: bool = False
    ) -> PreparedBatch:
        """Turn a raw batch into the rows to write; bad records become quarantine rows.

        With ``split_personal`` (the store encrypts personal data at rest), each record's
        payload leaves out its personal members and ``PreparedBatch.personal`` holds them:
        ``Store.preseal`` seals them as they are, where it would otherwise parse the payload.
        """
        out = PreparedBatch(batch.stream, batch.cursor, len(batch) + len(batch.errors))
        if split_personal:
            out.personal = []
        now = time.time()
        name = self.name
        # per-record provenance stays small: the file-level facts (encoding, delimiter) are
        # the same for every row and travel in the batch, not in each stored record
        prov = batch.provenance
        # the file's full sha256 is in the file ledger and its first 16 hex digits in every id
        where: dict[str, Any] = {k: prov[k] for k in ("file", "topic") if k in prov}
        head: dict[str, Any] = {"connector": self.connector, **(where or {"stream": batch.stream})}
        # the batch's trace (ADR-0022): once per batch, in the prefix every record shares
        ids = tracing.current_ids()
        if ids is not None:
            head["trace_id"], head["span_id"] = ids
        prov_prefix = orjson.dumps(head)[:-1].decode() + ',"position":'

        def quarantine(
            stage: str, key: str, exc: JunctionError, raw: bytes | None, pos: int
        ) -> None:
            prov = orjson.loads(prov_prefix + str(pos) + "}")
            out.quarantined.append(
                quarantine_row(name, stage, f"{name}:{key}", exc, raw, prov, run_id)
            )

        for row_err in batch.errors:
            err = row_err.error
            if not isinstance(err, JunctionError):
                err = RecordError(f"unreadable row: {type(err).__name__}")
            quarantine("extract", row_err.key, err, row_err.raw, row_err.position)
        with gc_paused():  # many young objects per batch; the cyclic GC would rescan them all
            # with tracing on, each stage keeps one span per batch: the batch goes whole
            for part in _chunks(batch, len(batch) if tracing.enabled() else PREP_CHUNK):
                with tracing.span("junction.map", {"junction.records": len(part)}) as sp:
                    good, bad = self.normalizer.apply(part.records)
                    sp.set("junction.valid", len(good))
                    sp.set("junction.invalid", len(bad))
                for i, exc in bad:
                    stage = "validate" if exc.code == "rule_failed" else "normalize"
                    quarantine(
                        stage, part.keys[i], exc, orjson.dumps(part.records[i]), part.positions[i]
                    )
                self._effects(part, good, out, prov_prefix, run_id, now, quarantine)
        return out

    def _effects(
        self,
        batch: RawBatch,
        good: list[tuple[int, Any]],
        out: PreparedBatch,
        prov_prefix: str,
        run_id: int | None,
        now: float,
        quarantine: Any,
    ) -> None:
        name, entity, system = self.name, self.entity, self.connector
        cols = None
        failed: dict[int, RecordError] = {}
        keys, raw, positions = batch.keys, batch.records, batch.positions
        # the record's key in its source system (e.g. the CRM id) when the mapping names one
        source_keys = self.normalizer.mapping.keys_at(raw, [i for i, _ in good])
        if self.scorer is not None and good:
            with tracing.span("junction.score", {"junction.records": len(good)}) as sp:
                if self.keyed_scoring:
                    # the lead's stable id: every version of a lead stays in one A/B variant
                    ab_keys = [
                        f"{name}:{sk or keys[i]}"
                        for (i, _), sk in zip(good, source_keys, strict=True)
                    ]
                    cols = self.scorer.score_columns([m for _, m in good], ab_keys)
                else:
                    cols = self.scorer.score_columns([m for _, m in good])
                failed = dict(getattr(cols, "failed", {}) or {})
                sp.set("junction.failed", len(failed))
        route = not self.router.empty
        records, scores, deliveries = out.records, out.scores, out.deliveries
        to_json = self.normalizer.mapping.model.__pydantic_serializer__.to_json
        personal = out.personal
        split = self._split if personal is not None else None
        event_type = self.event_type
        held = self.held_routes
        # per-row variant and model version (an A/B test): (variant, version, score tail) by row
        per_row: list[tuple[str, str, str]] | None = None
        if cols is not None:
            model_name, model_version, variant = cols.model, cols.model_version, cols.variant
            score_tail = (
                f',"model":"{model_name}","model_version":"{model_version}","variant":"{variant}"}}'
            )
            if cols.variants is not None or cols.model_versions is not None:
                tails: dict[tuple[str, str], str] = {}
                per_row = []
                for j in range(len(cols)):
                    pair = (cols.variant_at(j), cols.model_version_at(j))
                    tail = tails.get(pair)
                    if tail is None:
                        tail = tails[pair] = (
                            f',"model":"{model_name}","model_version":"{pair[1]}",'
                            f'"variant":"{pair[0]}"}}'
                        )
                    per_row.append((pair[0], pair[1], tail))
        versions, heads = batch.versions, out.heads
        values = grades = factors = None
        if cols is not None:
            values, grades, factors = cols.values, cols.grades, cols.factors
        labelled: list[tuple[str, Any]] | None = [] if self.outcomes is not None else None
        factor_json: list[str] | None = None
        enough: list[bool] | None = None
        reasons_json: list[str] | None = None
        if factors is not None:
            factor_json = list(map(bytes.decode, map(orjson.dumps, factors)))
            enough = cols.data_sufficient  # type: ignore[union-attr]
            reasons_json = getattr(cols, "reasons_json", None)
        routed: list[Any] | None = None
        if route:
            views = None
            if values is not None:
                views = [
                    {"value": v, "grade": g, "model_version": model_version}
                    for v, g in zip(values, grades, strict=True)  # type: ignore[arg-type]
                ]
                if per_row is not None:
                    for view, (_, row_version, _) in zip(views, per_row, strict=True):
                        view["model_version"] = row_version
            with tracing.span("junction.route", {"junction.records": len(good)}):
                routed = self.router.targets_batch([m for _, m in good], views)
        for j, (i, model) in enumerate(good):
            key = keys[i]
            rid = f"{name}:{key}"
            source_key = source_keys[j] or key
            if failed and j in failed:
                quarantine("score", key, failed[j], orjson.dumps(raw[i]), positions[i])
                continue
            targets: list[Target] = []
            if routed is not None:
                found = routed[j]
                if found.__class__ is not list:
                    # nothing of this record is written: no score row without its record
                    quarantine("route", key, found, orjson.dumps(raw[i]), positions[i])
                    continue
                targets = found
            if split is None:
                body = stored = to_json(model, exclude_none=True).decode()
            else:
                stored = split.clear_json(model).decode()
                personal.append(split.of(model))  # type: ignore[union-attr]
                # the whole record only for the events that carry it (the outbox seals them)
                body = to_json(model, exclude_none=True).decode() if targets else ""
            score_json = "null"
            if values is not None:
                value, grade = values[j], grades[j]  # type: ignore[index]
                factors_json = factor_json[j]  # type: ignore[index]
                if per_row is None:
                    row_variant, row_version, tail = variant, model_version, score_tail
                else:
                    row_variant, row_version, tail = per_row[j]
                scores.append(
                    (rid, row_version, model_name, value, grade, factors_json, row_variant, now)
                )
                if targets:
                    # reasons in words for the receiver (a salesperson), only for routed rows
                    reasons = (
                        reasons_json[j]
                        if reasons_json is not None
                        else self.reason_book.reasons_json(factors[j])  # type: ignore[index]
                    )
                    extra = f',"reasons":{reasons}'
                    if enough is not None:
                        extra += f',"data_sufficient":{"true" if enough[j] else "false"}'
                    score_json = (
                        f'{{"value":{value!r},"grade":"{grade}","top_factors":{factors_json}'
                        + extra
                        + tail
                    )
            if targets:
                event = (
                    f'{{"type":"{event_type}","record_id":{orjson.dumps(rid).decode()},'
                    f'"pipeline":"{name}","entity":"{entity}","source_key":'
                    f'{orjson.dumps(source_key).decode()},"record":{body},"score":{score_json}}}'
                )
                for ch, route_key in targets:
                    deliveries.append(
                        (
                            delivery_id(rid, ch),
                            rid,
                            name,
                            ch,
                            event_type,
                            event,
                            "held" if route_key in held else "pending",
                            0,
                            now,
                            now,
                            route_key,
                        )
                    )
            records.append(
                (
                    rid,
                    name,
                    entity,
                    system,
                    source_key,
                    model.schema_version,
                    stored,
                    f"{prov_prefix}{positions[i]}}}",
                    run_id,
                    now,
                )
            )
            if labelled is not None:
                labelled.append((source_key, model))
            if versions is not None and versions[i] is not None:
                # what routing sees: the canonical fields but the change time, and the score
                digest = hashlib.sha256(to_json(model, exclude=_VOLATILE, exclude_none=True))
                if values is not None:
                    digest.update(f"|{values[j]!r}|{grades[j]}".encode())  # type: ignore[index]
                heads.append((name, source_key, versions[i], rid, digest.hexdigest()[:32]))
        if labelled and self.outcomes is not None:
            out.outcomes.extend(self.outcomes.rows(labelled, now))


def _chunks(batch: RawBatch, size: int) -> Iterator[RawBatch]:
    """``batch`` in consecutive pieces of ``size`` rows (itself when it is no larger); its row
    errors stay with it (``prepare`` quarantines them before the pieces)."""
    n = len(batch)
    if n <= size:
        yield batch
        return
    recs = batch.records
    versions = batch.versions
    for a in range(0, n, size):
        b = a + size
        yield replace(
            batch,
            records=HeaderRows(recs.header, recs.rows[a:b])
            if isinstance(recs, HeaderRows)
            else recs[a:b],
            keys=batch.keys[a:b],
            positions=batch.positions[a:b],
            errors=[],
            versions=versions[a:b] if versions is not None else None,
        )
