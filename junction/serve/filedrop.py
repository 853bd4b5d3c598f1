"""File-drop watching: claim complete files atomically, then run them through the pipeline.

A file in the watched folder is *ready* once it is complete: with ``require_done_marker`` when its
``<name>.done`` marker exists, otherwise when its size and mtime stayed the same across two polls
at least ``settle_seconds`` apart (and its mtime is that old).  The pipeline's lease holder claims a
ready file with one ``os.rename`` into ``<folder>/processing/``, so a writer that is still busy, a
second watcher or a second process can never take the same file.

Claimed files are read by a runner whose source path is the ``processing/`` folder: the cursor of
each file is keyed by its path there, so a crash leaves the file in ``processing/`` and the next
start resumes it after its last committed batch, before claiming anything new.  The runner archives
a file to ``archive.processed`` after its last row is durable, or to ``archive.failed`` with a
``<name>.reason.txt`` (error code and safe message) when the file cannot be read.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath

from connectors.base import Capability
from connectors.files import DONE_SUFFIX, FileSourceConfig, list_files
from junction.core import metrics
from junction.core.errors import ConfigError
from junction.core.logging import get_logger
from junction.core.registry import Registry
from junction.pipeline.config import PipelineConfig, SourceConfig
from junction.pipeline.runner import PipelineRunner, RunInterrupted, RunSummary

log = get_logger(__name__)

PROCESSING = "processing"


def is_file_pipeline(cfg: PipelineConfig, registry: Registry) -> bool:
    """Whether the pipeline's connector reads file drops."""
    cls = registry.get("connectors", cfg.source.connector)
    return Capability.FILES in getattr(cls, "capabilities", frozenset())


def watch_folder(spec: str) -> Path:
    """The folder a file source watches: the directory, the glob's fixed prefix or the parent."""
    base = os.path.abspath(os.path.expanduser(spec))
    parts = PurePath(base).parts
    stop = next((i for i, p in enumerate(parts) if any(c in p for c in "*?[")), None)
    if stop is not None:
        return Path(*parts[:stop])
    if os.path.isdir(base):
        return Path(base)
    return Path(base).parent


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float


