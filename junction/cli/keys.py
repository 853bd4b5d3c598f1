"""``junction keys status|rotate``: the key-encryption key of the store's encryption at rest.

``rotate --to SOURCE`` re-wraps every data key (and the subject key) under the KEK that
``SOURCE`` names (``env:NAME``, ``file:/path`` made when absent, ``plugin:NAME``), in one
transaction, audited.  The data is not re-encrypted.  Afterwards the old KEK opens nothing:
set the privacy section's ``kek`` to the new source before the hub starts again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from junction.cli.clients import ConfigOpt, cli_actor, fail
from junction.cli.progress import progress
from junction.cli.subjects import private_store
from junction.core.errors import ConfigError, JunctionError

app = typer.Typer(help="Encryption at rest: the key-encryption key.", no_args_is_help=True)
console = Console()


@app.command("status")
def status(config: ConfigOpt = Path("junction.yaml")) -> None:
    """Whether the store is encrypted, under which KEK, and how many subjects it keys."""
    from junction.pipeline.stages.relay import SUBJECT as STAGE_RELAY
    from junction.store.batch_seal import SEALER
    from junction.store.channel_secrets import SUBJECT as CHANNEL_SECRETS
    from junction.store.keyring import key_counts, settings_row

    with private_store(config) as (_cfg, store), store.begin() as conn:
        row = settings_row(conn)
        if row is None:
            console.print("encryption at rest: off", markup=False)
            return
        # the channel secrets' and the stage relay's keys are nobody's
        n = key_counts(conn, system=[CHANNEL_SECRETS, STAGE_RELAY])
    console.print(
        f"encryption at rest: on; KEK {row['kek_id']} from {row['kek_source']}; "
        f"{n['people']} people; {n['keys']} data keys; {n['erased']} erased subjects"
        + ("; channel secrets sealed" if n["system"] else ""),
        markup=False,
    )
    console.print(f"write batches sealed by: {SEALER}", markup=False)


@app.command("rotate")
def rotate(
    to: Annotated[
        str, typer.Option("--to", help="The new KEK: env:NAME, file:/path or plugin:NAME.")
    ],
    config: ConfigOpt = Path("junction.yaml"),
) -> None:
    """Re-wrap every data key under a new key-encryption key (no data is re-encrypted)."""
    from junction.core.pseudonym import Pseudonymizer
    from junction.pipeline.state import state_dir
    from junction.store.audit import AuditEntry, AuditLog
    from junction.store.crypto import load_kek

    with private_store(config) as (cfg, store):
        try:
            privacy = store.privacy()
            if privacy is None:
                raise ConfigError("encryption at rest is off: there is no KEK to rotate")
            new = load_kek(to)
            old_id = privacy.keyring.kek.key_id
            audit = AuditLog(store, Pseudonymizer.load(state_dir(cfg)))
            with progress("re-wrapping data keys"), store.begin() as conn:
                n = privacy.keyring.rotate(conn, new, new_source=to)
                entry = AuditEntry(
                    cli_actor(),
                    "keys.rotate",
                    f"kek:{new.key_id}",
                    None,
                    {"from": old_id, "to": new.key_id, "keys": n},
                )
                audit.append_in(conn, [entry])
        except JunctionError as exc:
            fail(exc)
    console.print(f"re-wrapped {n} data keys under KEK {new.key_id} (was {old_id})", markup=False)
    console.print(
        f"set privacy.kek to {to} now: the old KEK no longer opens this store", markup=False
    )
