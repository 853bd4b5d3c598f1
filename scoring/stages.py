"""Model stages: which version is in production, which in staging, and how it got there.

Each model keeps ``<models_dir>/<name>/stages.json`` beside its version folders::

    {"stages_schema": "junction.model-stages.v1", "name": "lead-score",
     "production": "3", "staging": "4", "archived": ["1", "2"],
     "history": [{"at": "2026-12-02T08:00:00Z", "action": "promote", "version": "3",
                  "previous": "2", "actor": "cli:ana", "reason": "beats v2 on holdout AUC"}]}

A version is in at most one stage; a version in none is simply "registered".  ``history`` is
append-only: every :func:`promote`, :func:`rollback`, :func:`stage` and :func:`archive` adds one
entry (``action`` is ``promote``, ``rollback``, ``stage`` or ``archive``; ``previous`` is the
production version before the change).

**Production before any promotion.**  A registry written before stages existed has no
``stages.json``; so that it keeps working, :func:`production_version` then answers with the
newest version that is neither staged nor archived (the version the hub used to load).  Once a
version has been promoted, production is exactly what ``stages.json`` says and a newly trained
version never becomes production by itself.

**Rollback** walks back the line of production versions that the history records (every
promotion pushes a version, every rollback pops one): after promoting 1, 2 and 3, rollbacks go
to 2, then 1, then fail with nothing earlier to return to.

**Concurrency.**  Every change reads, edits and rewrites the file while holding an exclusive
``fcntl.flock`` on ``<name>/.stages.lock``, so concurrent writers (two CLI calls, the API and the
CLI) serialize; the file is written aside and renamed over the old one (``os.replace``), so
readers, which take no lock, see the old or the new file and never half of one.  A file that does
not parse or has the wrong shape is a :class:`~junction.core.errors.ModelLoadError` (code
``model_stages_corrupt``) and is never reset silently: the hub refuses to guess what production
is.  An unknown model or version is a ``ModelLoadError`` with code ``model_version_unknown``.

The promotion gate, which decides whether a candidate may replace production, is in
:mod:`scoring.promotion`.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeAlias

from junction.core.errors import ConfigError, ModelLoadError
from scoring.integrity import CARD_FILE

__all__ = [
    "ANY_PRODUCTION",
    "STAGES_FILE",
    "Stage",
    "Stages",
    "Transition",
    "archive",
    "history",
    "implicit_production",
    "list_models",
    "production_version",
    "promote",
    "read_card",
    "read_stages",
    "require_model",
    "revision",
    "rollback",
    "stage",
    "stage_of",
    "staging_version",
    "version_dir",
    "versions",
]

STAGES_FILE = "stages.json"
ANY_PRODUCTION = "*"  # promote(expect=...): whatever production is
LOCK_FILE = ".stages.lock"
SCHEMA = "junction.model-stages.v1"

Stage: TypeAlias = Literal["production", "staging", "archived", "none"]
Action: TypeAlias = Literal["promote", "rollback", "stage", "archive"]
_ACTIONS = ("promote", "rollback", "stage", "archive")


@dataclass(frozen=True)
class Transition:
    """One history entry: ``actor`` did ``action`` to ``version`` at ``at`` (ISO-8601 UTC)."""

    at: str
    action: Action
    version: str
    previous: str | None
    actor: str
    reason: str
    stage: Stage | None = None  # for action "stage": the stage the version was put in

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in ``stages.json``."""
        out: dict[str, Any] = {
            "at": self.at,
            "action": self.action,
            "version": self.version,
            "previous": self.previous,
            "actor": self.actor,
            "reason": self.reason,
        }
        if self.stage is not None:
            out["stage"] = self.stage
        return out


