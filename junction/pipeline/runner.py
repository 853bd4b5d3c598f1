"""The pipeline runner: extract → normalize → validate → score → route → outbox, batch by batch.

Each batch's effects (records, scores, deliveries, quarantine rows) and the cursor that says where
to resume are written in ONE transaction.  A crash anywhere therefore replays at most the batch in
flight, and every insert is idempotent (stable ids, ``INSERT … ON CONFLICT DO NOTHING``), so a
re-run neither loses nor duplicates anything.  A file is archived only after its last batch commits.
"""

from __future__ import annotations

import gc
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from connectors.base import RawBatch, SourceConnector
from junction.core.errors import ConfigError, JunctionError, RecordError
from junction.core.logging import get_logger
from junction.core.registry import Registry, default_registry
from junction.pipeline.config import HubConfig, PipelineConfig
from junction.pipeline.normalize import Normalizer
from junction.pipeline.route import Router, delivery_id
from junction.pipeline.score import load_scorer
from junction.store.repo import Store
from scoring.base import Scorer

log = get_logger(__name__)

Progress = Callable[[int], None]


@dataclass
class RunSummary:
    """Counts of one run of one pipeline."""

    pipeline: str
    run_id: int
    files: int = 0
    files_failed: int = 0
    read: int = 0
    stored: int = 0
    quarantined: int = 0
    routed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly counts."""
        return {k: v for k, v in self.__dict__.items() if k not in ("errors",)}


def quarantine_row(
    pipeline: str, stage: str, key: str, exc: JunctionError, payload: bytes | None,
    provenance: dict[str, Any], run_id: int | None,
) -> tuple[Any, ...]:  # fmt: skip
    """Build one quarantine row (the original bytes, the error and where it came from)."""
    err = exc.to_dict()
    return (
        pipeline, stage, key, err["type"], err["code"], err["message"],
        orjson.dumps(err["context"]).decode(), payload, orjson.dumps(provenance).decode(),
        "open", time.time(), run_id,
    )  # fmt: skip


class PipelineRunner:
    """Runs one configured pipeline against the store."""

    def __init__(
        self, name: str, cfg: PipelineConfig, hub: HubConfig, store: Store,
        registry: Registry = default_registry, scorer: Scorer | None = None,
    ) -> None:  # fmt: skip
        """Compile everything the pipeline needs once: connector, mapping, rules, scorer, routes."""
        self.name = name
        self.cfg = cfg
        self.store = store
        cls = registry.get("connectors", cfg.source.connector)
        options = {"batch_size": cfg.batch_size, **cfg.source.connector_options()}
        try:
            conn_cfg = cls.config_model.model_validate(options)
        except ValueError as exc:
            raise ConfigError(
                f"pipeline {name}: source options are invalid", details=str(exc)
            ) from exc
        self.connector: SourceConnector = cls(conn_cfg)
        self.normalizer = Normalizer(cfg.mapping, [(r.name, r.expr) for r in cfg.rules])
        self.entity = self.normalizer.entity
        self.router = Router(cfg.routes, self.entity)
        self.scorer = scorer
        if self.scorer is None and cfg.scoring is not None:
            self.scorer = load_scorer(hub.models_dir, cfg.scoring)
        self.event_type = f"{self.entity}.scored" if self.scorer else f"{self.entity}.received"

    def close(self) -> None:
        """Release the connector."""
        self.connector.close()

    def run_once(self, progress: Progress | None = None) -> RunSummary:
        """Process every ready input once, then return the counts."""
        started = time.perf_counter()
        run_id = self.store.start_run(self.name)
        summary = RunSummary(self.name, run_id)
        status, error = "succeeded", None
        try:
            for stream in self.connector.discover():
                self._run_stream(stream.name, summary, progress)
        except JunctionError as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc.user_message}"
            raise
        finally:
            summary.seconds = time.perf_counter() - started
            self.store.finish_run(run_id, status, summary.as_dict(), error)
        return summary

    def _run_stream(self, stream: str, summary: RunSummary, progress: Progress | None) -> None:
        cursor = self.store.get_cursor(self.name, stream)
        sha: str | None = None
        rows = 0
        summary.files += 1
        try:
            for batch in self.connector.read(stream, cursor):
                sha = batch.cursor.get("sha256", sha)
                if rows == 0 and sha and self.store.file_status(self.name, sha) == "done":
                    log.info("file already ingested; archiving", pipeline=self.name, sha256=sha)
                    break
                self.process_batch(batch, summary)
                rows = int(batch.cursor.get("row", rows))
                if progress is not None:
                    progress(len(batch) + len(batch.errors))
        except RecordError as exc:  # a file-level parse, encoding or size error
            self._fail_file(stream, sha, exc, summary)
            return
        self.store.finish_file(self.name, stream, sha or "", stream, "done", rows)
        self._archive(stream, self.cfg.archive.processed)

    def process_batch(self, batch: RawBatch, summary: RunSummary, *, commit_cursor: bool = True) -> None:
        """Normalize, validate, score and route one batch, then commit it with its cursor."""
        now = time.time()
        name = self.name
        run_id = summary.run_id
        prov_prefix = orjson.dumps(
            {"connector": self.connector.name, "stream": batch.stream, **batch.provenance}
        )[:-1].decode() + ',"position":'
        quarantined: list[tuple[Any, ...]] = []
        for row_err in batch.errors:
            err = row_err.error
            if not isinstance(err, JunctionError):
                err = RecordError(f"unreadable row: {type(err).__name__}")
            quarantined.append(quarantine_row(
                name, "extract", f"{name}:{row_err.key}", err, row_err.raw,
                orjson.loads(prov_prefix + str(row_err.position) + "}"), run_id,
            ))  # fmt: skip
        gc_was_enabled = gc.isenabled()
        gc.disable()  # many young objects per batch; the cyclic GC would rescan them all
        try:
            good, bad = self.normalizer.apply(batch.records)
            for i, exc in bad:
                stage = "validate" if exc.code == "rule_failed" else "normalize"
                quarantined.append(quarantine_row(
                    name, stage, f"{name}:{batch.keys[i]}", exc, orjson.dumps(batch.records[i]),
                    orjson.loads(prov_prefix + str(batch.positions[i]) + "}"), run_id,
                ))  # fmt: skip
            records, scores, deliveries = self._effects(batch, good, prov_prefix, run_id, now, quarantined)
        finally:
            if gc_was_enabled:
                gc.enable()
        self.store.write_batch(
            records=records, scores=scores, deliveries=deliveries, quarantined=quarantined,
            cursor=(name, batch.stream, batch.cursor) if commit_cursor else None,
        )  # fmt: skip
        summary.read += len(batch) + len(batch.errors)
        summary.stored += len(records)
        summary.quarantined += len(quarantined)
        summary.routed += len(deliveries)

    def _effects(
        self, batch: RawBatch, good: list[tuple[int, Any]], prov_prefix: str, run_id: int,
        now: float, quarantined: list[tuple[Any, ...]],
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:  # fmt: skip
        name, entity = self.name, self.entity
        system = self.connector.name
        records: list[tuple[Any, ...]] = []
        scores: list[tuple[Any, ...]] = []
        deliveries: list[tuple[Any, ...]] = []
        cols = None
        failed_scoring: dict[int, RecordError] = {}
        if self.scorer is not None and good:
            cols, failed_scoring = _score(self.scorer, [m for _, m in good])
        route = not self.router.empty
        for j, (i, model) in enumerate(good):
            key = batch.keys[i]
            rid = f"{name}:{key}"
            if j in failed_scoring:
                quarantined.append(quarantine_row(
                    name, "score", rid, failed_scoring[j], orjson.dumps(batch.records[i]),
                    orjson.loads(prov_prefix + str(batch.positions[i]) + "}"), run_id,
                ))  # fmt: skip
                continue
            body = model.model_dump_json()
            score_json = "null"
            score_view = None
            if cols is not None:
                value, grade, factors = cols.values[j], cols.grades[j], cols.factors[j]
                factors_json = orjson.dumps(factors).decode()
                scores.append((
                    rid, cols.model_version, cols.model, value, grade, factors_json, cols.variant, now,
                ))  # fmt: skip
                score_json = (
                    f'{{"value":{value!r},"grade":"{grade}","top_factors":{factors_json},'
                    f'"model":"{cols.model}","model_version":"{cols.model_version}",'
                    f'"variant":"{cols.variant}"}}'
                )
                score_view = {"value": value, "grade": grade, "model_version": cols.model_version}
            if route:
                try:
                    targets = self.router.targets(model, score_view)
                except RecordError as exc:
                    quarantined.append(quarantine_row(
                        name, "route", rid, exc, orjson.dumps(batch.records[i]),
                        orjson.loads(prov_prefix + str(batch.positions[i]) + "}"), run_id,
                    ))  # fmt: skip
                    continue
                if targets:
                    event = (
                        f'{{"type":"{self.event_type}","record_id":{orjson.dumps(rid).decode()},'
                        f'"pipeline":"{name}","entity":"{entity}","source_key":'
                        f'{orjson.dumps(key).decode()},"record":{body},"score":{score_json}}}'
                    )
                    for ch in targets:
                        deliveries.append((
                            delivery_id(rid, ch), rid, name, ch, self.event_type, event,
                            "pending", 0, now, now,
                        ))  # fmt: skip
            records.append((
                rid, name, entity, system, key, model.schema_version, body,
                prov_prefix + str(batch.positions[i]) + "}", run_id, now,
            ))  # fmt: skip
        return records, scores, deliveries

    def _fail_file(self, stream: str, sha: str | None, exc: RecordError, summary: RunSummary) -> None:
        path = Path(stream)
        payload: bytes | None = None
        try:
            if path.stat().st_size <= 16 * 1024 * 1024:
                payload = path.read_bytes()
        except OSError:
            payload = None
        key = f"{self.name}:file:{sha or path.name}"
        self.store.quarantine_one(quarantine_row(
            self.name, "extract", key, exc, payload,
            {"connector": self.connector.name, "stream": stream, "sha256": sha}, summary.run_id,
        ))  # fmt: skip
        self.store.finish_file(self.name, stream, sha or f"failed:{path.name}", stream, "failed", 0)
        summary.files_failed += 1
        summary.quarantined += 1
        summary.errors.append(f"{path.name}: {type(exc).__name__}: {exc.user_message}")
        log.warning("file quarantined", pipeline=self.name, file=path.name, error=type(exc).__name__)
        self._archive(stream, self.cfg.archive.failed)

    def _archive(self, stream: str, folder: str) -> None:
        src = Path(stream)
        if not src.exists():
            return
        dest_dir = Path(folder)
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / src.name
        if dest.exists():
            dest = dest_dir / f"{src.stem}.{int(time.time() * 1000)}{src.suffix}"
        shutil.move(str(src), str(dest))
        marker = src.with_name(src.name + ".done")
        if marker.exists():
            marker.unlink()


def _score(scorer: Scorer, models: list[Any]) -> tuple[Any, dict[int, RecordError]]:
    """Score a batch; records the scorer rejects are returned by index, not raised."""
    cols = scorer.score_columns(models)
    failed: dict[int, RecordError] = dict(getattr(cols, "failed", {}) or {})
    return cols, failed
