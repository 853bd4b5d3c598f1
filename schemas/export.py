"""JSON Schema export of the canonical models (the committed copy lives in ``schemas/json``)."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.envelope import ENTITY_MODELS, Envelope
from schemas.score import Score


def render_schemas() -> dict[str, str]:
    """Return ``{file name: JSON text}`` for every canonical model."""
    models = {**ENTITY_MODELS, "envelope": Envelope, "score": Score}
    out = {}
    for name, model in sorted(models.items()):
        schema = model.model_json_schema(mode="validation")
        out[f"{name}.schema.json"] = (
            json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        )
    return out


def export_schemas(folder: Path, *, check_only: bool = False) -> list[str]:
    """Write the schemas to ``folder``; return the names that were stale (or missing)."""
    stale = []
    for name, text in render_schemas().items():
        path = folder / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            stale.append(name)
            if not check_only:
                folder.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    return stale
