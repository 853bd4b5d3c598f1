"""``junction model list|show|history|promote|rollback|stage|card``: the registry and its stages.

Every command finds the registry with ``--models-dir`` or, failing that, the ``models_dir`` of
the hub configuration (``--config``, default ``junction.yaml`` when it exists).  ``promote``
applies the promotion gate (the candidate's holdout metric must beat production's by
``--margin``) unless ``--force``; a candidate that fails stays in staging.  ``rollback`` puts
the previous production version back in one command.  Both record the person (``cli:<login>``)
in the model's stage history and, when a hub configuration is at hand, in the audit log
(``model.promote``, ``model.rollback``; ``stage`` writes ``model.stage``).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import orjson
import typer
from rich.console import Console
from rich.table import Table

from junction.cli.clients import cli_actor
from junction.cli.errors import print_error
from junction.cli.model import app
from junction.core.errors import ConfigError, JunctionError
from scoring import stages
from scoring.card_markdown import card_markdown
from scoring.promotion import HIGHER_IS_BETTER, LOWER_IS_BETTER, gate, promote_if_better

if TYPE_CHECKING:
    from junction.pipeline.config import HubConfig

console = Console()
err_console = Console(stderr=True, soft_wrap=True)
DEFAULT_CONFIG = Path("junction.yaml")

ModelsDirOpt = Annotated[
    Path | None,
    typer.Option("--models-dir", help="Model registry folder (default: the config's models_dir)."),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Hub configuration YAML (default: ./junction.yaml if present)."
    ),
]
NameArg = Annotated[str, typer.Argument(help="Model name, e.g. lead-score.")]
ReasonOpt = Annotated[str, typer.Option("--reason", "-r", help="Why (kept in the history).")]


def fail(exc: JunctionError) -> NoReturn:
    """Print a typed error (its context too, and how to fix it) and exit 2."""
    print_error(exc, err_console)
    raise typer.Exit(2)


class StageTo(StrEnum):
    """Stages ``stage`` puts a version in (production only by promote or rollback)."""

    staging = "staging"
    archived = "archived"
    none = "none"


class CardFormat(StrEnum):
    """How ``card`` prints a model card."""

    json = "json"
    markdown = "markdown"


class Registry:
    """Where the registry is and, when a hub config was given, the store to audit to."""

    def __init__(self, models_dir: Path | None, config: Path | None) -> None:
        """Resolve the registry folder from the options (typed errors exit 2)."""
        from junction.pipeline.config import load_config

        path = config if config is not None else DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None
        self.cfg: HubConfig | None = None
        try:
            if path is not None and (models_dir is None or config is not None):
                self.cfg = load_config(path)
            if models_dir is None:
                if self.cfg is None:
                    raise ConfigError(
                        "say where the registry is: --models-dir DIR or --config FILE"
                    )
                models_dir = Path(self.cfg.models_dir)
        except JunctionError as exc:
            fail(exc)
        self.root: Path = models_dir

    def audit(self, action: str, target: str, detail: dict[str, Any]) -> None:
        """Append to the hub's audit log when a config names its store; say so if it fails."""
        if self.cfg is None:
            return
        from junction.store.audit import AuditLog
        from junction.store.repo import Store

        try:
            store = Store.open(self.cfg.store)
            try:
                AuditLog(store).append(cli_actor(), action, target, None, detail)
            finally:
                store.close()
        except JunctionError as exc:
            # the change is done and in the stage history; the audit log missed it
            err_console.print(f"[yellow]warning[/]: not written to the audit log: {exc}")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _holdout(card: dict[str, Any], metric: str = "roc_auc") -> str:
    value = _dict(_dict(card.get("metrics")).get("holdout")).get(metric)
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def _safe_card(root: Path, name: str, version: str) -> dict[str, Any]:
    try:
        return stages.read_card(root, name, version)
    except JunctionError:
        return {}  # listed as unreadable; `show` names the error


def _model_type(card: dict[str, Any]) -> str:
    return str(card.get("algorithm") or card.get("model_type") or "-")


