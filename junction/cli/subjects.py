"""``junction subjects erase``: the right to erasure, for one person, everywhere the hub keeps them.

The person is named by email and/or phone; the command never prints them back, only the
subject's keyed pseudonym and counts.  See ``junction.store.erasure`` for what is removed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from junction.cli.clients import ConfigOpt, cli_actor, fail
from junction.cli.progress import progress
from junction.core.errors import ConfigError, JunctionError

if TYPE_CHECKING:
    from junction.pipeline.config import HubConfig
    from junction.store.repo import Store

app = typer.Typer(help="People in the store: erasure (GDPR Art. 17).", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)


@app.callback()
def subjects() -> None:
    """People in the store: erasure (GDPR Art. 17)."""


@contextmanager
def private_store(config: Path) -> Iterator[tuple[HubConfig, Store]]:
    """The config and its store, with encryption at rest on as its privacy section says."""
    from junction.pipeline.config import load_config
    from junction.store.crypto_rows import enable_privacy
    from junction.store.repo import Store

    try:
        cfg = load_config(config)
        store = Store.open(cfg.store)
    except JunctionError as exc:
        fail(exc)
    try:
        if cfg.privacy is not None and cfg.privacy.encrypt:
            enable_privacy(store, kek=cfg.privacy.kek, key_cache=cfg.privacy.key_cache)
        yield cfg, store
    except JunctionError as exc:
        fail(exc)
    finally:
        store.close()


def _clean(values: list[str], what: str) -> list[str]:
    out = []
    for v in values:
        v = v.strip()
        if not v or not v.isprintable():
            err_console.print(f"each {what} must be printable text", markup=False)
            raise typer.Exit(2)
        out.append(v)
    return out


@app.command("erase")
def erase(
    config: ConfigOpt = Path("junction.yaml"),
    email: Annotated[
        list[str] | None, typer.Option("--email", help="The person's email (repeatable).")
    ] = None,
    phone: Annotated[
        list[str] | None, typer.Option("--phone", help="The person's phone (repeatable).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a person: records, scores, quarantine, outbox, Kafka tombstones; keys destroyed."""
    from junction.core.pseudonym import Pseudonymizer
    from junction.pipeline.erasure_hook import tombstone_hook
    from junction.pipeline.state import state_dir
    from junction.store.audit import AuditLog
    from junction.store.erasure import erase as erase_subjects
    from junction.store.suppressions import SuppressionList

    emails, phones = _clean(email or [], "email"), _clean(phone or [], "phone")
    if not emails and not phones:
        fail(ConfigError("name the person to erase: --email and/or --phone"))
    if not yes and not typer.confirm("Erase this person everywhere? This cannot be undone"):
        raise typer.Exit(1)
    with private_store(config) as (cfg, store):
        pseudonyms = Pseudonymizer.load(state_dir(cfg))
        with progress("erasing"):
            report = erase_subjects(
                store,
                emails=emails,
                phones=phones,
                actor=cli_actor(),
                audit=AuditLog(store, pseudonyms),
                suppressions=SuppressionList(store, pseudonyms),
                before_commit=tombstone_hook(cfg),
            )
    counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in report.counts().items())
    console.print(f"erased {' '.join(report.subjects)}: {counts}", markup=False)
    console.print(f"audit entry #{report.audit_id}", markup=False)
