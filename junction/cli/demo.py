"""``junction demo``: the whole flow on the embedded default, in one command.

It writes a sample lead file drop, starts a local webhook sink that verifies every signature,
runs the pipeline (file → canonical → rules → score → route → outbox) and delivers.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from junction.pipeline.hub import Hub
from outbound.webhook.config import generate_secret
from outbound.webhook.sink import WebhookSink
from scoring.synthetic import write_lead_csv

CONFIG = """\
# Written by `junction demo`. Run it again with: junction run {config} --once
store: sqlite:///junction.db
models_dir: models
pipelines:
  demo-leads:
    source:
      connector: csv_file
      path: inbox/*.csv
      settle_seconds: 0
    mapping: csv.lead
    rules:
      - {{name: has_email, expr: "lead.email != null"}}
    scoring: {{model: lead-score}}
    routes:
      - when: "score.value >= 0.5"
        to: [webhook.sales]
      - otherwise: [webhook.nurture]
channels:
  webhook.sales: {{url: "{url}/sales", secret: "${{file:secrets/webhook_secret}}"}}
  webhook.nurture: {{url: "{url}/nurture", secret: "${{file:secrets/webhook_secret}}"}}
delivery:
  schedule_s: [0.2, 0.5, 1, 2]
egress:
  # the demo's sink is local; the SSRF guard refuses loopback otherwise
  allow_networks: [127.0.0.0/8]
"""


def run_demo(
    directory: Path, rows: int, console: Console, progress_bar: Callable[..., Any]
) -> None:
    """Run the demo in ``directory`` (recreated) with ``rows`` sample leads."""
    started = time.perf_counter()
    for sub in ("inbox", "processed", "rejected", "secrets"):
        shutil.rmtree(directory / sub, ignore_errors=True)
    for name in (
        "junction.db",
        "junction.db-wal",
        "junction.db-shm",
        "sink.jsonl",
        "junction.yaml",
    ):
        (directory / name).unlink(missing_ok=True)
    (directory / "inbox").mkdir(parents=True)
    (directory / "secrets").mkdir()
    secret = generate_secret()
    secret_file = directory / "secrets" / "webhook_secret"
    secret_file.write_text(secret, encoding="utf-8")
    secret_file.chmod(0o600)
    drop = directory / "inbox" / "leads-demo.csv"
    write_lead_csv(drop, rows, seed=7, messy=True)
    console.print(f"[bold]1.[/] wrote a file drop of {rows} leads: {drop}")

    with WebhookSink(secret, directory / "sink.jsonl") as sink:
        config = directory / "junction.yaml"
        config.write_text(CONFIG.format(url=sink.url.rstrip("/"), config=config), encoding="utf-8")
        console.print(
            f"[bold]2.[/] started a webhook sink at {sink.url} (verifies every signature)"
        )
        hub = Hub.from_file(config)
        try:
            with progress_bar() as bar:
                task = bar.add_task("ingest → score → outbox", total=rows)
                summaries = hub.run_once(lambda n: bar.advance(task, n))
            console.print("[bold]3.[/] pipeline run committed; delivering the outbox")
            stats = hub.deliver(drain_wait_s=10.0)
            counts = hub.store.counts()
        finally:
            hub.close()
        sink_stats = sink.stats()

    s = summaries[0]
    table = Table(title="junction demo", show_header=True)
    table.add_column("stage")
    table.add_column("count", justify="right")
    table.add_row("rows read", str(s.read))
    table.add_row("canonical records stored", str(counts["records"]))
    table.add_row("quarantined (bad rows, failed rules)", str(counts["quarantined"]))
    table.add_row("scored", str(counts["scored"]))
    table.add_row("deliveries delivered", str(counts["deliveries_delivered"]))
    table.add_row(
        "deliveries pending / dead", f"{counts['deliveries_pending']} / {counts['deliveries_dead']}"
    )
    table.add_row("sink: signatures verified", str(sink_stats["verified"]))
    table.add_row("sink: rejected", str(sink_stats["rejected"]))
    table.add_row("sink: unique webhook ids", str(sink_stats["unique"]))
    console.print(table)
    console.print(
        f"finished in {time.perf_counter() - started:.1f}s; delivery worker: {stats.delivered} sent"
    )
    # `make demo` runs .venv/bin/junction, which is not on PATH until the venv is activated
    cmd = "junction" if shutil.which("junction") else os.path.relpath(sys.argv[0])
    console.print("where to look:")
    console.print(
        f"  store:       {directory / 'junction.db'} (records, scores, deliveries, quarantine)"
    )
    console.print(f"  sink log:    {directory / 'sink.jsonl'} (one line per verified delivery)")
    console.print(f"  quarantine:  {cmd} quarantine list {directory / 'junction.yaml'}")
    console.print(f"  run again:   {cmd} run {directory / 'junction.yaml'} --once")
    if sink_stats["rejected"] or counts["deliveries_pending"] or counts["deliveries_dead"]:
        console.print("[red]some deliveries did not verify or are not delivered[/]")
        raise SystemExit(1)
