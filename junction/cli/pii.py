"""``junction schemas pii``: the personal fields of the canonical schemas and their class.

``--mappings`` adds what every built-in mapping spec (or ``--mapping ID``) writes into those
fields: a mapping's target inherits the class of the canonical field it fills, so the source
column or path that feeds a personal field is personal data too.
"""

from __future__ import annotations

from typing import Annotated

import typer

from junction.cli.clients import fail
from junction.core.errors import ConfigError, JunctionError


def mapping_pii(spec_id: str) -> list[tuple[str, str, str, str, str]]:
    """``(mapping, entity, target, class, source)`` for each personal target of a spec.

    Raises:
        ConfigError: The spec cannot be loaded.
    """
    from mappings.engine import load_spec
    from schemas.pii import pii_classes

    spec = load_spec(spec_id)
    classes = pii_classes(spec.entity)
    rows: list[tuple[str, str, str, str, str]] = []
    for target, fs in spec.fields.items():
        cls = classes.get(target)
        if cls is None:
            continue
        raw = fs.from_ if fs.from_ is not None else fs.key
        source = "(constant)" if raw is None else raw if isinstance(raw, str) else ", ".join(raw)
        rows.append((spec.id, spec.entity, target, cls, source))
    return rows


def schemas_pii(
    entity: Annotated[str | None, typer.Option(help="Only this entity.")] = None,
    mappings: Annotated[
        bool,
        typer.Option("--mappings", help="Also every built-in mapping's personal targets."),
    ] = False,
    mapping: Annotated[
        str | None, typer.Option(help="List this mapping's personal targets (id or YAML path).")
    ] = None,
) -> None:
    """List the personal fields (entity, field, class); tab-separated, a header line first."""
    from mappings.engine import builtin_spec_ids
    from schemas.envelope import ENTITY_MODELS
    from schemas.pii import pii_catalog

    try:
        if entity is not None and entity not in ENTITY_MODELS:
            raise ConfigError(
                f"unknown entity {entity!r} (entities: {', '.join(sorted(ENTITY_MODELS))})"
            )
        typer.echo("entity\tfield\tclass")
        for f in pii_catalog(entity):
            typer.echo(f"{f.entity}\t{f.field}\t{f.pii_class}")
        spec_ids = [mapping] if mapping else builtin_spec_ids() if mappings else []
        if spec_ids:
            typer.echo("")
            typer.echo("mapping\tentity\ttarget\tclass\tsource")
        for spec_id in spec_ids:
            for row in mapping_pii(spec_id):
                if entity is None or row[1] == entity:
                    typer.echo("\t".join(row))
    except JunctionError as exc:
        fail(exc)
