"""Synchronous lead scoring for the API: compiled scorers and mappings, cached per process.

Scoring one lead with the compiled model costs ~10 µs, so the routes score inline on the event
loop.  Only a cache miss (loading a model, compiling a mapping) goes to a worker thread.  Bodies
are either canonical Leads or ``{"payload": ..., "mapping": "<built-in id>"}``; mapping ids are
restricted to the built-in specs, so a caller can never make the server read a file.

A cached scorer follows its model's production stage (:mod:`junction.pipeline.model_watch`): at
most once a second per pipeline, :meth:`LeadScoring.cached_scorer` compares the stages revision
(one ``stat``) with the one the scorer was loaded under.  When it changed, that one request takes
the cache-miss path and reloads in a worker thread, while every other request keeps the loaded
scorer until the new one is verified and swapped in.  A reload that fails keeps the previously
verified model (and :meth:`LeadScoring.reload_failures` says so); pinned versions never reload.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from pydantic import ValidationError

from junction.api.audit import audit_decision, audit_log_of
from junction.api.context import ApiContext, ctx_of
from junction.api.problems import ApiProblem
from junction.core.errors import RecordError, ScoringInputError
from junction.core.metrics import observe_scoring
from junction.pipeline.config import HubConfig, ScoringConfig
from junction.pipeline.model_watch import ModelWatch
from mappings.engine import CompiledMapping, builtin_spec_ids, compile_mapping, load_spec
from schemas.lead import Lead
from schemas.score import Score
from scoring.base import Scorer

NEXT_ACTIONS = {
    "A": "call_within_1_hour",
    "B": "call_today",
    "C": "nurture_email",
    "D": "no_action",
}
_EXTRA_KEY = "lead_scoring"
# a cached scorer checks its model's stages revision at most this often (seconds)
CHECK_INTERVAL_S = 1.0
_validate_lead = Lead.__pydantic_validator__.validate_python


@dataclass(frozen=True)
class Mapped:
    """A body item that still has to go through a mapping."""

    mapping: str
    payload: dict[str, Any]


def invalid(errors: list[dict[str, Any]]) -> ApiProblem:
    """422 with where and why only: pydantic's messages can echo input values (personal data)."""
    return ApiProblem(
        422,
        "Invalid request",
        "the request does not match the schema",
        code="invalid_request",
        extra={"errors": errors},
    )


def validation_errors(
    exc: ValidationError, prefix: Sequence[str | int] = ()
) -> list[dict[str, Any]]:
    """Locations and error types of a ValidationError, without the input values."""
    return [
        {"loc": [str(p) for p in (*prefix, *e.get("loc", ()))], "type": e.get("type", "invalid")}
        for e in exc.errors()
    ]


def parse_item(item: Any, where: Sequence[str | int] = ("body",)) -> Lead | Mapped:
    """One body item as a Lead or a mapped payload; ApiProblem 422 when it is neither."""
    if not isinstance(item, dict):
        raise invalid([{"loc": list(map(str, where)), "type": "dict_type"}])
    if "mapping" in item or "payload" in item:
        mapping, payload = item.get("mapping"), item.get("payload")
        extra = set(item) - {"mapping", "payload"}
        if not isinstance(mapping, str) or not isinstance(payload, dict) or extra:
            errors = [{"loc": [*map(str, where), f], "type": "invalid"} for f in sorted(extra)]
            if not isinstance(mapping, str):
                errors.append({"loc": [*map(str, where), "mapping"], "type": "string_type"})
            if not isinstance(payload, dict):
                errors.append({"loc": [*map(str, where), "payload"], "type": "dict_type"})
            raise invalid(errors)
        return Mapped(mapping, payload)
    try:
        lead: Lead = _validate_lead(item)
    except ValidationError as exc:
        raise invalid(validation_errors(exc, where)) from None
    return lead


