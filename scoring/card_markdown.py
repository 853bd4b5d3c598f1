"""Render a model card (``card.json``) as Markdown for people (``junction model card``).

The renderer reads whatever the card holds and never fails on a missing or unexpected key: the
sections a model card must answer (intended use, training data, features, metrics, calibration,
limitations) say *not recorded* when the card lacks them, and keys it does not know are listed
under "Other" rather than dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["card_markdown"]

_HEADER_KEYS = ("name", "version", "created_at", "model_type", "algorithm", "card_schema")
_ENVIRONMENT = (
    "feature_schema_hash",
    "sklearn_version",
    "skops_version",
    "numpy_version",
    "python_version",
)
# (title, key, required): a required section says "not recorded" when the card lacks it
_SECTIONS: tuple[tuple[str, str, bool], ...] = (
    ("Intended use", "intended_use", True),
    ("Training data", "training_data", True),
    ("Features", "features", True),
    ("Metrics", "metrics", True),
    ("Calibration", "calibration", True),
    ("Grade thresholds", "grade_thresholds", False),
    ("Limitations", "limitations", True),
)
_ARTIFACTS = ("artifact", "compiled")
_NOT_RECORDED = "_Not recorded in this card._"


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value == value else "NaN"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_text(v)}" for k, v in value.items())
    return str(value).replace("\r", " ").replace("\n", " ")


def _cell(value: Any) -> str:
    return _text(value).replace("|", "\\|")


def _label(key: str) -> str:
    return str(key).replace("_", " ")


def _table(rows: Mapping[str, Any], head: tuple[str, str] = ("", "")) -> list[str]:
    lines = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    lines += [f"| {_cell(_label(k))} | {_cell(v)} |" for k, v in rows.items()]
    return lines


def _block(value: Any) -> list[str]:
    """A section body for any JSON value."""
    if isinstance(value, Mapping):
        if not value:
            return [_NOT_RECORDED]
        flat = {k: v for k, v in value.items() if not isinstance(v, Mapping)}
        nested = {k: v for k, v in value.items() if isinstance(v, Mapping)}
        lines = _table(flat, ("item", "value")) if flat else []
        for key, sub in nested.items():
            lines += ["", f"**{_label(key)}**", "", *_block(sub)]
        return lines
    if isinstance(value, list | tuple):
        return [f"- {_text(v)}" for v in value] or [_NOT_RECORDED]
    if value is None or value == "":
        return [_NOT_RECORDED]
    return [_text(value)]


def _metrics(value: Any) -> list[str]:
    if not isinstance(value, Mapping):
        return _block(value)
    sets = {k: v for k, v in value.items() if isinstance(v, Mapping)}
    if not sets:
        return _block(value)
    names = sorted({m for s in sets.values() for m in s})
    lines = ["| metric | " + " | ".join(_cell(s) for s in sets) + " |"]
    lines.append("|---" * (len(sets) + 1) + "|")
    for m in names:
        cells = [_cell(s.get(m, "")) for s in sets.values()]
        lines.append(f"| {_cell(m)} | " + " | ".join(cells) + " |")
    rest = {k: v for k, v in value.items() if k not in sets}
    if rest:
        lines += ["", *_block(rest)]
    return lines


def _features(value: Any) -> list[str]:
    if not isinstance(value, Mapping):
        return _block(value)
    lines = []
    for kind, names in value.items():
        listed = _text(names)
        count = f" ({len(names)})" if isinstance(names, list | tuple) else ""
        lines.append(f"- **{_label(kind)}**{count}: {listed}")
    return lines or [_NOT_RECORDED]


def card_markdown(card: Mapping[str, Any], *, stage: str | None = None) -> str:
    """The card as a Markdown document; ``stage`` (production, staging...) is shown if given."""
    name = _text(card.get("name", "model"))
    version = _text(card.get("version", "?"))
    out = [f"# Model card: {name} v{version}", ""]
    header = {k: card[k] for k in _HEADER_KEYS if k in card}
    if stage is not None:
        header = {**header, "stage": stage}
    out += [*_table(header, ("field", "value")), ""]
    shown = set(_HEADER_KEYS)
    for title, key, required in _SECTIONS:
        shown.add(key)
        if key not in card and not required:
            continue
        value = card.get(key)
        body = (
            _metrics(value)
            if key == "metrics"
            else _features(value)
            if key == "features"
            else _block(value)
        )
        out += [f"## {title}", "", *body, ""]
    env = {k: card[k] for k in _ENVIRONMENT if k in card}
    shown.update(_ENVIRONMENT)
    if env:
        out += ["## Environment", "", *_table(env, ("item", "value")), ""]
    artifacts = {k: card[k] for k in _ARTIFACTS if k in card}
    shown.update(_ARTIFACTS)
    if artifacts:
        out += ["## Artifacts", "", *_block(artifacts), ""]
    other = {k: v for k, v in card.items() if k not in shown}
    if other:
        out += ["## Other", "", *_block(other), ""]
    return "\n".join(out).rstrip() + "\n"
