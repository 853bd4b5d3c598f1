"""The ``junction`` command line (Typer + Rich)."""

from __future__ import annotations

import signal
import sys
import time
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from junction.cli.api import api_app
from junction.cli.audit import app as audit_app
from junction.cli.channels import app as channels_app
from junction.cli.clients import app as clients_app
from junction.cli.deliveries import app as deliveries_app
from junction.cli.errors import JunctionGroup, print_error, quarantine_examples, set_debug
from junction.cli.export import export_records
from junction.cli.keys import app as keys_app
from junction.cli.model import app as model_app
from junction.cli.pii import schemas_pii
from junction.cli.progress import progress, progress_bar
from junction.cli.reconcile import reconcile_command
from junction.cli.status import status_command
from junction.cli.subjects import app as subjects_app
from junction.cli.suppressions import app as suppressions_app
from junction.cli.worker import worker as worker_command
from junction.core.errors import JunctionError
from junction.core.registry import default_registry

app = typer.Typer(
    cls=JunctionGroup,
    help="Junction: connect CRM/ERP systems, normalize, score and deliver.",
    no_args_is_help=True,
)
connectors_app = typer.Typer(help="Source connectors.", no_args_is_help=True)
mappings_app = typer.Typer(help="Mapping specs.", no_args_is_help=True)
schemas_app = typer.Typer(help="Canonical schemas.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Quarantined records and deliveries.", no_args_is_help=True)
app.add_typer(connectors_app, name="connectors")
app.add_typer(mappings_app, name="mappings")
app.add_typer(schemas_app, name="schemas")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(api_app, name="api")
app.add_typer(clients_app, name="clients")
app.add_typer(audit_app, name="audit")
app.add_typer(deliveries_app, name="deliveries")
app.add_typer(channels_app, name="channels")
app.add_typer(suppressions_app, name="suppressions")
app.add_typer(model_app, name="model")
app.add_typer(keys_app, name="keys")
app.add_typer(subjects_app, name="subjects")
app.command("export")(export_records)
app.command("worker")(worker_command)
app.command("reconcile")(reconcile_command)
app.command("status")(status_command)
schemas_app.command("pii")(schemas_pii)

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

ConfigArg = Annotated[Path, typer.Argument(help="Pipeline configuration YAML.")]


@app.callback()
def junction(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an error (JUNCTION_DEBUG=1).")
    ] = False,
) -> None:
    """Junction: connect CRM/ERP systems, normalize, score and deliver."""
    set_debug(debug)


def fail(exc: JunctionError) -> None:
    """Print a typed error for a person, with how to fix it, and exit non-zero."""
    print_error(exc, err_console)
    raise typer.Exit(2)


def delivery_line(stats: Any) -> str:
    """One line about what the delivery worker did."""
    return f"deliveries: {stats.delivered} delivered, {stats.retried} to retry, {stats.dead} dead"


@app.command()
def check(
    config: ConfigArg,
    connect: Annotated[
        bool,
        typer.Option("--connect", help="Also reach each source: address, credentials, access."),
    ] = False,
) -> None:
    """Validate a configuration file (errors name the line), its mappings, rules and channels."""
    from junction.pipeline.check import check_config

    try:
        report, problems = check_config(config, connect=connect)
    except JunctionError as exc:
        fail(exc)
    for line in report:
        console.print(f"[green]ok[/] {line}")
    for line in problems:
        err_console.print(f"[bold red]failed[/] {line}")
    if problems:
        raise typer.Exit(2)