class FileDrop:
    """The watched folder of one file pipeline, and how its files are claimed and run."""

    def __init__(self, name: str, cfg: PipelineConfig, options: FileSourceConfig) -> None:
        """Watch the folder of ``options.path`` for pipeline ``name``."""
        self.name = name
        self.cfg = cfg
        self.spec = options.path
        self.settle_s = options.settle_seconds
        self.needs_marker = options.require_done_marker
        self.folder = watch_folder(options.path)
        self.processing = self.folder / PROCESSING
        self.scheduled = cfg.source.schedule is not None
        # never claim from the folders files are moved to, even under a recursive glob
        self._skip = tuple(
            str(Path(p).resolve()) + os.sep
            for p in (self.processing, cfg.archive.processed, cfg.archive.failed)
        )
        self._seen: dict[str, _Seen] = {}
        self._ready: list[str] = []
        self._lock = threading.Lock()

    @classmethod
    def for_pipeline(cls, name: str, cfg: PipelineConfig, registry: Registry) -> FileDrop:
        """Build the drop from the pipeline's connector options (validated by its config model)."""
        model = registry.get("connectors", cfg.source.connector).config_model
        try:
            options = model.model_validate(
                {"batch_size": cfg.batch_size, **cfg.source.connector_options()}
            )
        except ValueError as exc:
            raise ConfigError(
                f"pipeline {name}: source options are invalid", details=str(exc)
            ) from exc
        if not isinstance(options, FileSourceConfig):
            raise ConfigError(f"pipeline {name}: {cfg.source.connector} is not a file source")
        return cls(name, cfg, options)

    def processing_config(self) -> PipelineConfig:
        """The pipeline's config with its source reading the ``processing/`` folder.

        Files there were complete when claimed, so they need neither settling nor a marker.
        """
        source = self.cfg.source.model_dump()
        source.update(path=str(self.processing), settle_seconds=0, require_done_marker=False)
        return self.cfg.model_copy(update={"source": SourceConfig.model_validate(source)})

    def prepare(self) -> None:
        """Create ``processing/`` (fails early when the folder is not writable)."""
        try:
            self.processing.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"pipeline {self.name}: cannot create {self.processing}",
                details=f"{type(exc).__name__}: {exc.strerror}",
            ) from exc

    # watching

    def _candidates(self) -> list[str]:
        try:
            files = list_files(self.spec)
        except OSError:
            return []
        return [f for f in files if not f.startswith(self._skip)]

    def poll(self, now: float | None = None) -> bool:
        """Observe the folder once; return True when a file is ready to claim."""
        now = time.monotonic() if now is None else now
        ready: list[str] = []
        seen: dict[str, _Seen] = {}
        for path in self._candidates():
            try:
                st = os.stat(path)
            except OSError:
                continue
            prev = self._seen.get(path)
            if prev is None or (prev.size, prev.mtime_ns) != (st.st_size, st.st_mtime_ns):
                prev = _Seen(st.st_size, st.st_mtime_ns, now)
            seen[path] = prev
            if self._complete(path, prev, now, st.st_mtime):
                ready.append(path)
        with self._lock:
            self._seen, self._ready = seen, ready
        return bool(ready)

    def _complete(self, path: str, seen: _Seen, now: float, mtime: float) -> bool:
        if self.needs_marker:
            return os.path.isfile(path + DONE_SUFFIX)
        stable = seen.since < now and now - seen.since >= self.settle_s
        return stable and time.time() - mtime >= self.settle_s

    def leftovers(self) -> list[str]:
        """Files in ``processing/``: claimed earlier and not yet archived (a crash, a stop)."""
        # the runner's own listing, so what counts as left over is exactly what it will read
        try:
            return list_files(str(self.processing)) if self.processing.is_dir() else []
        except OSError:
            return []

    # claiming and running

    def claim(self) -> list[Path]:
        """Move every ready file into ``processing/`` with one rename each; return the claims."""
        with self._lock:
            ready, seen = list(self._ready), dict(self._seen)
            self._ready = []
        claimed: list[Path] = []
        for path in ready:
            dest = self.processing / os.path.basename(path)
            if dest.exists():
                continue  # a same-named file is still in processing; claim this one later
            try:
                st = os.stat(path)
                mark = seen[path]
                if (st.st_size, st.st_mtime_ns) != (mark.size, mark.mtime_ns):
                    continue  # written to since the poll
                os.rename(path, dest)
            except (FileNotFoundError, KeyError):
                continue  # another process claimed it first
            except OSError as exc:
                log.warning(
                    "file claim failed",
                    pipeline=self.name,
                    file=os.path.basename(path),
                    error=type(exc).__name__,
                )
                continue
            marker = Path(path + DONE_SUFFIX)
            marker.unlink(missing_ok=True)
            claimed.append(dest)
            log.info("file claimed", pipeline=self.name, file=dest.name, bytes=mark.size)
        metrics.observe_file(self.name, "claimed", len(claimed))
        return claimed

    def run_cycle(
        self,
        runner: PipelineRunner,
        reason: str,
        stop: threading.Event,
        progress: Callable[[int], None],
    ) -> list[RunSummary]:
        """Resume files left in ``processing/``, claim ready ones, and run them.

        A scheduled pipeline claims only when its schedule fires (or on a manual run); an
        unscheduled one claims whenever files are ready.  ``runner`` reads ``processing/``.
        """
        summaries: list[RunSummary] = []
        left = self.leftovers()
        if left:
            log.info("resuming claimed files", pipeline=self.name, files=len(left))
            summaries.append(runner.run_once(progress))
        if stop.is_set():
            raise RunInterrupted
        claimed: list[Path] = []
        if reason in ("schedule", "manual") or not self.scheduled:
            claimed = self.claim()
        if claimed or (not summaries and reason in ("schedule", "manual")):
            summaries.append(runner.run_once(progress))
        for s in summaries:
            metrics.observe_file(self.name, "processed", s.files - s.files_failed)
            metrics.observe_file(self.name, "rejected", s.files_failed)
        return summaries