def _rows(root: Path, name: str) -> list[dict[str, Any]]:
    rows = []
    for version in stages.versions(root, name):
        card = _safe_card(root, name, version)
        rows.append(
            {
                "name": name,
                "version": version,
                "stage": stages.stage_of(root, name, version),
                "created_at": card.get("created_at") if card else None,
                "model_type": _model_type(card) if card else "(card unreadable)",
                "roc_auc": _holdout(card),
            }
        )
    return rows


@app.command("list")
def list_models(
    name: Annotated[str | None, typer.Option("--name", help="Only this model.")] = None,
    models_dir: ModelsDirOpt = None,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")] = False,
) -> None:
    """List model versions with their stage, creation time, model type and holdout AUC."""
    reg = Registry(models_dir, config)
    try:
        names = [name] if name else stages.list_models(reg.root)
        if name:
            stages.require_model(reg.root, name)
        rows = [row for n in names for row in _rows(reg.root, n)]
    except JunctionError as exc:
        fail(exc)
    if as_json:
        typer.echo(orjson.dumps(rows).decode())
        return
    if not rows:
        err_console.print(f"no models in {reg.root}", markup=False)
        return
    table = Table("name", "version", "stage", "created", "model type", "holdout AUC")
    for row in rows:
        style = "bold green" if row["stage"] == "production" else None
        created = str(row["created_at"] or "-")[:19].replace("T", " ")
        table.add_row(
            row["name"],
            row["version"],
            row["stage"],
            created,
            row["model_type"],
            row["roc_auc"],
            style=style,
        )
    console.print(table)


def _version_or_production(root: Path, name: str, version: str | None) -> str:
    if version is not None:
        return version
    stages.require_model(root, name)
    current = stages.production_version(root, name)
    if current is None:
        raise ConfigError(
            "the model has no production version; name a version", context={"model": name}
        )
    return current


def _card_and_stage(
    reg: Registry, name: str, version: str | None
) -> tuple[str, dict[str, Any], Any]:
    """The version (default: production), its card and its stage; typed errors exit 2."""
    try:
        version = _version_or_production(reg.root, name, version)
        return (
            version,
            stages.read_card(reg.root, name, version),
            stages.stage_of(reg.root, name, version),
        )
    except JunctionError as exc:
        fail(exc)
        raise  # fail() exits; this keeps the type checker informed


@app.command("show")
def show(
    name: NameArg,
    version: Annotated[str | None, typer.Argument(help="Version (default: production).")] = None,
    models_dir: ModelsDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Summarize one version's card and stage (default: the production version)."""
    reg = Registry(models_dir, config)
    version, card, stage = _card_and_stage(reg, name, version)
    try:
        stored = stages.read_stages(reg.root, name)
    except JunctionError as exc:
        fail(exc)
    data = _dict(card.get("training_data"))
    metrics = _dict(_dict(card.get("metrics")).get("holdout"))
    lines = {
        "model": f"{name} v{version}",
        "stage": stage,
        "created": card.get("created_at", "-"),
        "model type": _model_type(card),
        "training rows": f"{data.get('n_train', '-')} train, {data.get('n_holdout', '-')} holdout",
        "split": data.get("split", "-"),
        "holdout": ", ".join(
            f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, int | float)
        )
        or "-",
        "artifact sha256": _dict(card.get("artifact")).get("sha256", "-"),
    }
    if stored is not None:
        lines["production"] = stored.production or "-"
        lines["staging"] = stored.staging or "-"
        lines["archived"] = ", ".join(stored.archived) or "-"
    for key, value in lines.items():
        typer.echo(f"{key}: {value}")


@app.command("history")
def show_history(
    name: NameArg,
    models_dir: ModelsDirOpt = None,
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="The last N transitions.")] = 20,
) -> None:
    """The model's stage transitions (promotions, rollbacks, staging, archiving), oldest first."""
    reg = Registry(models_dir, config)
    try:
        stages.require_model(reg.root, name)
        entries = stages.history(reg.root, name)[-limit:]
    except JunctionError as exc:
        fail(exc)
    table = Table("at", "action", "version", "previous", "actor", "reason")
    for t in entries:
        table.add_row(t.at, t.action, t.version, t.previous or "-", t.actor, t.reason)
    console.print(table)


