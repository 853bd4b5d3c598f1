"""``junction suppressions add|check|lift``: the suppression list, by address.

The store keeps keyed pseudonyms only, so these commands print the pseudonym, never a list of
addresses.  Adding and lifting are audited (``suppression.add`` / ``suppression.lift`` by
``cli:<user>``) with the pseudonym as the target.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from junction.cli.clients import ConfigOpt, cli_actor, fail
from junction.core.errors import JunctionError

if TYPE_CHECKING:
    from junction.store.audit import AuditLog
    from junction.store.suppressions import SuppressionList

app = typer.Typer(
    help="The suppression list (bounces, complaints, opt-outs).", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)


class Kind(StrEnum):
    """Address spaces the suppression list knows."""

    email = "email"
    phone = "phone"
    slack = "slack"


KindArg = Annotated[Kind, typer.Argument(help="email, phone or slack.")]
AddressArg = Annotated[str, typer.Argument(help="The address (email, E.164 phone, Slack id).")]


@contextmanager
def suppression_list(config: Path) -> Iterator[tuple[SuppressionList, AuditLog]]:
    """The hub's suppression list and audit log, keyed with the hub's pseudonym key."""
    from junction.core.pseudonym import Pseudonymizer
    from junction.pipeline.config import load_config
    from junction.pipeline.state import state_dir
    from junction.store.audit import AuditLog
    from junction.store.repo import Store
    from junction.store.suppressions import SuppressionList

    try:
        cfg = load_config(config)
        # the same key the API and the delivery worker's suppression gate use
        pseudonyms = Pseudonymizer.load(state_dir(cfg))
        store = Store.open(cfg.store)
    except JunctionError as exc:
        fail(exc)
    try:
        yield SuppressionList(store, pseudonyms), AuditLog(store, pseudonyms)
    finally:
        store.close()


def _clean(address: str) -> str:
    address = address.strip()
    if not address or not address.isprintable():
        err_console.print("the address must be printable text", markup=False)
        raise typer.Exit(2)
    return address


@app.command("add")
def add(
    kind: KindArg,
    address: AddressArg,
    config: ConfigOpt = Path("junction.yaml"),
    reason: Annotated[str, typer.Option(help="unsubscribe, complaint, bounce, legal...")] = (
        "manual"
    ),
) -> None:
    """Stop messaging an address (the first reason recorded stays)."""
    address = _clean(address)
    with suppression_list(config) as (sl, audit):
        try:
            added = sl.add(kind.value, address, reason=reason, source=cli_actor())
            key = sl.key(kind.value, address)
            detail = {"reason": reason, "added": added}
            audit.append(cli_actor(), "suppression.add", f"{kind.value}:{key}", None, detail)
        except JunctionError as exc:
            fail(exc)
    console.print(f"{'suppressed' if added else 'already suppressed'}: {key}", markup=False)


@app.command("check")
def check(kind: KindArg, address: AddressArg, config: ConfigOpt = Path("junction.yaml")) -> None:
    """Say whether an address is suppressed, and why; exit 1 when it is not."""
    address = _clean(address)
    with suppression_list(config) as (sl, _audit):
        try:
            entry = sl.entry(kind.value, address)
            key = sl.key(kind.value, address)
        except JunctionError as exc:
            fail(exc)
    if entry is None:
        console.print(f"not suppressed: {key}", markup=False)
        raise typer.Exit(1)
    when = datetime.fromtimestamp(entry["created_at"], UTC).strftime("%Y-%m-%d %H:%MZ")
    console.print(
        f"suppressed: {key} ({entry['reason']}, from {entry['source']}, {when})", markup=False
    )


@app.command("lift")
def lift(
    kind: KindArg,
    address: AddressArg,
    config: ConfigOpt = Path("junction.yaml"),
    reason: Annotated[str | None, typer.Option(help="Why (kept in the audit log).")] = None,
) -> None:
    """Message an address again (e.g. the person opted back in); exit 1 if it was not listed."""
    address = _clean(address)
    with suppression_list(config) as (sl, audit):
        try:
            before = sl.entry(kind.value, address)
            lifted = before is not None and sl.lift(kind.value, address)
            key = sl.key(kind.value, address)
            if lifted and before is not None:
                detail = {"was": before["reason"], **({"reason": reason} if reason else {})}
                audit.append(cli_actor(), "suppression.lift", f"{kind.value}:{key}", None, detail)
        except JunctionError as exc:
            fail(exc)
    if not lifted:
        err_console.print(f"not suppressed: {key}", markup=False)
        raise typer.Exit(1)
    console.print(f"lifted: {key}", markup=False)
