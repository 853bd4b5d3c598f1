"""Retrain a pipeline's model from the store: same recipe, new data, through the promotion gate.

:func:`retrain` reads the pipeline's labelled records (:func:`~junction.pipeline.training_sources.
store_training_set`: each lead's earliest stored version with its outcome, of the pipeline's
``scoring.outcome.kind``, default ``converted``), trains a new version with the recipe of the
version the pipeline scores with (its card's feature spec, algorithm, calibration, parameters
and seed), saves it, and puts it through the promotion gate (:func:`scoring.promotion.
promote_if_better`): it becomes production only if its holdout ROC AUC beats production's by
the margin, otherwise it stays in staging.

* Grade thresholds: a base version trained with grade shares (its card's
  ``training_data.grade_shares``) gets them recomputed on the new version's holdout; otherwise
  the base card's thresholds are kept.
* Too little data (fewer than ``min_rows`` labelled rows, or fewer than ``min_class`` of either
  class) gives a ``failed`` result with code ``insufficient_data``; no version is written.
* Every attempt, whatever its outcome, writes one ``model.retrained`` event (outcome
  ``promoted``, ``staged`` or ``failed``; counts, versions and metrics only, no personal data)
  and one ``model.retrain`` audit entry, in one transaction.  The event alerts the
  ``alerts.to`` channels when ``alerts.kinds`` names it.
* :func:`recently_retrained` lets the drift schedule retrain a drifted version at most once a
  day (:data:`RETRAIN_QUIET_S`), so a drift that persists does not write a version an hour.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from junction.core.errors import ConfigError, JunctionError
from junction.core.logging import get_logger
from junction.pipeline.config import HubConfig, ScoringConfig
from junction.pipeline.drift_job import alert_policy, model_version
from junction.pipeline.training_sources import store_training_set
from junction.store.audit import AuditEntry, AuditLog
from junction.store.events import emit, list_events
from junction.store.repo import Store
from scoring import stages
from scoring.promotion import GateResult, promote_if_better
from scoring.spec import spec_from_dict

log = get_logger(__name__)

RETRAINED_EVENT = "model.retrained"
AUDIT_ACTION = "model.retrain"
RETRAIN_QUIET_S = 86_400.0
DEFAULT_MARGIN = 0.005
MIN_ROWS = 200
MIN_CLASS = 20

Outcome = Literal["promoted", "staged", "failed"]


@dataclass(frozen=True)
class RetrainResult:
    """What a retrain did.

    Attributes:
        outcome: ``promoted`` (the new version is production), ``staged`` (the gate kept it in
            staging) or ``failed`` (no version, or one that could not be staged).
        pipeline: the pipeline whose records trained it.
        model: the model name.
        base_version: the version whose recipe was reused (the one the pipeline scores with).
        version: the new version, or None when none was written.
        code: why it failed (``insufficient_data``, ``no_model``, ``training_failed``,
            ``production_changed``), else None.
        message: in words, for people.
        n: labelled rows read; positives: of them labelled 1.
        metrics: the new version's holdout metrics.
        gate: the promotion gate's decision (JSON-safe), when it ran.
        thresholds: the new version's grade thresholds (A, B, C).
    """

    outcome: Outcome
    pipeline: str
    model: str
    base_version: str | None
    message: str
    version: str | None = None
    code: str | None = None
    n: int = 0
    positives: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    gate: dict[str, Any] | None = None
    thresholds: tuple[float, float, float] | None = None

    @property
    def insufficient(self) -> bool:
        """Whether it failed for too few labelled rows."""
        return self.code == "insufficient_data"

    def to_dict(self) -> dict[str, Any]:
        """The event's and audit entry's detail (no personal data: counts and versions)."""
        return {
            "outcome": self.outcome,
            "pipeline": self.pipeline,
            "model": self.model,
            "base_version": self.base_version,
            "version": self.version,
            "code": self.code,
            "message": self.message,
            "n": self.n,
            "positives": self.positives,
            "metrics": dict(self.metrics),
            "gate": self.gate,
            "thresholds": None if self.thresholds is None else list(self.thresholds),
        }


def _scoring(cfg: HubConfig, pipeline: str) -> ScoringConfig:
    p = cfg.pipelines.get(pipeline)
    if p is None:
        raise ConfigError(
            f"no pipeline named {pipeline!r}",
            context={"pipelines": ", ".join(sorted(cfg.pipelines)) or "none"},
        )
    if p.scoring is None:
        raise ConfigError(f"pipeline {pipeline} does not score its records")
    return p.scoring


def _recipe(card: dict[str, Any]) -> dict[str, Any]:
    calibration = card.get("calibration")
    method = calibration.get("method") if isinstance(calibration, dict) else None
    training = card.get("training_data")
    seed = training.get("seed") if isinstance(training, dict) else None
    shares = training.get("grade_shares") if isinstance(training, dict) else None
    return {
        "spec": spec_from_dict(card["feature_spec"]),
        "algorithm": str(card.get("algorithm") or "logistic_regression"),
        "calibration": None if method in (None, "none") else str(method),
        "params": dict(card.get("params") or {}),
        "seed": seed if isinstance(seed, int) and not isinstance(seed, bool) else 0,
        "shares": shares,
    }


def retrain(
    store: Store,
    hub_cfg: HubConfig,
    pipeline: str,
    *,
    now: float | None = None,
    actor: str = "system:drift",
    margin: float | None = None,
    min_rows: int = MIN_ROWS,
    min_class: int = MIN_CLASS,
    trigger: str = "drift",
) -> RetrainResult:
    """Train, save and gate a new version of ``pipeline``'s model; record what happened.

    Args:
        store: the store holding the pipeline's records and outcomes (and the events).
        hub_cfg: the hub configuration (registry folder, pipeline, alert channels).
        pipeline: the pipeline whose model is retrained.
        now: the event and audit time (default: now).
        actor: who asked (``system:drift``, ``cli:<login>``), for the stage history and audit.
        margin: holdout ROC AUC the new version must gain over production to be promoted
            (default :data:`DEFAULT_MARGIN`).
        min_rows: fewer labelled rows fail with ``insufficient_data``.
        min_class: fewer rows of either class fail with ``insufficient_data``.
        trigger: why (``drift``, ``manual``), kept in the card's ``training_data``.

    Raises:
        ConfigError: no such pipeline, or it does not score with the registry's model.
    """
    at = time.time() if now is None else now
    scoring = _scoring(hub_cfg, pipeline)
    if scoring.scorer != "sklearn_lead":
        raise ConfigError(
            "only a registry model can be retrained", context={"scorer": scoring.scorer}
        )
    try:
        result = _retrain(
            hub_cfg,
            store,
            pipeline,
            scoring,
            actor=actor,
            margin=DEFAULT_MARGIN if margin is None else margin,
            min_rows=min_rows,
            min_class=min_class,
            trigger=trigger,
        )
    except JunctionError as exc:  # e.g. a corrupt registry: recorded, not raised
        result = RetrainResult(
            "failed", pipeline, scoring.model, None, exc.user_message, code=exc.code
        )
    _record(store, hub_cfg, result, actor, at)
    log.info(
        "model retrained",
        pipeline=pipeline,
        model=result.model,
        outcome=result.outcome,
        code=result.code,
        version=result.version,
        base_version=result.base_version,
        n=result.n,
    )
    return result


def _retrain(
    cfg: HubConfig,
    store: Store,
    pipeline: str,
    scoring: ScoringConfig,
    *,
    actor: str,
    margin: float,
    min_rows: int,
    min_class: int,
    trigger: str,
) -> RetrainResult:
    from scoring.grading import (
        DEFAULT_THRESHOLDS,
        card_thresholds,
        holdout_proba,
        thresholds_for_shares,
    )
    from scoring.registry import save_model
    from scoring.train import train_model

    model, base = model_version(cfg, pipeline)
    if base is None:
        return RetrainResult(
            "failed", pipeline, model, None, "the model has no version to retrain", code="no_model"
        )
    card = stages.read_card(cfg.models_dir, model, base)
    recipe = _recipe(card)
    kind = scoring.outcome.kind if scoring.outcome is not None else "converted"

    def failed(code: str, message: str, n: int = 0, positives: int = 0) -> RetrainResult:
        return RetrainResult(
            "failed", pipeline, model, base, message, code=code, n=n, positives=positives
        )

    try:
        training = store_training_set(store, pipeline, recipe["spec"], kind=kind)
    except ConfigError as exc:  # no labelled records, or one class only
        return failed("insufficient_data", exc.user_message)
    n, pos = len(training.rows), training.positives
    if n < min_rows or min(pos, n - pos) < min_class:
        return failed(
            "insufficient_data",
            f"too few labelled records: {n} ({pos} positive); retraining needs {min_rows} "
            f"with {min_class} of each outcome",
            n,
            pos,
        )
    try:
        trained = train_model(
            training.rows,
            training.labels,
            seed=recipe["seed"],
            spec=recipe["spec"],
            algorithm=recipe["algorithm"],
            calibration=recipe["calibration"],
            params=recipe["params"],
            times=training.times,
        )
        thresholds = card_thresholds(card) or DEFAULT_THRESHOLDS
        shares = recipe["shares"]
        if shares is not None:
            proba = holdout_proba(trained)
            thresholds = thresholds_for_shares(proba, shares)
    except ConfigError as exc:  # e.g. a slice with one class only
        return failed("training_failed", exc.user_message, n, pos)
    data = training.card() | {"retrained_from": base, "trigger": trigger}
    if shares is not None:
        data["grade_shares"] = list(shares)
    version = save_model(
        trained, cfg.models_dir, model, training_data=data, thresholds=thresholds
    ).name
    done = RetrainResult(
        "staged",
        pipeline,
        model,
        base,
        "",
        version=version,
        n=n,
        positives=pos,
        metrics=dict(trained.metrics),
        thresholds=thresholds,
    )
    why = f"retrained ({trigger}) from v{base}"
    try:
        gate = promote_if_better(
            cfg.models_dir, model, version, actor=actor, reason=why, margin=margin
        )
    except ConfigError as exc:
        if exc.code != "production_changed":
            raise
        stages.stage(cfg.models_dir, model, version, "staging", actor=actor, reason=why)
        return _with(done, "staged", exc.user_message, code="production_changed")
    outcome: Outcome = "promoted" if gate.promoted else "staged"
    return _with(done, outcome, gate.reason, gate=gate)


def _with(
    r: RetrainResult,
    outcome: Outcome,
    message: str,
    *,
    code: str | None = None,
    gate: GateResult | None = None,
) -> RetrainResult:
    return RetrainResult(
        outcome,
        r.pipeline,
        r.model,
        r.base_version,
        message,
        version=r.version,
        code=code,
        n=r.n,
        positives=r.positives,
        metrics=r.metrics,
        gate=None if gate is None else gate.to_dict(),
        thresholds=r.thresholds,
    )


def _record(store: Store, cfg: HubConfig, result: RetrainResult, actor: str, at: float) -> None:
    detail = result.to_dict()
    subject = f"{result.model}/{result.version or result.base_version or '-'}"
    audit = AuditLog(store)
    entry = AuditEntry(actor, AUDIT_ACTION, f"model:{result.model}", None, detail, at)
    with store.begin() as conn:
        emit(conn, RETRAINED_EVENT, subject, detail, alerts=alert_policy(cfg), now=at)
        audit.append_in(conn, [entry])


def recently_retrained(
    store: Store, pipeline: str, model: str, base_version: str | None, now: float
) -> bool:
    """Whether ``base_version`` of ``pipeline``'s model was retrained in the last day."""
    since = now - RETRAIN_QUIET_S
    for event in list_events(store, since, [RETRAINED_EVENT], limit=10_000):
        d = event["detail"]
        if (d.get("pipeline"), d.get("model"), d.get("base_version")) == (
            pipeline,
            model,
            base_version,
        ):
            return True
    return False


__all__ = [
    "AUDIT_ACTION",
    "DEFAULT_MARGIN",
    "MIN_CLASS",
    "MIN_ROWS",
    "RETRAINED_EVENT",
    "RETRAIN_QUIET_S",
    "RetrainResult",
    "recently_retrained",
    "retrain",
]
