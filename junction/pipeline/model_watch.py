"""Following the production model in a long-running process: notice a promotion, reload.

A process that scores (the API, a pipeline runner, a runner's worker processes) loads its model
once.  A :class:`ModelWatch` remembers which version folder it loaded and under which stages
revision (:func:`scoring.stages.revision`: one ``stat``), so ``junction model promote`` and
``junction model rollback`` reach a running ``junction serve`` without a restart:

* :meth:`ModelWatch.stale` (one ``stat``) says whether ``stages.json`` changed since the load;
  the caller decides how often to ask (the API at most once a second per pipeline, a runner at
  the start of each run and of a pushed batch at most once a second).
* :meth:`ModelWatch.reload` resolves production again and, when it is another folder, loads and
  verifies it completely *before* it replaces the loaded model (one attribute assignment), so
  nobody ever scores with a half-loaded model.  A change that leaves production where it was
  (staging or archiving another version) costs no load.
* Pinned versions (``scoring.version``) and scorers that do not read the registry never reload.

**A reload that fails keeps the previously verified model.**  When the new production does not
load (``ModelLoadError``: a tampered or mismatched artifact, a deleted folder, a corrupt
``stages.json``) the watch keeps scoring with the model it had verified before, logs an error
naming the model, both versions and the error code, and records the failure
(:attr:`ModelWatch.failure`) for health checks.  It tries again when ``stages.json`` changes
(a rollback or another promotion) or after :data:`RETRY_S` seconds.  The rule that the hub
"refuses to score rather than score with a default" still holds: a process that has no verified
model yet (its first load fails) refuses to score, and the model it keeps is never a default but
the version that was production a moment ago, which every score names (``model_version``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from junction.core import metrics
from junction.core.errors import JunctionError
from junction.core.logging import get_logger
from junction.pipeline.config import ScoringConfig
from junction.pipeline.score import load_scorer, resolve_model_dir, uses_registry
from scoring.base import Scorer
from scoring.stages import revision

__all__ = ["RETRY_S", "LoadedModel", "ModelWatch", "ReloadFailure"]

log = get_logger(__name__)

# a production version that failed to load is tried again after this long (seconds) even if
# stages.json did not change (its files may have been restored in place)
RETRY_S = 60.0


@dataclass(frozen=True)
class LoadedModel:
    """A verified scorer, the version folder it came from and the stages revision it matched."""

    scorer: Scorer
    model_dir: Path
    revision: str | None


@dataclass(frozen=True)
class ReloadFailure:
    """The last reload that failed: under which revision, why (error code) and when."""

    revision: str | None
    code: str
    at: float  # time.monotonic()

    def as_dict(self) -> dict[str, str]:
        """For health checks: the error code only (no paths, no details)."""
        return {"code": self.code}


class ModelWatch:
    """The model one scoring config resolves to, reloaded when its production stage changes.

    Not thread-safe by itself: callers serialize :meth:`load` and :meth:`reload`.  Reading
    :attr:`current` needs no lock (it is replaced, never changed in place).
    """

    def __init__(self, models_dir: str, cfg: ScoringConfig, owner: str) -> None:
        """Watch ``cfg``'s model in ``models_dir``; ``owner`` names the process part in logs."""
        self.models_dir = models_dir
        self.cfg = cfg
        self.owner = owner
        # only an unpinned registry model follows the production stage
        self.watched = uses_registry(cfg) and cfg.version is None
        self.current: LoadedModel | None = None
        self.failure: ReloadFailure | None = None
        self.switches = 0
        self.next_check = 0.0  # time.monotonic() of the next stale() check; the caller's to use

    def _revision(self) -> str | None:
        return revision(self.models_dir, self.cfg.model) if self.watched else None

    def load(self) -> LoadedModel:
        """Resolve and load the model for the first time.

        Raises:
            ModelLoadError: the model does not load; with nothing verified yet, the caller
                refuses to score.
        """
        rev = self._revision()  # read before resolving: a change in between shows as stale
        vdir = resolve_model_dir(self.models_dir, self.cfg)
        loaded = LoadedModel(load_scorer(vdir, self.cfg), vdir, rev)
        self.current = loaded
        return loaded

    def stale(self) -> bool:
        """Whether ``stages.json`` changed since the loaded model was resolved (one ``stat``).

        A revision whose reload just failed is not stale again until :data:`RETRY_S` passed.
        """
        cur = self.current
        if not self.watched or cur is None:
            return False
        rev = self._revision()
        if rev == cur.revision:
            return False
        failed = self.failure
        return not (
            failed is not None and failed.revision == rev and time.monotonic() - failed.at < RETRY_S
        )

    def reload(self) -> bool:
        """Resolve production again and load it if it moved; return whether the model switched.

        On failure the loaded model stays (see the module docstring) and False is returned.
        """
        cur = self.current
        if cur is None:
            self.load()
            return True
        rev = self._revision()
        target: str | None = None  # the version production moved to, once resolved
        try:
            vdir = resolve_model_dir(self.models_dir, self.cfg)
            target = vdir.name
            if vdir == cur.model_dir:
                self.current = replace(cur, revision=rev)
                self.failure = None
                return False
            scorer = load_scorer(vdir, self.cfg)
        except (JunctionError, OSError) as exc:
            code = exc.code if isinstance(exc, JunctionError) else "model_unreadable"
            self.failure = ReloadFailure(rev, code, time.monotonic())
            log.error(
                "model reload failed; still scoring with the loaded version",
                owner=self.owner,
                model=self.cfg.model,
                version=cur.scorer.version,
                target=target,
                code=code,
                error=type(exc).__name__,
            )
            metrics.observe_model_reload(self.owner, self.cfg.model, "failed")
            return False
        self.current = LoadedModel(scorer, vdir, rev)
        self.failure = None
        self.switches += 1
        log.info(
            "model switched",
            owner=self.owner,
            model=self.cfg.model,
            previous=cur.scorer.version,
            version=scorer.version,
        )
        metrics.observe_model_reload(self.owner, self.cfg.model, "switched")
        return True