class LeadScoring:
    """The scorers (per pipeline, or the default model) and built-in mappings the routes use."""

    def __init__(self, cfg: HubConfig) -> None:
        """Score with models from ``cfg.models_dir`` and pipelines' scoring settings."""
        self.cfg = cfg
        self._watches: dict[str | None, ModelWatch] = {}
        self._mappings: dict[str, CompiledMapping] = {}
        self._builtin = frozenset(builtin_spec_ids())
        self._lock = threading.Lock()

    def scoring_config(self, pipeline: str | None) -> ScoringConfig:
        """The scoring settings for ``pipeline`` (404 unknown, 409 when it does not score)."""
        if pipeline is None:
            return ScoringConfig()
        p = self.cfg.pipelines.get(pipeline)
        if p is None:
            raise ApiProblem(404, "Not found", "no such pipeline", code="pipeline_not_found")
        if p.scoring is None:
            raise ApiProblem(
                409, "Not scored", "this pipeline does not score records", code="not_scored"
            )
        return p.scoring

    def cached_scorer(self, pipeline: str | None) -> Scorer | None:
        """The loaded scorer, or None when it must be loaded first (``load_scorer``).

        None also when the model's production stage changed: at most once a second per
        pipeline this costs one ``stat``, and the one request that sees the change reloads
        (in a worker thread) while the others keep scoring with the loaded model.
        """
        watch = self._watches.get(pipeline)
        if watch is None:
            return None
        loaded = watch.current
        if loaded is None:  # pragma: no cover - a watch is cached only once it loaded
            return None
        if watch.watched:
            now = time.monotonic()
            if now >= watch.next_check:
                watch.next_check = now + CHECK_INTERVAL_S
                if watch.stale():
                    return None
        return loaded.scorer

    def load_scorer(self, pipeline: str | None) -> Scorer:
        """Load the scorer for ``pipeline`` or the default model, or reload it; blocking.

        Raises:
            ModelLoadError: the first load fails (the API refuses to score).  A reload that
                fails keeps and returns the previously loaded scorer.
        """
        cfg = self.scoring_config(pipeline)
        with self._lock:
            watch = self._watches.get(pipeline)
            if watch is None:
                watch = ModelWatch(self.cfg.models_dir, cfg, owner=f"api:{pipeline or '-'}")
                watch.load()
                watch.next_check = time.monotonic() + CHECK_INTERVAL_S
                self._watches[pipeline] = watch
            elif watch.stale():
                watch.reload()
            loaded = watch.current
        assert loaded is not None
        return loaded.scorer

    def reload_failures(self) -> dict[str, dict[str, str]]:
        """Per pipeline (``-`` for the default model): why its last reload failed, if it did.

        Such a pipeline still scores with the version it loaded before (each answer names it).
        """
        return {
            p or "-": w.failure.as_dict() for p, w in self._watches.items() if w.failure is not None
        }

    def check_mapping(self, mapping: str) -> None:
        """422 unless ``mapping`` is a built-in lead mapping id."""
        if mapping not in self._builtin:
            raise ApiProblem(
                422,
                "Unknown mapping",
                "mapping must be the id of a built-in lead mapping",
                code="unknown_mapping",
            )

    def cached_mapping(self, mapping: str) -> CompiledMapping | None:
        """The compiled mapping, or None when it must be compiled first."""
        return self._mappings.get(mapping)

    def load_mapping(self, mapping: str) -> CompiledMapping:
        """Compile (once) a built-in mapping that produces leads; blocking."""
        self.check_mapping(mapping)
        with self._lock:
            compiled = self._mappings.get(mapping)
            if compiled is None:
                compiled = compile_mapping(load_spec(mapping))
                self._mappings[mapping] = compiled
        if compiled.entity != "lead":
            raise ApiProblem(
                422,
                "Unknown mapping",
                "mapping must be the id of a built-in lead mapping",
                code="unknown_mapping",
            )
        return compiled

    def to_lead(self, item: Lead | Mapped) -> Lead:
        """The canonical Lead of an item; RecordError when the mapping rejects the payload."""
        if isinstance(item, Lead):
            return item
        compiled = self._mappings[item.mapping]
        if compiled.entity != "lead":
            raise ScoringInputError("the mapping does not produce leads", code="unknown_mapping")
        lead = compiled.apply(item.payload)
        assert isinstance(lead, Lead)
        return lead


def lead_scoring(ctx: ApiContext) -> LeadScoring:
    """The context's scoring service (created on first use)."""
    svc = ctx.extras.get(_EXTRA_KEY)
    if svc is None:
        svc = ctx.extras.setdefault(_EXTRA_KEY, LeadScoring(ctx.cfg))
    assert isinstance(svc, LeadScoring)
    return svc