@dataclass
class Stages:
    """The stages of one model as stored (``production`` is ``None`` before any promotion)."""

    name: str
    production: str | None = None
    staging: str | None = None
    archived: list[str] = field(default_factory=list)
    history: list[Transition] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in ``stages.json``."""
        return {
            "stages_schema": SCHEMA,
            "name": self.name,
            "production": self.production,
            "staging": self.staging,
            "archived": list(self.archived),
            "history": [t.to_dict() for t in self.history],
        }

    def lineage(self) -> list[str]:
        """The production versions a rollback walks back through, oldest first."""
        line: list[str] = []
        for t in self.history:
            if t.action == "promote":
                line.append(t.version)
            elif t.action == "rollback" and line:
                line.pop()
        return line


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _unknown(message: str, name: str, version: str | None = None) -> ModelLoadError:
    ctx: dict[str, Any] = {"model": name}
    if version is not None:
        ctx["version"] = version
    return ModelLoadError(message, context=ctx, code="model_version_unknown")


def _corrupt(name: str, reason: str) -> ModelLoadError:
    return ModelLoadError(
        "the model's stages file is corrupt; fix or restore it (it is never reset)",
        details=reason,
        context={"model": name, "file": STAGES_FILE},
        code="model_stages_corrupt",
    )


def _check_name(name: str) -> None:
    # the name becomes a path segment: no separators, no dot-names
    if not name or name.startswith(".") or "/" in name or "\\" in name or "\x00" in name:
        raise ConfigError("a model name is a plain folder name", context={"model": name[:64]})


def model_dir(models_dir: str | Path, name: str) -> Path:
    """The folder of model ``name`` (its versions, ``stages.json`` and lock file)."""
    _check_name(name)
    return Path(models_dir) / name


def versions(models_dir: str | Path, name: str) -> list[str]:
    """The versions of model ``name``, oldest first (digit-named folders)."""
    root = model_dir(models_dir, name)
    if not root.is_dir():
        return []
    found = [p.name for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(found, key=int)


def list_models(models_dir: str | Path) -> list[str]:
    """The names of the models in the registry, sorted (folders holding at least one version)."""
    root = Path(models_dir)
    if not root.is_dir():
        return []
    names = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(n for n in names if versions(root, n))


def require_model(models_dir: str | Path, name: str) -> list[str]:
    """The versions of ``name``; ``ModelLoadError`` (``model_version_unknown``) if it has none."""
    found = versions(models_dir, name)
    if not found:
        raise _unknown("no model has this name", name)
    return found


def version_dir(models_dir: str | Path, name: str, version: str) -> Path:
    """The folder of ``version``; ``ModelLoadError`` (``model_version_unknown``) if absent."""
    root = model_dir(models_dir, name)
    if not version.isdigit() or not (root / version).is_dir():
        if not versions(models_dir, name):
            raise _unknown("no model has this name", name)
        raise _unknown("the model has no such version", name, version)
    return root / version


def read_card(models_dir: str | Path, name: str, version: str) -> dict[str, Any]:
    """The model card of ``version`` as a dict (not verified against the artifact).

    Raises:
        ModelLoadError: unknown version, or a card that is missing or not a JSON object.
    """
    vdir = version_dir(models_dir, name, version)
    try:
        card = json.loads((vdir / CARD_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(
            "the model card is missing", context={"model": name, "version": version}
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(
            "the model card is unreadable",
            context={"model": name, "version": version, "reason": type(exc).__name__},
        ) from None
    if not isinstance(card, dict):
        raise ModelLoadError(
            "the model card is not a JSON object", context={"model": name, "version": version}
        )
    return card


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} must be a string or null")
    return value


def _transition(raw: Any) -> Transition:
    if not isinstance(raw, dict):
        raise ValueError("a history entry is not an object")
    for key in ("at", "action", "version", "actor", "reason"):
        if not isinstance(raw.get(key), str):
            raise ValueError(f"a history entry has no string {key!r}")
    if raw["action"] not in _ACTIONS:
        raise ValueError(f"unknown history action {raw['action']!r}")
    stage_value = _opt_str(raw, "stage")
    if stage_value not in (None, "production", "staging", "archived", "none"):
        raise ValueError(f"unknown stage {stage_value!r}")
    return Transition(
        at=raw["at"],
        action=raw["action"],
        version=raw["version"],
        previous=_opt_str(raw, "previous"),
        actor=raw["actor"],
        reason=raw["reason"],
        stage=stage_value,  # type: ignore[arg-type]  # checked against the literal just above
    )


def _parse(name: str, text: str) -> Stages:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _corrupt(name, f"not JSON: {exc.msg} at line {exc.lineno}") from None
    try:
        if not isinstance(raw, dict) or raw.get("stages_schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} document")
        if raw.get("name") != name:
            raise ValueError("it names another model")
        archived = raw.get("archived")
        history_raw = raw.get("history")
        if not isinstance(archived, list) or not all(isinstance(v, str) for v in archived):
            raise ValueError("archived must be a list of versions")
        if not isinstance(history_raw, list):
            raise ValueError("history must be a list")
        return Stages(
            name=name,
            production=_opt_str(raw, "production"),
            staging=_opt_str(raw, "staging"),
            archived=list(archived),
            history=[_transition(t) for t in history_raw],
        )
    except ValueError as exc:
        raise _corrupt(name, str(exc)) from None


def read_stages(models_dir: str | Path, name: str) -> Stages | None:
    """The stored stages of ``name``, or ``None`` when it has no ``stages.json`` yet.

    Raises:
        ModelLoadError: the file is unreadable or corrupt (code ``model_stages_corrupt``).
    """
    path = model_dir(models_dir, name) / STAGES_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise _corrupt(name, f"unreadable: {type(exc).__name__}") from None
    return _parse(name, text)


def _write(root: Path, stages: Stages) -> None:
    blob = json.dumps(stages.to_dict(), indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".stages-", suffix=".tmp", dir=root)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, root / STAGES_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # the rename itself must survive a crash too
    dir_fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextmanager
def _locked(models_dir: str | Path, name: str) -> Iterator[Stages]:
    """Hold the model's lock; yield its stages (fresh when none) and write them back on exit."""
    root = model_dir(models_dir, name)
    require_model(models_dir, name)
    with (root / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            stages = read_stages(models_dir, name) or Stages(name=name)
            before = stages.to_dict()
            yield stages
            if stages.to_dict() != before:
                _write(root, stages)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def implicit_production(
    models_dir: str | Path, name: str, stages: Stages | None, exclude: str | None = None
) -> str | None:
    """Production before any promotion: the newest version not staged, archived or ``exclude``."""
    excluded: set[str | None] = {exclude}
    if stages is not None:
        excluded |= {stages.staging, *stages.archived}
    candidates = [v for v in versions(models_dir, name) if v not in excluded]
    return candidates[-1] if candidates else None


def production_version(models_dir: str | Path, name: str) -> str | None:
    """The production version of ``name``, or ``None`` when it has no usable version.

    Before any promotion (no ``stages.json``, or one that never recorded a promotion) this is
    the newest version that is neither staged nor archived, which is what the hub loaded
    before stages existed; afterwards it is exactly the promoted version.

    Raises:
        ModelLoadError: ``stages.json`` is corrupt.
    """
    stages = read_stages(models_dir, name)
    if stages is not None and stages.production is not None:
        return stages.production
    return implicit_production(models_dir, name, stages)


def revision(models_dir: str | Path, name: str) -> str | None:
    """A token that changes whenever ``stages.json`` is rewritten (``None`` while it is absent).

    One ``stat`` call, cheap enough to poll: a process that caches the production model (the
    API's scorers, a pipeline runner) compares it with the token it loaded under and resolves
    production again when it differs.  Every write replaces the file (a new inode).
    """
    try:
        st = os.stat(model_dir(models_dir, name) / STAGES_FILE)
    except FileNotFoundError:
        return None
    return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"


def staging_version(models_dir: str | Path, name: str) -> str | None:
    """The version of ``name`` in staging, if any."""
    stages = read_stages(models_dir, name)
    return stages.staging if stages else None


def stage_of(models_dir: str | Path, name: str, version: str) -> Stage:
    """The stage ``version`` is in (an implicit production counts as production)."""
    stages = read_stages(models_dir, name)
    if version == production_version(models_dir, name):
        return "production"
    if stages is not None and version == stages.staging:
        return "staging"
    if stages is not None and version in stages.archived:
        return "archived"
    return "none"


def history(models_dir: str | Path, name: str) -> list[Transition]:
    """The transitions of ``name``, oldest first (empty before the first one)."""
    stages = read_stages(models_dir, name)
    return list(stages.history) if stages else []


def _remove(stages: Stages, version: str) -> None:
    if stages.staging == version:
        stages.staging = None
    if version in stages.archived:
        stages.archived.remove(version)


def _set_production(stages: Stages, version: str) -> None:
    old = stages.production
    _remove(stages, version)
    if old is not None and old != version and old not in stages.archived:
        stages.archived.append(old)
    stages.production = version


def _verify(models_dir: str | Path, name: str, version: str) -> None:
    # a version that cannot load must never become production: the hub would refuse to score
    from scoring.registry import load_compiled

    load_compiled(version_dir(models_dir, name, version))


def promote(
    models_dir: str | Path,
    name: str,
    version: str,
    *,
    actor: str,
    reason: str,
    verify: bool = True,
    expect: str | None = ANY_PRODUCTION,
) -> Stages:
    """Make ``version`` production; the old production version is archived.

    Promoting the production version again changes nothing and records nothing.  With
    ``verify`` (the default) the version must pass the registry's integrity checks first.
    With ``expect`` (a version, or ``None`` for "never promoted") the change happens only if
    the stored production is still that one: a decision taken on what production was (the
    promotion gate) is not applied over another writer's change.

    Returns:
        The stages after the change.

    Raises:
        ConfigError: production is not ``expect`` any more (code ``production_changed``).
        ModelLoadError: unknown version, a version that fails to load, or a corrupt
            ``stages.json``.
    """
    version_dir(models_dir, name, version)
    if verify:
        _verify(models_dir, name, version)
    with _locked(models_dir, name) as stages:
        if expect != ANY_PRODUCTION and stages.production != expect:
            raise ConfigError(
                "production changed meanwhile; look again and retry",
                context={"model": name, "expected": expect, "production": stages.production},
                code="production_changed",
            )
        if stages.production == version:
            return stages
        previous = stages.production
        if previous is None:
            # the first promotion of a legacy registry: what the hub loaded until now is what a
            # rollback returns to
            implicit = implicit_production(models_dir, name, stages, exclude=version)
            if implicit is not None:
                stages.history.append(
                    Transition(_now(), "promote", implicit, None, actor, "implicit production")
                )
                _set_production(stages, implicit)
                previous = implicit
        _set_production(stages, version)
        stages.history.append(Transition(_now(), "promote", version, previous, actor, reason))
        return stages


def rollback(models_dir: str | Path, name: str, *, actor: str, reason: str) -> Stages:
    """Put back the production version that preceded the current one; archive the current one.

    Returns:
        The stages after the change.

    Raises:
        ConfigError: no earlier production version to return to (code ``nothing_to_roll_back``).
        ModelLoadError: the earlier version's folder is gone or fails to load, or a corrupt
            ``stages.json``.
    """
    with _locked(models_dir, name) as stages:
        line = stages.lineage()
        if stages.production is None or len(line) < 2:
            raise ConfigError(
                "there is no earlier production version to roll back to",
                context={"model": name, "production": stages.production},
                code="nothing_to_roll_back",
            )
        target = line[-2]
        _verify(models_dir, name, target)
        current = stages.production
        _set_production(stages, target)
        stages.history.append(Transition(_now(), "rollback", target, current, actor, reason))
        return stages


def stage(
    models_dir: str | Path,
    name: str,
    version: str,
    to: Literal["staging", "archived", "none"],
    *,
    actor: str = "system",
    reason: str = "",
) -> Stages:
    """Put ``version`` in staging (replacing the staged one), archive it, or clear its stage.

    Production changes only through :func:`promote` and :func:`rollback`.

    Raises:
        ConfigError: ``version`` is production (code ``model_in_production``), or ``to`` is
            not a stage this function sets.
        ModelLoadError: unknown version or a corrupt ``stages.json``.
    """
    if to not in ("staging", "archived", "none"):
        raise ConfigError(
            "a version becomes production only by promote or rollback",
            context={"model": name, "stage": str(to)[:32]},
        )
    version_dir(models_dir, name, version)
    with _locked(models_dir, name) as stages:
        in_production = version == (
            stages.production or implicit_production(models_dir, name, stages)
        )
        # before any promotion, staging the newest version un-does its implicit production
        if in_production and (stages.production is not None or to != "staging"):
            raise ConfigError(
                "this version is in production: promote another one or roll back first",
                context={"model": name, "version": version},
                code="model_in_production",
            )
        current: Stage = (
            "staging"
            if stages.staging == version
            else "archived"
            if version in stages.archived
            else "none"
        )
        if current == to:
            return stages
        _remove(stages, version)
        if to == "staging":
            stages.staging = version
        elif to == "archived":
            stages.archived.append(version)
        action: Action = "archive" if to == "archived" else "stage"
        previous = stages.production
        stages.history.append(
            Transition(_now(), action, version, previous, actor, reason, stage=to)
        )
        return stages


def archive(
    models_dir: str | Path, name: str, version: str, *, actor: str = "system", reason: str = ""
) -> Stages:
    """Archive ``version`` (refused for the production version); see :func:`stage`."""
    return stage(models_dir, name, version, "archived", actor=actor, reason=reason)
