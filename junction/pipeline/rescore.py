"""Score refresh: re-score a pipeline's stored records with the model it scores with today.

Salesforce Einstein and HubSpot refresh scores periodically; here a refresh is explicit
(``junction model rescore``, or a schedule that calls :func:`rescore`).  Stored canonical records
are read in pages by id, scored in batches with the pipeline's scorer (production stage, or the
pinned version, or the A/B pair) and written as score rows.  A score row is keyed by record and
model version, so a refresh by the same version is a no-op and a refresh by a new version adds its
rows beside the old ones: history is kept, and reading the latest score by time stays correct.

A refresh does not route: nothing is re-sent because a stored score was recomputed.  Records
that cannot be scored any more (e.g. a declared spec now refuses a value) are counted, not
quarantined: they are stored records, not new input.

With tracing on (ADR-0022) a refresh is one trace: a ``junction.rescore`` span (pipeline, model
name and version, and the counts at its end) with a ``junction.score`` and a ``junction.store``
span per page.  Score rows have no provenance: the trace is in the spans only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from sqlalchemy import select

from junction.core import tracing
from junction.core.errors import ConfigError
from junction.pipeline.config import HubConfig
from junction.pipeline.score import load_scorer, resolve_model_dir
from junction.store import tables as t
from junction.store.outcomes import record_lead
from junction.store.repo import SCORE_COLS, Store
from scoring.base import Scorer

PAGE = 1000


@dataclass
class RescoreSummary:
    """What a refresh did."""

    pipeline: str
    model: str
    model_version: str
    read: int = 0
    scored: int = 0
    failed: int = 0


def rescore(
    store: Store,
    hub: HubConfig,
    pipeline: str,
    *,
    scorer: Scorer | None = None,
    page: int = PAGE,
    progress: Callable[[int], None] | None = None,
) -> RescoreSummary:
    """Re-score every stored record of ``pipeline``; return the counts.

    Raises:
        ConfigError: the pipeline is unknown or does not score.
        ModelLoadError: its model cannot be loaded (nothing is written).
    """
    cfg = hub.pipelines.get(pipeline)
    if cfg is None:
        raise ConfigError("no such pipeline", context={"pipeline": pipeline})
    if cfg.scoring is None:
        raise ConfigError("the pipeline does not score", context={"pipeline": pipeline})
    if scorer is None:
        scorer = load_scorer(resolve_model_dir(hub.models_dir, cfg.scoring), cfg.scoring)
    summary = RescoreSummary(pipeline, scorer.name, scorer.version)
    if not tracing.enabled():
        _rescore(store, pipeline, scorer, summary, page, progress)
        return summary
    attrs: dict[str, tracing.AttrValue] = {
        "junction.pipeline": pipeline,
        "junction.model": scorer.name,
        "junction.model_version": scorer.version,
    }
    with tracing.span("junction.rescore", attrs) as sp:
        try:
            _rescore(store, pipeline, scorer, summary, page, progress)
        finally:
            sp.set("junction.read", summary.read)
            sp.set("junction.scores", summary.scored)
            sp.set("junction.failed", summary.failed)
    return summary


def _rescore(
    store: Store,
    pipeline: str,
    scorer: Scorer,
    summary: RescoreSummary,
    page: int,
    progress: Callable[[int], None] | None,
) -> None:
    rc = t.records.c
    last = ""
    while True:
        with store.begin() as conn:
            found = (
                conn.execute(
                    select(rc.id, rc.entity, rc.subject, rc.source_key, rc.payload)
                    .where(rc.pipeline == pipeline, rc.id > last)
                    .order_by(rc.id)
                    .limit(page)
                )
                .mappings()
                .all()
            )
            opened = store.open_record_rows(conn, found)  # personal fields opened (encryption)
        rows = [(r["id"], r["source_key"], r["payload"]) for r in opened]
        if not rows:
            return
        last = rows[-1][0]
        ids = [r[0] for r in rows]
        payloads = [orjson.loads(r[2]) for r in rows]
        # the A/B key is the lead's, as in the pipeline: a lead keeps its variant across versions
        with tracing.span("junction.score", {"junction.records": len(rows)}) as sp:
            cols = scorer.score_columns(
                payloads, keys=[record_lead(pipeline, r[0], r[1]) for r in rows]
            )
            failed = getattr(cols, "failed", None) or {}
            sp.set("junction.failed", len(failed))
        variants = getattr(cols, "variants", None) or [cols.variant] * len(ids)
        versions = getattr(cols, "model_versions", None) or [cols.model_version] * len(ids)
        now = time.time()
        out = [
            (
                rid,
                versions[i],
                cols.model,
                cols.values[i],
                cols.grades[i],
                orjson.dumps(cols.factors[i]).decode(),
                variants[i],
                now,
            )
            for i, rid in enumerate(ids)
            if i not in failed
        ]
        with tracing.span("junction.store", {"junction.scores": len(out)}), store.begin() as conn:
            store.insert_many(conn, t.scores, SCORE_COLS, out)
        summary.read += len(ids)
        summary.scored += len(out)
        summary.failed += len(failed)
        if progress is not None:
            progress(len(ids))
