"""Incremental reads by a change stamp, shared by the SOAP connectors (1C, SAP).

The services filter "changed at or after" a date, so a read asks again from the newest stamp
it stored (the watermark) and skips exactly the (id, version) pairs it already stored at that
stamp.  Resuming from any batch's cursor therefore repeats nothing and loses nothing, as long as
the service's filter is inclusive (``>=``); records changed again get a newer stamp and are read
again.  Cursors: ``{"v": 1, "since": <version or None>, "seen": {id: version}}``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from connectors.base import RawBatch, RowError
from junction.core.errors import ConfigError

CURSOR_VERSION = 1
_DATE8 = re.compile(r"^[0-9]{8}$")


def stamp_version(value: Any) -> str | None:
    """A change stamp as a fixed-width, sortable version string; None when empty.

    Accepts ISO-8601 date-times (naive ones are the server's local time and stay as they are,
    aware ones are converted to UTC), ISO dates, SAP ``YYYYMMDD`` (``00000000`` is empty) and
    1C's empty date ``0001-01-01T00:00:00``.

    Raises:
        ValueError: the value is not a date.
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text or text == "00000000" or text.startswith(("0001-01-01", "0000-00-00")):
        return None
    if _DATE8.match(text):
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if isinstance(parsed, datetime) and parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    if not isinstance(parsed, datetime):  # pragma: no cover - fromisoformat gives datetimes
        parsed = datetime.combine(parsed, datetime.min.time())
    return parsed.strftime("%Y-%m-%dT%H:%M:%S.%f")


def version_date(version: str) -> date:
    """The calendar date of a version (for services that filter by date only)."""
    return datetime.fromisoformat(version).date()


class Watermark:
    """The state of a change-date read: the newest stamp stored and the ids stored at it."""

    def __init__(self, since: str | None, seen: dict[str, str]) -> None:
        self.since = since
        self.seen = dict(seen)

    @classmethod
    def from_cursor(cls, cursor: dict[str, Any] | None, *, start: str | None = None) -> Watermark:
        """Rebuild the state of a batch's cursor (None: a first read from ``start``).

        Raises:
            ConfigError: the cursor was not written by this kind of read.
        """
        if not cursor:
            return cls(stamp_version(start) if start else None, {})
        since, seen = cursor.get("since"), cursor.get("seen")
        if (
            cursor.get("v") != CURSOR_VERSION
            or not (since is None or isinstance(since, str))
            or not isinstance(seen, dict)
        ):
            raise ConfigError("the saved cursor has an unknown format", details=repr(cursor)[:200])
        return cls(since, {str(k): str(v) for k, v in seen.items()})

    def is_new(self, record_id: str, version: str) -> bool:
        """Whether (id, version) is neither stored nor older than the watermark.

        Services that filter by day return the whole watermark day again: what is older than
        the watermark was read before.
        """
        if self.since is not None and version < self.since:
            return False
        return self.seen.get(record_id) != version

    def accept(self, record_id: str, version: str) -> bool:
        """Remember (id, version); False when this exact version was already stored."""
        if self.seen.get(record_id) == version:
            return False
        self.seen[record_id] = version
        if self.since is None or version > self.since:
            self.since = version
        return True

    def to_cursor(self) -> dict[str, Any]:
        """The cursor after everything accepted so far (ids below the watermark forgotten)."""
        if self.since is not None:
            self.seen = {k: v for k, v in self.seen.items() if v >= self.since}
        return {"v": CURSOR_VERSION, "since": self.since, "seen": dict(self.seen)}


# (id, version or "", position, record) of one returned item
Item = tuple[str, str, int, dict[str, Any]]


def items_batch(
    stream: str,
    rows: list[Item],
    cursor: dict[str, Any],
    errors: list[RowError],
    provenance: dict[str, Any],
) -> RawBatch:
    """One batch of returned items: keys ``<id>@<version>`` (``<id>`` without a version)."""
    return RawBatch(
        stream=stream,
        records=[r[3] for r in rows],
        keys=[f"{r[0]}@{r[1]}" if r[1] else r[0] for r in rows],
        positions=[r[2] for r in rows],
        cursor=cursor,
        errors=list(errors),
        provenance=provenance,
        versions=[r[1] or None for r in rows],
    )