def score_lead(scorer: Scorer, lead: Lead) -> Score:
    """Score one lead; numbers no float can hold are the record's fault, not the server's."""
    record: Any = lead  # the scorer reads the Lead's attributes; no dict copy on the hot path
    try:
        return scorer.score_one(record)
    except (OverflowError, ValueError) as exc:
        raise ScoringInputError("a number in the record is too large to score") from exc


def answer(score: Score) -> dict[str, Any]:
    """The response body of one score."""
    return {
        "score": score.value,
        "grade": score.grade,
        "top_factors": [
            {"feature": f.feature, "contribution": f.contribution} for f in score.top_factors
        ],
        "next_action": NEXT_ACTIONS[score.grade],
        "model": score.model,
        "model_version": score.model_version,
        "variant": score.variant,
    }


def score_batch(
    svc: LeadScoring, scorer: Scorer, items: Sequence[Lead | Mapped | ApiProblem]
) -> tuple[list[dict[str, Any]], list[Lead]]:
    """Per-record answers, in order (a score, or ``{"index", "error": {code, message}}``),
    and the leads that were scored, in the same order as the answers that carry a score.
    """
    results: list[dict[str, Any]] = [{"index": i} for i in range(len(items))]
    leads: list[Lead] = []
    where: list[int] = []
    for i, item in enumerate(items):
        if isinstance(item, ApiProblem):
            results[i]["error"] = {"code": item.code, "message": item.detail or item.title}
            continue
        try:
            leads.append(svc.to_lead(item))
            where.append(i)
        except RecordError as exc:
            results[i]["error"] = {"code": exc.code, "message": exc.user_message}
    if not leads:
        return results, []
    scored = _score_leads(scorer, leads, where, results)
    return results, scored


def _score_leads(
    scorer: Scorer, leads: list[Lead], where: list[int], results: list[dict[str, Any]]
) -> list[Lead]:
    """Fill ``results`` at ``where`` with the leads' scores; return the leads that scored."""
    done: list[Lead] = []
    try:
        cols = scorer.score_columns(list[Any](leads))
    except (OverflowError, ValueError):
        # one record holds a number no float can hold: score one by one to find it
        for i, lead in zip(where, leads, strict=True):
            try:
                results[i].update(_item(score_lead(scorer, lead)))
                done.append(lead)
            except RecordError as exc:
                results[i]["error"] = {"code": exc.code, "message": exc.user_message}
        return done
    failed: dict[int, RecordError] = dict(getattr(cols, "failed", {}) or {})
    for j, i in enumerate(where):
        err = failed.get(j)
        value = cols.values[j]
        if err is not None or not math.isfinite(value):
            e = err or ScoringInputError("the record cannot be scored")
            results[i]["error"] = {"code": e.code, "message": e.user_message}
            continue
        grade = cols.grades[j]
        results[i].update(
            score=value,
            grade=grade,
            top_factors=[{"feature": f, "contribution": c} for f, c in cols.factors[j]],
            next_action=NEXT_ACTIONS[grade],
        )
        done.append(leads[j])
    return done


def _item(score: Score) -> dict[str, Any]:
    body = answer(score)
    return {k: body[k] for k in ("score", "grade", "top_factors", "next_action")}


def record_scores(
    request: Request,
    scorer: Scorer,
    scored: Sequence[tuple[Lead, dict[str, Any]]],
    seconds: float,
) -> None:
    """Observe the request's scoring latency and queue one audit decision per scored record.

    The target is the lead's id in its source system, or else a keyed pseudonym of its email
    address; the detail names the model version and the grade, never personal values.
    """
    observe_scoring(seconds)
    if not scored:
        return
    audit = audit_log_of(ctx_of(request))
    variant = str(getattr(scorer, "variant", "production"))
    for lead, body in scored:
        if lead.external_id:
            target = f"lead:{lead.external_id}"
        elif lead.email:
            target = "lead:" + audit.pseudonymize("email", lead.email)
        else:
            target = "lead:unidentified"
        audit_decision(
            request,
            "score",
            target,
            {
                "model": scorer.name,
                "model_version": scorer.version,
                "variant": variant,
                "grade": body["grade"],
            },
        )
