"""``junction model outcomes import`` and ``junction model ab-report`` (see junction.cli.model).

Outcomes are the labels A/B reports and training need (a lead converted or not).  Pipelines
with ``scoring.outcome`` record them from later versions of the records; a CRM export or a
spreadsheet comes in with ``outcomes import``:

    record_id,kind,label,observed_at            (or pipeline,source_key instead of record_id)
    leads:00Q1,converted,1,2026-12-01T10:00:00Z

``kind`` (default ``--kind``) and ``observed_at`` (ISO 8601 or Unix seconds; default now) are
optional columns; ``label`` is 1/0, true/false or yes/no.  A file with any bad row writes
nothing.
"""

from __future__ import annotations

import csv
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from junction.cli.clients import ConfigOpt, open_store
from junction.cli.model import app

if TYPE_CHECKING:
    from junction.store.outcomes import OutcomeIn
    from scoring.abreport import ABReport

outcomes_app = typer.Typer(help="Outcomes (labels) of scored records.", no_args_is_help=True)
app.add_typer(outcomes_app, name="outcomes")

_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"0", "false", "no", "n"}
_CHUNK = 5000  # outcomes per transaction
MAX_KIND = 32


def parse_time(text: str | None, default: float) -> float:
    """ISO 8601 (a naive time is UTC) or Unix seconds; empty is ``default``.

    Raises:
        ValueError: neither form.
    """
    if text is None or not text.strip():
        return default
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def parse_label(text: str | None) -> int:
    """1 or 0 from 1/0, true/false, yes/no (any case).

    Raises:
        ValueError: anything else.
    """
    value = (text or "").strip().lower()
    if value in _TRUE:
        return 1
    if value in _FALSE:
        return 0
    raise ValueError("the label must be 1/0, true/false or yes/no")


def read_outcomes_csv(path: Path, kind: str, now: float) -> list[OutcomeIn]:
    """Parse an outcomes CSV (see the module docstring).

    Raises:
        ValueError: a bad header or row, naming its line.
    """
    from junction.store.outcomes import OutcomeIn

    items: list[OutcomeIn] = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        names = set(reader.fieldnames or ())
        if "label" not in names or not (
            "record_id" in names or {"pipeline", "source_key"} <= names
        ):
            raise ValueError("the header needs label and record_id (or pipeline and source_key)")
        for row in reader:
            line = reader.line_num
            try:
                row_kind = (row.get("kind") or "").strip() or kind
                if len(row_kind) > MAX_KIND:
                    raise ValueError(f"the kind is longer than {MAX_KIND} characters")
                record_id = (row.get("record_id") or "").strip() or None
                pipeline = (row.get("pipeline") or "").strip() or None
                source_key = (row.get("source_key") or "").strip() or None
                if record_id is None and not (pipeline and source_key):
                    raise ValueError("give a record_id, or a pipeline and a source_key")
                items.append(
                    OutcomeIn(
                        kind=row_kind,
                        label=parse_label(row.get("label")),
                        observed_at=parse_time(row.get("observed_at"), now),
                        record_id=record_id,
                        pipeline=pipeline,
                        source_key=source_key,
                    )
                )
            except ValueError as exc:
                raise ValueError(f"line {line}: {exc}") from None
    return items


@outcomes_app.command("import")
def import_outcomes(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="CSV of outcomes (see help).")
    ],
    config: ConfigOpt = Path("junction.yaml"),
    kind: Annotated[str, typer.Option(help="Outcome kind for rows without one.")] = "converted",
    source: Annotated[str, typer.Option(help="Where the outcomes come from.")] = "csv",
) -> None:
    """Record outcomes from a CSV (the latest observed_at per record and kind wins)."""
    from junction.store.outcomes import record_outcomes

    try:
        items = read_outcomes_csv(file, kind, time.time())
    except (ValueError, UnicodeDecodeError, csv.Error) as exc:
        typer.echo(f"{file.name}: {exc}", err=True)
        raise typer.Exit(2) from None
    written = 0
    with open_store(config) as store:
        for at in range(0, len(items), _CHUNK):
            written += record_outcomes(store, items[at : at + _CHUNK], source=source[:64])
    typer.echo(f"recorded {written} outcome(s) from {len(items)} row(s)")


@app.command("ab-report")
def ab_report_cmd(
    pipeline: Annotated[str, typer.Option("--pipeline", "-p", help="The pipeline under test.")],
    config: ConfigOpt = Path("junction.yaml"),
    kind: Annotated[str, typer.Option(help="Outcome kind to evaluate.")] = "converted",
    boot: Annotated[int, typer.Option(min=100, help="Bootstrap resamples for lift.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    since: Annotated[
        str | None,
        typer.Option(help="Only leads first scored at or after this time (the test's start)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")] = False,
) -> None:
    """Per-variant AUC and lift with 95 % intervals, and whether the challenger differs."""
    from junction.store.outcomes import scored_outcomes
    from scoring.abreport import ab_report

    try:
        start = None if since is None else parse_time(since, 0.0)
    except ValueError:
        typer.echo("--since must be ISO 8601 or Unix seconds", err=True)
        raise typer.Exit(2) from None
    with open_store(config) as store:
        rows = scored_outcomes(store, pipeline, kind, since=start)
    arms: dict[str, tuple[list[int], list[float]]] = {}
    versions: dict[str, list[str]] = {}
    for r in rows:
        labels, scores = arms.setdefault(r.variant, ([], []))
        labels.append(r.label)
        scores.append(r.value)
        versions.setdefault(r.variant, []).append(r.model_version)
    report = ab_report(arms, model_versions=versions, n_boot=boot, seed=seed)
    if as_json:
        typer.echo(json.dumps({"pipeline": pipeline, "kind": kind, **report.to_dict()}, indent=2))
        return
    typer.echo(render(report, pipeline, kind))


def _num(value: float | None, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def _ci(ci: tuple[float, float] | None, fmt: str = ".3f") -> str:
    return "" if ci is None else f" [{format(ci[0], fmt)}, {format(ci[1], fmt)}]"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def render(report: ABReport, pipeline: str, kind: str) -> str:
    """The report as text."""
    lines = [
        f"A/B report: pipeline {pipeline}, outcome {kind!r}",
        f"{'variant':<11} {'versions':<9} {'n':>7} {'pos':>6}  "
        f"{'conversion [95% CI]':<24} {'AUC [95% CI]':<24} lift@top10% [95% CI]",
    ]
    for v in report.variants:
        lines.append(
            f"{v.variant:<11} {','.join(v.model_versions) or '-':<9} {v.n:>7} {v.positives:>6}  "
            f"{_num(v.conversion) + _ci(v.conversion_ci):<24} "
            f"{_num(v.auc) + _ci(v.auc_ci):<24} {_num(v.lift, '.2f')}{_ci(v.lift_ci, '.2f')}"
        )
    for d in (report.auc, report.lift):
        p = "" if d.p_value is None else f" p={d.p_value:.3g}"
        lines.append(
            f"challenger - production, {d.metric}: {_signed(d.diff)}{_ci(d.ci)}{p} ({d.method})"
        )
    lines.append(f"verdict: {report.verdict}")
    return "\n".join(lines)
