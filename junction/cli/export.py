"""``junction export``: the stored canonical records as JSON lines, personal fields masked.

``--masked`` masks each personal field by its class (``junction.core.masking``): emails as
``a***@example.com``, phones as ``+44*******123``, names as initials, addresses and sensitive
fields as ``***``; emails and phones inside other text are masked too.  That is the form for test
environments, support tickets and spreadsheets.  With encryption at rest on, the sealed personal
fields are opened first (a tampered row fails the export with a typed error, never garbage).

An export in clear needs ``--unmasked``, said explicitly, and is written to the audit log (actor,
entity, pipeline; never the data) before the first record leaves the store, so no clear export
happens without its audit entry.  Masked exports are audited as well.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.console import Console

from junction.cli.clients import cli_actor, fail
from junction.cli.progress import progress
from junction.core.errors import ConfigError, JunctionError

if TYPE_CHECKING:
    from junction.store.repo import Store

err_console = Console(stderr=True, soft_wrap=True)

PAGE = 1000
EXPORT_ACTION = "records.export"


def _rows(
    store: Store, entity: str | None, pipeline: str | None, limit: int | None
) -> Iterator[dict[str, Any]]:
    """Stored records in id order, a page at a time (payloads parsed)."""
    from sqlalchemy import select

    from junction.store import tables as t

    cols = [
        t.records.c.id,
        t.records.c.pipeline,
        t.records.c.entity,
        t.records.c.source_system,
        t.records.c.source_key,
        t.records.c.received_at,
        t.records.c.payload,
        t.records.c.subject,
    ]
    after: str | None = None
    left = limit
    while left is None or left > 0:
        q = select(*cols)
        if entity is not None:
            q = q.where(t.records.c.entity == entity)
        if pipeline is not None:
            q = q.where(t.records.c.pipeline == pipeline)
        if after is not None:
            q = q.where(t.records.c.id > after)
        size = PAGE if left is None else min(PAGE, left)
        with store.begin() as conn:
            found = conn.execute(q.order_by(t.records.c.id).limit(size)).mappings()
            page = [dict(r) for r in found]
            # encryption at rest: personal fields are sealed; open them (typed errors on tamper)
            privacy = store.privacy(conn)
            if privacy is not None:
                page = privacy.open_records(conn, page)
        for row in page:
            row["payload"] = orjson.loads(row["payload"])
            yield row
        if len(page) < size:
            return
        after = page[-1]["id"]
        if left is not None:
            left -= len(page)


def export_line(row: dict[str, Any], *, masked: bool) -> bytes:
    """One exported record as a JSON line (personal fields masked when ``masked``)."""
    from junction.core.masking import mask_record, mask_text
    from schemas.pii import pii_classes

    record = row["payload"]
    source_key = row["source_key"]
    if masked:
        record = mask_record(record, pii_classes(row["entity"]))
        source_key = mask_text(source_key)
    out = {
        "record_id": row["id"] if not masked else mask_text(row["id"]),
        "pipeline": row["pipeline"],
        "entity": row["entity"],
        "source_system": row["source_system"],
        "source_key": source_key,
        "received_at": row["received_at"],
        "record": record,
    }
    return orjson.dumps(out) + b"\n"


def export_records(
    config: Annotated[Path, typer.Argument(help="Hub configuration YAML (its store).")],
    masked: Annotated[
        bool,
        typer.Option("--masked", help="Mask personal fields by class (for tests, support)."),
    ] = False,
    unmasked: Annotated[
        bool,
        typer.Option("--unmasked", help="Export personal data in clear (audited)."),
    ] = False,
    entity: Annotated[
        str | None, typer.Option(help="Only this entity (lead, contact, account...).")
    ] = None,
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline's records.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="JSON lines file (default stdout).")] = (
        None
    ),
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many records.")] = None,
) -> None:
    """Export stored canonical records as JSON lines: --masked, or --unmasked (audited)."""
    from junction.core.pseudonym import Pseudonymizer
    from junction.pipeline.config import load_config
    from junction.pipeline.state import state_dir
    from junction.store.audit import AuditLog
    from junction.store.repo import Store
    from schemas.envelope import ENTITY_MODELS

    try:
        if masked == unmasked:
            raise ConfigError(
                "say how to export personal data: --masked, or --unmasked for data in clear "
                "(audited)"
            )
        if entity is not None and entity not in ENTITY_MODELS:
            raise ConfigError(
                f"unknown entity {entity!r} (entities: {', '.join(sorted(ENTITY_MODELS))})"
            )
        cfg = load_config(config)
        pseudonyms = Pseudonymizer.load(state_dir(cfg))
        store = Store.open(cfg.store)
    except JunctionError as exc:
        fail(exc)
    count = 0
    try:
        audit = AuditLog(store, pseudonyms)
        detail = {"masked": masked, "entity": entity, "pipeline": pipeline, "limit": limit}
        # before the first record leaves the store: no export without its audit entry
        audit.append(cli_actor(), EXPORT_ACTION, f"records:{entity or '*'}", None, detail)
        sink: IO[bytes] = out.open("wb") if out is not None else sys.stdout.buffer
        try:
            with progress("exporting", total=limit) as advance:
                for row in _rows(store, entity, pipeline, limit):
                    sink.write(export_line(row, masked=masked))
                    count += 1
                    if count % PAGE == 0:  # the bar moves a page at a time, not per record
                        advance(PAGE)
                advance(count % PAGE)
        finally:
            if out is not None:
                sink.close()
            else:
                sink.flush()
    except JunctionError as exc:
        fail(exc)
    except OSError as exc:
        fail(ConfigError(f"cannot write the export: {exc.strerror or type(exc).__name__}"))
    finally:
        store.close()
    how = "masked" if masked else "in clear (audited)"
    err_console.print(f"exported {count} records {how}", markup=False, highlight=False)
