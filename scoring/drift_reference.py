"""The drift reference file of a model version (``reference.json``): write, read, verify.

A version's card names the file and its sha256 (``card["reference"]``); :func:`load_reference`
refuses anything the card does not vouch for, and :func:`check_reference` anything
:func:`scoring.drift.compare` could not use.  The profile itself is built by
:func:`scoring.drift.build_reference`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from junction.core.errors import ModelLoadError
from scoring.integrity import CARD_FILE, REFERENCE_FILE

FORMAT = "junction.drift-reference.v1"


def reference_bytes(reference: Mapping[str, Any]) -> bytes:
    """The bytes of ``reference.json`` (floats by repr: they read back bit for bit)."""
    return (json.dumps(reference, allow_nan=False, separators=(",", ":")) + "\n").encode()


def write_reference(version_dir: str | Path, reference: Mapping[str, Any]) -> dict[str, str]:
    """Write ``reference.json`` into ``version_dir``; return the card entry that names it.

    The caller puts the entry in ``card["reference"]`` (the registry's ``save_model`` does so
    for a new version; a test or a backfill edits the card).
    """
    blob = reference_bytes(reference)
    (Path(version_dir) / REFERENCE_FILE).write_bytes(blob)
    return {"file": REFERENCE_FILE, "sha256": hashlib.sha256(blob).hexdigest()}


def _refuse(message: str, ctx: Mapping[str, Any], **more: Any) -> ModelLoadError:
    return ModelLoadError(message, context={**ctx, **more})


def load_reference(version_dir: str | Path) -> dict[str, Any]:
    """Read and verify the reference profile of a model version.

    The card must name exactly ``reference.json`` (a card is not signed, so it must not point
    the loader at another file) with the sha256 of its bytes.

    Raises:
        ModelLoadError: the card is missing or unreadable, names no reference (context
            ``reason="missing"``: the version predates references), or the file is missing,
            differs from the card's sha256 or is malformed.
    """
    vdir = Path(version_dir)
    try:
        card = json.loads((vdir / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(
            "the model card is missing or unreadable", context={"reason": type(exc).__name__}
        ) from None
    if not isinstance(card, dict):
        raise ModelLoadError("the model card is not a JSON object")
    ctx = {"model": card.get("name"), "version": card.get("version")}
    entry = card.get("reference")
    if entry is None:
        raise _refuse("the model has no drift reference", ctx, reason="missing")
    if (
        not isinstance(entry, dict)
        or entry.get("file") != REFERENCE_FILE
        or not isinstance(entry.get("sha256"), str)
    ):
        raise _refuse("the model card's reference entry is malformed", ctx)
    try:
        raw = (vdir / REFERENCE_FILE).read_bytes()
    except OSError as exc:
        raise _refuse(
            "the drift reference is missing or unreadable", ctx, reason=type(exc).__name__
        ) from None
    sha = hashlib.sha256(raw).hexdigest()
    if sha != entry["sha256"]:
        raise _refuse("the drift reference does not match its card", ctx, reference_sha256=sha)
    try:
        reference = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _refuse("the drift reference is unreadable", ctx, reason=type(exc).__name__) from None
    check_reference(reference, ctx)
    schema_hash = card.get("feature_schema_hash")
    if schema_hash is not None and reference.get("schema_hash") != schema_hash:
        raise _refuse("the drift reference was made for other features than the model", ctx)
    return dict(reference)


def _floats(v: Any) -> bool:
    return isinstance(v, list) and all(
        isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in v
    )


def _numeric_ok(p: Any) -> bool:
    return (
        isinstance(p, dict)
        and _floats(p.get("edges"))
        and _floats(p.get("proportions"))
        and len(p["proportions"]) == len(p["edges"]) + 1
        and _floats(p.get("sample"))
        and isinstance(p.get("n"), int)
    )


def check_reference(reference: Any, ctx: Mapping[str, Any] | None = None) -> None:
    """Check the shape and types of a reference profile.

    Raises:
        ModelLoadError: it is not a profile :func:`compare` can use.
    """
    c = dict(ctx or {})
    ok = (
        isinstance(reference, dict)
        and reference.get("format") == FORMAT
        and isinstance(reference.get("n"), int)
        and isinstance(reference.get("spec"), dict)
        and all(isinstance(reference.get(k), list) for k in ("numeric", "categorical", "binary"))
        and _numeric_ok(reference.get("prediction"))
    )
    if ok:
        ok = (
            all(_numeric_ok(p) and isinstance(p.get("name"), str) for p in reference["numeric"])
            and all(
                isinstance(p, dict)
                and isinstance(p.get("name"), str)
                and isinstance(p.get("proportions"), dict)
                and _floats(list(p["proportions"].values()))
                for p in reference["categorical"]
            )
            and all(
                isinstance(p, dict) and isinstance(p.get("name"), str) and _floats([p.get("rate")])
                for p in reference["binary"]
            )
        )
    if not ok:
        raise _refuse("the drift reference is malformed", c)
