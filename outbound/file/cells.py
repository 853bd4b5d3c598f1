"""Rows for export: columns picked from an event by JMESPath, and spreadsheet-safe CSV cells.

A CSV cell whose text starts with ``=``, ``+``, ``-``, ``@``, tab, CR or NUL is read as a formula
by spreadsheet programs (CWE-1236), so it gets a leading ``'`` (RELIABILITY.md C8 "CSV export
sanitizer", ASVS 1.2.10).  Values typed as numbers in the event are written as numbers, untouched:
``-2`` stays ``-2``, while the text ``"-2+3"`` becomes ``'-2+3``.  Every cell is then quoted
(``csv.QUOTE_ALL``, RFC 4180).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jmespath
import orjson
from jmespath.exceptions import JMESPathError

from junction.core.errors import RecordError

DANGEROUS = ("=", "+", "-", "@", "\t", "\r", "\0")
ID_COLUMN = "delivery_id"
EXTRA_COLUMN = "record_extra"
FIXED_COLUMNS = ("delivery_id", "record_id", "type", "score.value", "score.grade")


def cell(value: Any) -> str:
    """Return the CSV text of one value, defused against formula injection.

    Args:
        value: A JSON value from the event.

    Returns:
        ``""`` for null, ``true``/``false`` for booleans, numbers as written, JSON for lists and
        objects, and text with a leading ``'`` when it starts with a dangerous character.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        # typed numbers are data, never formulas: left as they are
        return repr(value)
    text = orjson.dumps(value).decode() if isinstance(value, dict | list) else str(value)
    return "'" + text if text.startswith(DANGEROUS) else text


def uncell(text: str) -> str:
    """Undo ``cell``'s prefix on text read back (for the delivery id index)."""
    if len(text) > 1 and text[0] == "'" and text[1:].startswith(DANGEROUS):
        return text[1:]
    return text


def csv_lines(rows: Iterable[Sequence[Any]]) -> bytes:
    """Write rows of values as RFC 4180 CSV (every cell quoted, CRLF line ends), UTF-8."""
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return buf.getvalue().encode("utf-8")


def flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    """Put the leaves of nested objects into ``out`` under dotted names (lists stay whole)."""
    if isinstance(value, Mapping) and value:
        for key, inner in value.items():
            flatten(inner, f"{prefix}.{key}", out)
    else:
        out[prefix] = value


def default_row(delivery_id: str, event: Mapping[str, Any]) -> dict[str, Any]:
    """The default columns: the delivery id, record id, type, score value and grade, then the
    record's fields flattened (``record.email``, ``record.address.city``); an event without a
    record (a hub alert) has its other fields flattened instead (``kind``, ``detail.reason``)."""
    score = event.get("score")
    score = score if isinstance(score, Mapping) else {}
    row: dict[str, Any] = {
        "delivery_id": delivery_id,
        "record_id": event.get("record_id"),
        "type": event.get("type"),
        "score.value": score.get("value"),
        "score.grade": score.get("grade"),
    }
    record = event.get("record")
    if isinstance(record, Mapping):
        for key, value in record.items():
            flatten(value, f"record.{key}", row)
    elif "record" not in event:
        # not a record event (a hub alert: kind, subject, detail): keep what it says
        for key, value in event.items():
            if key not in ("type", "record_id", "score"):
                flatten(value, key, row)
    return row


class Columns:
    """Configured columns: name → compiled JMESPath over the event (plus ``delivery_id``)."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        self.names = [ID_COLUMN, *(name for name in fields if name != ID_COLUMN)]
        self._paths = {name: jmespath.compile(expr) for name, expr in fields.items()}

    def row(self, delivery_id: str, event: Mapping[str, Any]) -> dict[str, Any]:
        """Evaluate every column against ``event`` (with ``delivery_id`` added to it)."""
        context = {**event, ID_COLUMN: delivery_id}
        row: dict[str, Any] = {ID_COLUMN: delivery_id}
        for name, path in self._paths.items():
            if name == ID_COLUMN:
                continue
            try:
                row[name] = path.search(context)
            except JMESPathError as exc:
                raise RecordError(
                    f"export column {name!r} failed: {type(exc).__name__}", field=name
                ) from None
        return row


def check_expression(expr: str) -> str:
    """Compile a JMESPath expression (config validation); raise ValueError when it does not."""
    try:
        jmespath.compile(expr)
    except JMESPathError as exc:
        raise ValueError(f"invalid JMESPath {expr!r}: {exc}") from None
    return expr