@app.command()
def run(
    config: ConfigArg,
    once: Annotated[
        bool, typer.Option("--once", help="Process ready inputs once, deliver, exit.")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between polls when not --once.")] = 5.0,
    drain_wait: Annotated[
        float, typer.Option(help="With --once: wait this long for due retries.")
    ] = 0.0,
) -> None:
    """Run the configured pipelines (file drops and polls) and deliver the results."""
    from junction.pipeline.hub import Hub

    stopping = False

    def stop(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    try:
        hub = Hub.from_file(config)
        try:
            while True:
                with progress_bar(transient=not once) as bar:
                    task = bar.add_task("records", total=None)
                    summaries = hub.run_once(partial(bar.advance, task), keep_going=True)
                stats = hub.deliver(drain_wait_s=drain_wait if once else 0.0)
                failed = [s for s in summaries if s.run_id == 0 and s.errors]
                for s in failed:  # the others ran; this one resumes from its cursor next time
                    err_console.print(f"{s.pipeline}: failed: {s.errors[0]}")
                busy = any(s.read or s.files for s in summaries) or stats.delivered or stats.dead
                if not once and not busy:  # polling: say nothing while there is nothing to say
                    summaries = []
                for s in summaries:
                    if s in failed:
                        continue
                    console.print(
                        f"{s.pipeline}: read {s.read}, stored {s.stored}, "
                        f"quarantined {s.quarantined}, "
                        f"routed {s.routed} ({s.seconds:.1f}s)"
                    )
                    if s.quarantined:
                        for line in quarantine_examples(hub.store, s.pipeline, s.run_id):
                            err_console.print(f"  {line}", markup=False, highlight=False)
                if once or busy:
                    console.print(delivery_line(stats))
                if once and failed:
                    raise typer.Exit(2)
                if once or stopping:
                    break
                deadline = time.monotonic() + interval
                while not stopping and time.monotonic() < deadline:
                    time.sleep(0.2)
        finally:
            hub.close()
    except JunctionError as exc:
        fail(exc)
    except KeyboardInterrupt:
        # committed batches stay committed; the next run resumes from their cursors
        err_console.print("interrupted; the next run resumes from the last committed batch")
        raise typer.Exit(130) from None


@app.command()
def serve(
    config: ConfigArg,
    log_json: Annotated[
        bool, typer.Option("--log-json/--log-text", help="JSON log lines, or text for a person.")
    ] = True,
) -> None:
    """Serve the API, schedules, file drops, pipeline runs and deliveries until SIGTERM."""
    from junction.serve.service import serve as run_service

    try:
        code = run_service(config, log_json=log_json)
    except JunctionError as exc:
        fail(exc)
    raise typer.Exit(code)


@app.command()
def ingest(
    file: Annotated[Path, typer.Argument(help="A CSV or XML file.")],
    mapping: Annotated[
        str,
        typer.Option(
            "--mapping",
            help="Mapping id (csv.lead; `junction mappings list` shows them) or YAML path.",
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="Write canonical JSON lines here.")
    ] = None,
    record_tag: Annotated[str | None, typer.Option(help="XML record element name.")] = None,
) -> None:
    """Normalize one file to canonical JSON lines (no store, no scoring)."""
    from junction.pipeline.ingest import ingest_file

    try:
        sink = out.open("wb") if out else sys.stdout.buffer
        try:
            with progress_bar() as bar:
                task = bar.add_task(file.name, total=None)
                result = ingest_file(
                    file,
                    mapping,
                    sink,
                    record_tag=record_tag,
                    progress=lambda n: bar.advance(task, n),
                )
        finally:
            if out:
                sink.close()
    except JunctionError as exc:
        fail(exc)
    err_console.print(f"{result.ok} canonical records, {len(result.errors)} rejected")
    for line in result.errors[:20]:
        err_console.print(f"  [yellow]{line}[/]")
    if result.errors:
        raise typer.Exit(1)


@app.command()
def demo(
    rows: Annotated[int, typer.Option(help="Leads in the sample file drop.")] = 5000,
    directory: Annotated[Path, typer.Option("--dir", help="Working folder for the demo.")] = Path(
        "junction-demo"
    ),
) -> None:
    """Run the whole flow on the embedded default: file drop to signed webhook."""
    from junction.cli.demo import run_demo

    try:
        run_demo(directory, rows, console, progress_bar)
    except JunctionError as exc:
        fail(exc)


@app.command()
def sink(
    secret: Annotated[str, typer.Option(envvar="JUNCTION_SINK_SECRET", help="whsec_ secret.")],
    out: Annotated[Path, typer.Option(help="JSONL file of accepted deliveries.")] = Path(
        "sink.jsonl"
    ),
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8765,
) -> None:
    """Run a local webhook receiver that verifies signatures and dedupes by webhook-id."""
    from outbound.webhook.sink import WebhookSink

    with WebhookSink(secret, out, port=port) as s:
        console.print(f"listening on {s.url} (Ctrl-C to stop)")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


@connectors_app.command("list")
def connectors_list(verbose: Annotated[bool, typer.Option("--verbose")] = False) -> None:
    """List installed connectors, channels and scorers."""
    table = Table("kind", "name", "target", "status")
    for kind in ("connectors", "channels", "scorers"):
        for info in default_registry.describe(kind):
            status = (
                "ok"
                if info.error is None
                else f"[red]{info.error if verbose else 'failed to load'}[/]"
            )
            table.add_row(kind[:-1], info.name, info.target, status)
    console.print(table)


@mappings_app.command("list")
def mappings_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a spec.")] = False,
) -> None:
    """List the built-in mapping specs: their ids (for --mapping), entities and cases."""
    from mappings.cases import count_cases
    from mappings.engine import builtin_spec_ids, load_spec

    rows = []
    try:
        for spec_id in builtin_spec_ids():
            spec = load_spec(spec_id)
            reader = (spec.reader or {}).get("connector") or "by file type"
            rows.append(
                {
                    "id": spec.id,
                    "entity": str(spec.entity),
                    "fields": len(spec.fields),
                    "source_key": spec.source_key,
                    "reader": reader,
                    "cases": count_cases(Path(spec.source)),  # the file it was read from
                    "description": spec.description,
                }
            )
    except JunctionError as exc:
        fail(exc)
    if as_json:
        for row in rows:
            typer.echo(orjson.dumps(row).decode())
        return
    # the id is what a person copies into --mapping: never cut; descriptions are in --json
    table = Table(Column("id", no_wrap=True), "entity", "fields", "reader", "cases")
    for row in rows:
        table.add_row(*(str(row[k]) for k in ("id", "entity", "fields", "reader", "cases")))
    console.print(table)
    console.print("what each one reads: junction mappings list --json", style="dim")


@mappings_app.command("test")
def mappings_test(
    spec: Annotated[str | None, typer.Argument(help="One spec id or path.")] = None,
) -> None:
    """Run the cases file of every built-in mapping spec (or of one)."""
    from mappings.cases import run_builtin_cases, run_cases

    try:
        results = run_cases(spec) if spec else run_builtin_cases()
    except JunctionError as exc:
        fail(exc)
    failed = [r for r in results if not r.passed]
    for r in results:
        mark = "[green]pass[/]" if r.passed else "[red]FAIL[/]"
        why = "" if r.passed else f" — {escape(r.message)}"
        console.print(f"{mark} {r.spec_id} :: {r.case}{why}", soft_wrap=True)
    console.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed or not results:
        raise typer.Exit(1)


@schemas_app.command("export")
def schemas_export(
    out: Annotated[Path, typer.Option(help="Folder for the JSON Schema files.")] = Path(
        "schemas/json"
    ),
    check_only: Annotated[
        bool, typer.Option("--check", help="Fail if the files are stale.")
    ] = False,
) -> None:
    """Write the canonical models' JSON Schema (or check the committed copy)."""
    from schemas.export import export_schemas

    stale = export_schemas(out, check_only=check_only)
    if check_only and stale:
        err_console.print(
            f"[red]stale schema files[/]: {', '.join(stale)}; run `junction schemas export`"
        )
        raise typer.Exit(1)
    console.print("schemas up to date" if check_only else f"wrote {out}")


@quarantine_app.command("list")
def quarantine_list(
    config: ConfigArg,
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline.")] = None,
    limit: Annotated[int, typer.Option()] = 50,
) -> None:
    """List open quarantine entries."""
    from junction.pipeline.hub import Hub

    try:
        hub = Hub.from_file(config)
    except JunctionError as exc:
        fail(exc)
    try:
        table = Table("id", "pipeline", "stage", "key", "error", "message", expand=True)
        for q in hub.store.list_quarantine(pipeline=pipeline, limit=limit):
            key = q["record_key"].removeprefix(f"{q['pipeline']}:")
            table.add_row(
                str(q["id"]), q["pipeline"], q["stage"], key, q["error_code"], q["message"]
            )
        console.print(table)
    finally:
        hub.close()


@quarantine_app.command("replay")
def quarantine_replay(
    config: ConfigArg,
    ids: Annotated[list[int], typer.Argument(help="Quarantine ids to replay.")],
) -> None:
    """Replay quarantined items: dead deliveries re-queued, records re-run."""
    from junction.pipeline.hub import Hub
    from junction.pipeline.replay import replay

    try:
        hub = Hub.from_file(config)
        try:
            with progress("replaying", total=len(ids)) as advance:
                for qid in ids:
                    console.print(f"{qid}: {replay(hub, qid)}")
                    advance(1)
            stats = hub.deliver()
            console.print(delivery_line(stats))
        finally:
            hub.close()
    except JunctionError as exc:
        fail(exc)


@quarantine_app.command("show")
def quarantine_show(config: ConfigArg, qid: Annotated[int, typer.Argument()]) -> None:
    """Show one quarantine entry with its original payload."""
    from junction.pipeline.hub import Hub

    try:
        hub = Hub.from_file(config)
    except JunctionError as exc:
        fail(exc)
    try:
        q = hub.store.get_quarantine(qid)
    finally:
        hub.close()
    if q is None:
        err_console.print(f"no quarantine entry {qid}")
        raise typer.Exit(1)
    payload = q.pop("payload") or b""
    console.print_json(orjson.dumps({str(k): v for k, v in q.items()}, default=str).decode())
    console.print(payload[:4096].decode("utf-8", "backslashreplace"))


if __name__ == "__main__":  # pragma: no cover
    app()
