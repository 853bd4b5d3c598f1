"""One drift check of a pipeline's production model: window, features, compare, save, alert.

:func:`run_drift_check` reads the scores that the pipeline's production model version gave in
the last ``drift.window_s`` seconds together with the scored records' canonical payloads
(``scores`` joined to ``records``), extracts the features with the model's own spec (stored in
its reference profile), compares them and the scores with the version's training reference
(:mod:`scoring.drift`), and saves the report.  In the same transaction a ``warn`` or ``alert``
emits a ``model.drift`` event, and an ``alert`` with ``drift.retrain`` set also emits
``model.retrain_requested``; each becomes an alert delivery to the ``alerts.to`` channels,
exactly as ``endpoint.disabled`` does (:mod:`junction.store.events`).

* The version: ``scoring.version`` when pinned, else the registry's production stage
  (:func:`scoring.stages.production_version`).
* A version without a usable reference (saved before references existed, or whose
  ``reference.json`` does not match its card) gives a saved ``no_reference`` report whose
  ``reason`` says which; nothing is compared and nothing alerts.
* Alerts do not flood: a status alerts at most once per ``ALERT_QUIET_S`` (a day) for one
  pipeline and model version, while every check is saved and every event written; a worsening
  (``warn`` to ``alert``) alerts at once, its key being another.
* At most ``MAX_WINDOW_RECORDS`` of the newest scored records in the window are compared.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import orjson
from sqlalchemy import select

from junction.core import metrics
from junction.core.errors import ConfigError, ModelLoadError
from junction.core.logging import get_logger
from junction.pipeline.config import DriftConfig, HubConfig, ScoringConfig
from junction.store import tables as t
from junction.store.drift import save_report
from junction.store.events import ALERTING_KINDS, AlertPolicy, emit
from junction.store.repo import Store
from scoring.drift import (
    ALERT,
    NO_REFERENCE,
    WARN,
    DriftReport,
    FeatureDrift,
    compare,
)
from scoring.drift_reference import (
    load_reference,
)
from scoring.spec import spec_from_dict
from scoring.stages import production_version, version_dir

log = get_logger(__name__)

DRIFT_EVENT = "model.drift"
RETRAIN_EVENT = "model.retrain_requested"
DRIFT_KINDS = frozenset({DRIFT_EVENT, RETRAIN_EVENT})
ALERT_QUIET_S = 86_400.0
MAX_WINDOW_RECORDS = 50_000


def alert_policy(cfg: HubConfig) -> AlertPolicy:
    """The hub's alert policy for drift events.

    ``alerts.kinds`` unset means every alerting kind, which includes the drift kinds; a set
    list is taken as it is (name ``model.drift`` in it to get drift alerts).
    """
    kinds = cfg.alerts.kinds
    return AlertPolicy.of(
        cfg.alerts.to,
        ALERTING_KINDS | DRIFT_KINDS if kinds is None else kinds,
        quiet_s=ALERT_QUIET_S,
    )


def _scoring(cfg: HubConfig, pipeline: str) -> ScoringConfig:
    p = cfg.pipelines.get(pipeline)
    if p is None:
        raise ConfigError(f"no pipeline named {pipeline!r}")
    if p.scoring is None:
        raise ConfigError(f"pipeline {pipeline} does not score its records")
    return p.scoring


def model_version(cfg: HubConfig, pipeline: str) -> tuple[str, str | None]:
    """The model name and the version a drift check of ``pipeline`` looks at (None: none)."""
    scoring = _scoring(cfg, pipeline)
    if scoring.version is not None:
        return scoring.model, scoring.version
    return scoring.model, production_version(cfg.models_dir, scoring.model)


def _window(
    store: Store, pipeline: str, model: str, version: str, start: float, end: float
) -> tuple[list[Any], list[float]]:
    s, r = t.scores.c, t.records.c
    q = (
        select(r.id, r.entity, r.subject, r.payload, s.value)
        .select_from(t.scores.join(t.records, r.id == s.record_id))
        .where(
            r.pipeline == pipeline,
            s.model == model,
            s.model_version == version,
            s.scored_at >= start,
            s.scored_at <= end,
        )
        .order_by(s.scored_at.desc())
        .limit(MAX_WINDOW_RECORDS)
    )
    with store.begin() as conn:
        rows = store.open_record_rows(conn, conn.execute(q).mappings().all())  # encryption
    return [orjson.loads(r["payload"]) for r in rows], [float(r["value"]) for r in rows]


def _no_reference(report: DriftReport, reason: str) -> DriftReport:
    report.status = NO_REFERENCE
    report.reason = reason
    return report


def run_drift_check(
    store: Store, hub_cfg: HubConfig, pipeline_name: str, now: float | None = None
) -> DriftReport:
    """Check the drift of ``pipeline_name``'s production model over its window; save it.

    The pipeline's ``scoring.drift`` settings apply (their defaults when it has none, e.g. for
    ``junction model drift --run``).

    Raises:
        ConfigError: no such pipeline, or it does not score.
        ModelLoadError: the reference names features other than the model's spec computes.
    """
    at = time.time() if now is None else now
    scoring = _scoring(hub_cfg, pipeline_name)
    drift = scoring.drift or DriftConfig()
    model = scoring.model
    start = at - drift.window_s
    report = DriftReport(status=NO_REFERENCE, n=0)
    version: str | None = None
    try:
        model, version = model_version(hub_cfg, pipeline_name)
        if version is None:
            raise ModelLoadError(
                "the model has no version in the registry", context={"reason": "missing"}
            )
        reference = load_reference(version_dir(hub_cfg.models_dir, model, version))
        spec = spec_from_dict(reference["spec"])
    except ModelLoadError as exc:
        if exc.context.get("reason") != "missing":
            log.warning(
                "drift reference refused",
                pipeline=pipeline_name,
                model=model,
                version=version,
                error=exc.user_message,
                code=exc.code,
            )
        _no_reference(report, exc.user_message)
    else:
        payloads, values = _window(store, pipeline_name, model, version, start, at)
        cols, errors = spec.extract_columns(payloads)
        proba = np.asarray(values, dtype=np.float64)
        if cols.rows is not None:
            proba = proba[cols.rows]
        report = compare(
            reference,
            cols,
            proba,
            psi_warn=drift.psi_warn,
            psi_alert=drift.psi_alert,
            ks_alert=drift.ks_alert,
            min_records=drift.min_records,
        )
        if errors:
            report.reason = f"{len(errors)} scored records no longer yield features"
    report.pipeline, report.model, report.model_version = pipeline_name, model, version
    report.window_start, report.window_end, report.computed_at = start, at, at
    with store.begin() as conn:
        save_report(conn, report)
        if report.status in (WARN, ALERT):
            _emit(conn, hub_cfg, report, drift, at)
    metrics.observe_drift(pipeline_name, model, report.status, report.max_psi)
    log.info(
        "drift checked",
        pipeline=pipeline_name,
        model=model,
        version=version,
        status=report.status,
        n=report.n,
        max_psi=report.max_psi,
    )
    return report


def _worst(f: FeatureDrift) -> dict[str, Any]:
    ks = None if f.ks is None else round(f.ks, 4)
    return {"feature": f.name, "kind": f.kind, "psi": round(f.psi, 4), "ks": ks, "status": f.status}


def _emit(conn: Any, cfg: HubConfig, report: DriftReport, drift: DriftConfig, at: float) -> None:
    policy = alert_policy(cfg)
    subject = f"{report.model}/{report.model_version}"
    by_name = {f.name: f for f in report.all_features()}
    detail = {
        "pipeline": report.pipeline,
        "model": report.model,
        "version": report.model_version,
        "status": report.status,
        "report_id": report.id,
        "n": report.n,
        "max_psi": report.max_psi,
        "window_s": drift.window_s,
        "worst": [_worst(by_name[name]) for name in report.worst],
    }
    key = f"{report.pipeline}/{subject}"
    emit(
        conn,
        DRIFT_EVENT,
        subject,
        detail,
        alerts=policy,
        alert_key=f"{key}/{report.status}",
        now=at,
    )
    if report.status == ALERT and drift.retrain:
        emit(
            conn,
            RETRAIN_EVENT,
            subject,
            {**detail, "reason": "drift alert"},
            alerts=policy,
            alert_key=key,
            now=at,
        )


__all__ = [
    "ALERT_QUIET_S",
    "DRIFT_EVENT",
    "DRIFT_KINDS",
    "MAX_WINDOW_RECORDS",
    "RETRAIN_EVENT",
    "alert_policy",
    "model_version",
    "run_drift_check",
]
