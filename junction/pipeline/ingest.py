"""``junction ingest``: normalize one file to canonical JSON lines, without store or scoring."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from junction.core.errors import ConfigError
from junction.core.registry import default_registry
from junction.pipeline.normalize import Normalizer


@dataclass
class IngestResult:
    """Counts and error lines of one ingest."""

    ok: int = 0
    errors: list[str] = field(default_factory=list)


def ingest_file(
    file: Path,
    mapping: str,
    out: IO[bytes],
    *,
    record_tag: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestResult:
    """Stream ``file`` through ``mapping`` and write one canonical JSON object per line."""
    if not file.is_file():
        raise ConfigError(f"no such file: {file}")
    norm = Normalizer(mapping, [])
    options: dict[str, Any] = {"path": str(file.resolve()), "settle_seconds": 0}
    reader = dict(norm.mapping.spec.reader or {})
    if reader:  # the spec names its file reader (e.g. CommerceML, IDoc)
        kind = str(reader.pop("connector"))
        options.update(reader)
    else:
        kind = "xml_file" if file.suffix.lower() == ".xml" else "csv_file"
    if kind == "xml_file" and "record_tag" not in options:
        if not record_tag:
            raise ConfigError("XML ingest needs --record-tag (the record element's name)")
        options["record_tag"] = record_tag
    cls = default_registry.get("connectors", kind)
    try:
        connector = cls(cls.config_model.model_validate(options))
    except ValueError as bad_options:
        raise ConfigError(
            f"mapping {mapping}: its reader options are invalid", details=str(bad_options)
        ) from bad_options
    result = IngestResult()
    try:
        for batch in connector.read(str(file.resolve()), None):
            for err in batch.errors:
                result.errors.append(f"row {err.position}: {err.error}")
            good, bad = norm.apply(batch.records)
            for _, model in good:
                out.write(model.model_dump_json().encode() + b"\n")
            result.ok += len(good)
            for i, exc in bad:
                result.errors.append(f"row {batch.positions[i]}: {exc}")
            if progress is not None:
                progress(len(batch) + len(batch.errors))
    finally:
        connector.close()
    return result