@app.command("promote")
def promote(
    name: NameArg,
    version: Annotated[str, typer.Argument(help="The version to make production.")],
    force: Annotated[bool, typer.Option("--force", help="Skip the promotion gate.")] = False,
    margin: Annotated[
        float, typer.Option(min=0.0, help="How much the candidate must beat production by.")
    ] = 0.005,
    metric: Annotated[
        str,
        typer.Option(
            help="Holdout metric the gate compares: "
            + ", ".join(sorted(HIGHER_IS_BETTER | LOWER_IS_BETTER))
            + " (brier: lower is better)."
        ),
    ] = "roc_auc",
    reason: ReasonOpt = "",
    models_dir: ModelsDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Make VERSION production if it beats production on the holdout (or with --force).

    A candidate that fails the gate is left in staging and the command exits 1.
    """
    reg = Registry(models_dir, config)
    actor = cli_actor()
    try:
        stored = stages.read_stages(reg.root, name)
        before = stored.production if stored else None  # explicit production, if any
        if force:
            candidate = stages.read_card(reg.root, name, version)
            current = stages.production_version(reg.root, name)
            baseline = (
                stages.read_card(reg.root, name, current)
                if current and current != version
                else None
            )
            result = gate(candidate, baseline, metric=metric, margin=margin)  # shown, not applied
            why = f"forced past the gate ({result.reason})"
            stages.promote(
                reg.root, name, version, actor=actor, reason=f"{reason}; {why}" if reason else why
            )
            promoted = before != version
        else:
            result = promote_if_better(
                reg.root, name, version, actor=actor, reason=reason, metric=metric, margin=margin
            )
            promoted = result.promoted
    except JunctionError as exc:
        fail(exc)
    detail = {
        "version": version,
        "previous": before,
        "forced": force,
        "reason": reason,
        "gate": result.to_dict(),
    }
    if promoted:
        reg.audit("model.promote", f"model:{name}", detail)
        typer.echo(f"{name}: production {before or '-'} -> {version}")
        typer.echo(f"gate: {result.reason}{' (skipped: --force)' if force else ''}")
        return
    if force or result.passed:  # already production
        typer.echo(f"{name}: v{version} is already production")
        return
    reg.audit("model.promote_refused", f"model:{name}", {**detail, "staged": True})
    err_console.print(
        f"{name}: v{version} not promoted, left in staging: {result.reason}", markup=False
    )
    raise typer.Exit(1)


@app.command("rollback")
def rollback(
    name: NameArg,
    reason: ReasonOpt = "",
    models_dir: ModelsDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Put the previous production version back (the current one is archived)."""
    reg = Registry(models_dir, config)
    try:
        before = stages.production_version(reg.root, name)
        after = stages.rollback(reg.root, name, actor=cli_actor(), reason=reason)
    except JunctionError as exc:
        fail(exc)
    reg.audit(
        "model.rollback",
        f"model:{name}",
        {"version": after.production, "previous": before, "reason": reason},
    )
    typer.echo(f"{name}: production {before} -> {after.production} (rolled back)")


@app.command("stage")
def set_stage(
    name: NameArg,
    version: Annotated[str, typer.Argument(help="The version to move.")],
    to: Annotated[StageTo, typer.Option("--to", help="staging, archived or none.")] = (
        StageTo.staging
    ),
    reason: ReasonOpt = "",
    models_dir: ModelsDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Put a version in staging, archive it, or clear its stage (never the production one)."""
    reg = Registry(models_dir, config)
    try:
        stages.stage(reg.root, name, version, to.value, actor=cli_actor(), reason=reason)
    except JunctionError as exc:
        fail(exc)
    reg.audit(
        "model.stage", f"model:{name}", {"version": version, "to": to.value, "reason": reason}
    )
    typer.echo(f"{name}: v{version} is now {to.value}")


@app.command("card")
def card(
    name: NameArg,
    version: Annotated[str | None, typer.Argument(help="Version (default: production).")] = None,
    fmt: Annotated[CardFormat, typer.Option("--format", "-f", help="json or markdown.")] = (
        CardFormat.markdown
    ),
    models_dir: ModelsDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Print a version's model card: as stored (json) or for people (markdown)."""
    reg = Registry(models_dir, config)
    version, data, stage = _card_and_stage(reg, name, version)
    if fmt is CardFormat.json:
        typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    typer.echo(card_markdown(data, stage=stage), nl=False)
