"""The Salesforce source connector: incremental SOQL reads, Bulk API 2.0 backfills, push.

Reads are incremental on ``SystemModstamp``.  A cursor holds the watermark (the newest
``SystemModstamp`` read) and the ids read within ``overlap_s`` of it, with their versions.  The
next read queries ``SystemModstamp >= watermark - overlap_s`` ordered by ``SystemModstamp, Id``
and skips exactly the (id, version) pairs the cursor remembers, so:

* a record stamped at the watermark, or committed late with an older stamp (long transactions,
  a source clock behind ours) but within the overlap, is read;
* a record changed during a read gets a new stamp and is read again by the next one;
* resuming from any batch's cursor repeats nothing and loses nothing (pages are ordered).

Keys are ``<18-char Id>@<version>``; versions are fixed-width UTC ISO-8601 stamps.

Without a cursor, ``SELECT COUNT()`` decides between REST paging and a Bulk API 2.0 query job
(above ``bulk_threshold``).  Bulk results are not ordered, so a batch's cursor also names the job
and the locator of the next page; resuming continues the job, and the last page leaves an
ordinary watermark cursor.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from connectors.base import (
    Capability,
    CheckResult,
    PushAck,
    PushItem,
    RawBatch,
    RowError,
    StreamInfo,
)
from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.config import API_NAME, SalesforceConfig
from connectors.salesforce.outbound_message import (
    ack,
    normalize_id,
    normalize_stamp,
    parse_notifications,
)
from junction.core.errors import ConfigError, FatalError, JunctionError, ParseError

CURSOR_VERSION = 1
_ID_TEXT = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
# compound fields cannot be filtered or bulk-queried, base64 ones only one record at a time
_SKIPPED_TYPES = frozenset({"address", "location", "base64"})
_JSON_TYPES = {
    "boolean": "boolean",
    "int": "integer",
    "double": "number",
    "currency": "number",
    "percent": "number",
    "long": "integer",
}


def window_floor(version: str, seconds: float) -> str:
    """``version`` minus ``seconds``, down to the whole second (SOQL literals have no fraction).

    The query bound and the cursor's pruning both use it, so what the cursor forgets is exactly
    what the next query no longer returns.
    """
    parsed = datetime.fromisoformat(version.replace("Z", "+00:00"))
    floor = (parsed - timedelta(seconds=seconds)).replace(microsecond=0)
    return normalize_stamp(floor.isoformat())


def soql_datetime(version: str) -> str:
    """A normalized stamp as a SOQL dateTime literal (``YYYY-MM-DDThh:mm:ssZ``, floored)."""
    return version[:19] + "Z"


def clock_stamp(now: float) -> str:
    """A Unix time as a normalized stamp (the form versions are compared in)."""
    return normalize_stamp(datetime.fromtimestamp(now, UTC).isoformat())


class Window:
    """The incremental state: the watermark plus the (id, version) pairs read near it.

    The window's floor (where the next query starts, and below which ``seen`` is forgotten)
    is the watermark minus the overlap, with two guards against clocks that jump:

    * it is taken from our clock (``clock``, when the cursor is saved) when the watermark is
      ahead of it: a source whose clock ran ahead stamps records in the future, and once its
      clock is set right its new records carry older stamps than the watermark; the floor stays
      within the overlap of our now, so they are still read (before, they fell below the floor
      and were skipped for good);
    * it never moves back (the cursor keeps it): our own clock stepping back must not reopen
      stamps whose ``seen`` entries were already forgotten (they would be read twice).
    """

    def __init__(
        self,
        watermark: str | None,
        seen: dict[str, str],
        *,
        overlap_s: float,
        max_seen: int,
        floor: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.watermark = watermark
        self.seen = dict(seen)
        self.overlap_s = overlap_s
        self.max_seen = max_seen
        self.floor = floor
        self.clock = clock
        self.position: str | None = None  # the newest stamp this read went through

    @classmethod
    def from_cursor(
        cls,
        cursor: dict[str, Any] | None,
        *,
        overlap_s: float,
        max_seen: int,
        clock: Callable[[], float] = time.time,
    ) -> Window:
        """Rebuild the state a batch's cursor describes (None: a first read).

        Raises:
            ConfigError: the cursor was not written by this connector's cursor version.
        """
        if not cursor:
            return cls(None, {}, overlap_s=overlap_s, max_seen=max_seen, clock=clock)
        if cursor.get("v") != CURSOR_VERSION:
            raise ConfigError("the saved Salesforce cursor has an unknown format")
        watermark = cursor.get("watermark")
        seen = cursor.get("seen") or {}
        floor = cursor.get("floor")  # absent from cursors written before the guard
        if watermark is not None and not isinstance(watermark, str):
            raise ConfigError("the saved Salesforce cursor has an unknown format")
        if floor is not None and not isinstance(floor, str):
            raise ConfigError("the saved Salesforce cursor has an unknown format")
        if not isinstance(seen, dict):
            raise ConfigError("the saved Salesforce cursor has an unknown format")
        return cls(
            watermark, seen, overlap_s=overlap_s, max_seen=max_seen, floor=floor, clock=clock
        )

    def _floor(self) -> str | None:
        """The floor as of now: what the cursor saves (and the next read starts from).

        It never passes this read's position (the last stamp it went through, pages being in
        stamp order): the rest of the read may still hold older stamps the floor would forget.
        """
        if self.watermark is None or self.position is None:
            if self.floor is None and self.watermark is not None:
                return window_floor(self.watermark, self.overlap_s)
            return self.floor
        anchor = min(self.position, clock_stamp(self.clock()))
        floor = window_floor(anchor, self.overlap_s)
        return floor if self.floor is None or floor > self.floor else self.floor

    def lower_bound(self) -> str | None:
        """Where the next query starts: the floor the cursor saved (taken when it was saved,
        so what committed since, stamped up to ``overlap_s`` before that, is read), or for a
        cursor without one the watermark minus the overlap."""
        if self.floor is not None:
            return self.floor
        return None if self.watermark is None else window_floor(self.watermark, self.overlap_s)

    def accept(self, record_id: str, version: str) -> bool:
        """Remember (id, version); False when this exact version was already read."""
        if self.position is None or version > self.position:
            self.position = version
        if self.seen.get(record_id) == version:
            return False
        self.seen[record_id] = version
        if self.watermark is None or version > self.watermark:
            self.watermark = version
        return True

    def to_cursor(self) -> dict[str, Any]:
        """The cursor to resume after everything accepted so far."""
        floor = self._floor()
        if floor is not None:
            self.floor = floor
            self.seen = {k: v for k, v in self.seen.items() if v >= floor}
        if len(self.seen) > self.max_seen:
            # forget the oldest: they may be read again (at-least-once), never lost
            keep = sorted(self.seen.items(), key=lambda kv: kv[1])[-self.max_seen :]
            self.seen = dict(keep)
        cursor: dict[str, Any] = {
            "v": CURSOR_VERSION,
            "watermark": self.watermark,
            "seen": dict(self.seen),
        }
        if self.floor is not None:
            cursor["floor"] = self.floor
        return cursor


class SalesforceConnector:
    """Reads sObjects incrementally; also parses Outbound Messages (``Capability.PUSH``)."""

    name: ClassVar[str] = "salesforce"
    config_model: ClassVar[type[SalesforceConfig]] = SalesforceConfig
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.DISCOVER,
            Capability.INCREMENTAL,
            Capability.DELETES,
            Capability.PUSH,
            Capability.FETCH,
        }
    )

    def __init__(self, config: SalesforceConfig) -> None:
        self.config = config
        self.clock: Callable[[], float] = time.time  # the window's now (a seam for tests)
        self.client = SalesforceClient(config, max_api_usage=config.max_api_usage)
        self._describes: dict[str, dict[str, Any]] = {}

    def close(self) -> None:
        """Close the HTTP session; safe to call twice."""
        self.client.close()

    def check(self) -> CheckResult:
        """Log in, list the org's objects and confirm the configured ones are there."""
        try:
            listed = {o.get("name") for o in self.client.describe_global()}
        except JunctionError as exc:
            return CheckResult(False, exc.user_message)
        missing = [o for o in self.config.objects if o not in listed]
        if missing:
            return CheckResult(False, f"objects not visible to this user: {', '.join(missing)}")
        return CheckResult(True, f"logged in; {len(self.config.objects)} objects readable")

    def discover(self) -> list[StreamInfo]:
        """One stream per configured object, its JSON Schema built from describe."""
        streams = []
        for obj in self.config.objects:
            fields = self._describe(obj).get("fields", [])
            props = {
                f["name"]: {"type": [_JSON_TYPES.get(f.get("type", ""), "string"), "null"]}
                for f in fields
                if f.get("type") not in _SKIPPED_TYPES
            }
            schema = {"type": "object", "properties": props, "x-salesforce-object": obj}
            streams.append(StreamInfo(obj, schema, ("Id",), "SystemModstamp"))
        return streams

    def read(self, stream: str, cursor: dict[str, Any] | None) -> Iterator[RawBatch]:
        """Yield one batch per result page after ``cursor``; each carries its next cursor.

        Nothing is requested before the first batch is asked for.

        Raises:
            ConfigError: unknown object or field, or a foreign cursor.
            AuthError: the credentials were refused.
            RateLimitedError: Salesforce asked to slow down, or the daily usage share is spent.
            RetryableError: Salesforce is unavailable or timed out.
            FatalError: Salesforce rejected the query.
        """
        if not API_NAME.match(stream):
            raise ConfigError(f"{stream!r} is not an sObject API name")
        yield from self._plan(stream, cursor)

    def _plan(self, stream: str, cursor: dict[str, Any] | None) -> Iterator[RawBatch]:
        cfg = self.config
        window = Window.from_cursor(
            cursor, overlap_s=cfg.overlap_s, max_seen=cfg.max_seen_ids, clock=self.clock
        )
        fields = self._fields(stream)
        bulk = (cursor or {}).get("bulk")
        if isinstance(bulk, dict):
            return self._resume_bulk(stream, fields, window, bulk)
        lower = window.lower_bound() or self._start()
        where = f" WHERE SystemModstamp >= {soql_datetime(lower)}" if lower else ""
        if cursor is None:
            # object and field names are checked API names, the bound a formatted stamp
            count_soql = f"SELECT COUNT() FROM {stream}{where}"  # noqa: S608
            count = self.client.count(count_soql, include_deleted=cfg.include_deleted)
            if count > cfg.bulk_threshold:
                soql = f"SELECT {', '.join(fields)} FROM {stream}{where}"  # noqa: S608
                return self._read_bulk(stream, fields, window, soql)
        soql = (
            f"SELECT {', '.join(fields)} FROM {stream}{where}"  # noqa: S608
            " ORDER BY SystemModstamp ASC, Id ASC"
        )
        return self._read_rest(stream, window, soql)

    def _start(self) -> str | None:
        start = self.config.start_date
        if start is None:
            return None
        return normalize_stamp((start if start.tzinfo else start.replace(tzinfo=UTC)).isoformat())

    def _read_rest(self, stream: str, window: Window, soql: str) -> Iterator[RawBatch]:
        position = 0
        pages = self.client.query_pages(
            soql,
            include_deleted=self.config.include_deleted,
            page_size=self.config.effective_page_size,
        )
        for page in pages:
            batch = self._batch(stream, page, window, position, {"api": "rest"})
            position += len(page)
            if batch.records or batch.errors:
                yield batch

    def _read_bulk(
        self, stream: str, fields: list[str], window: Window, soql: str
    ) -> Iterator[RawBatch]:
        job_id = self.client.bulk_query_start(
            soql, include_deleted=self.config.include_deleted, poll_s=self.config.bulk_poll_s
        )
        yield from self._bulk_pages(stream, fields, window, job_id, "", 0)

    def _resume_bulk(
        self, stream: str, fields: list[str], window: Window, bulk: dict[str, Any]
    ) -> Iterator[RawBatch]:
        job_id, locator = str(bulk.get("job", "")), str(bulk.get("locator", ""))
        position = int(bulk.get("position", 0))
        try:
            yield from self._bulk_pages(stream, fields, window, job_id, locator, position)
        except FatalError as exc:
            if exc.context.get("status") != 404:
                raise
            # the job's results expired: read everything again (repeats, never losses)
            start = self._start()
            where = f" WHERE SystemModstamp >= {soql_datetime(start)}" if start else ""
            soql = f"SELECT {', '.join(fields)} FROM {stream}{where}"  # noqa: S608
            yield from self._read_bulk(stream, fields, window, soql)

    def _bulk_pages(
        self,
        stream: str,
        fields: list[str],
        window: Window,
        job_id: str,
        locator: str,
        position: int,
    ) -> Iterator[RawBatch]:
        types = {f["name"]: f.get("type", "") for f in self._describe(stream).get("fields", [])}
        while True:
            text, next_locator = self.client.bulk_query_page(
                job_id, locator, self.config.bulk_page_size
            )
            rows = [self._typed(stream, row, types) for row in csv.DictReader(io.StringIO(text))]
            batch = self._batch(stream, rows, window, position, {"api": "bulk2", "job": job_id})
            position += len(rows)
            if next_locator:
                batch.cursor["bulk"] = {
                    "job": job_id,
                    "locator": next_locator,
                    "position": position,
                }
            yield batch
            if not next_locator:
                return
            locator = next_locator

    def _typed(self, stream: str, row: dict[str, str], types: dict[str, str]) -> dict[str, Any]:
        # Bulk CSV holds text only; give values the JSON types REST returns (empty is null)
        out: dict[str, Any] = {}
        for name, text in row.items():
            kind = types.get(name, "")
            value: Any = text
            if text == "":
                value = None
            elif kind == "boolean":
                value = text.lower() == "true"
            elif kind in ("int", "long"):
                try:
                    value = int(text)
                except ValueError:
                    value = text
            elif kind in ("double", "currency", "percent"):
                try:
                    value = float(text)
                except ValueError:
                    value = text
            out[name] = value
        url = f"/services/data/v{self.config.api_version}/sobjects/{stream}/{row.get('Id', '')}"
        return {"attributes": {"type": stream, "url": url}, **out}

    def _batch(
        self,
        stream: str,
        page: list[dict[str, Any]],
        window: Window,
        position: int,
        provenance: dict[str, Any],
    ) -> RawBatch:
        records: list[dict[str, Any]] = []
        keys: list[str] = []
        positions: list[int] = []
        versions: list[str] = []
        errors: list[RowError] = []
        for i, record in enumerate(page, position):
            record_id = record.get("Id")
            try:
                version = normalize_stamp(str(record.get("SystemModstamp")))
            except ValueError:
                version = ""
            if not isinstance(record_id, str) or not record_id or not version:
                errors.append(
                    RowError(
                        key=f"{record_id}@?",
                        position=i,
                        raw=json.dumps(record, default=str).encode(),
                        error=ParseError(
                            "a Salesforce record has no Id or no SystemModstamp",
                            field="SystemModstamp",
                            context={"object": stream},
                        ),
                    )
                )
                continue
            id18 = normalize_id(record_id)
            if not window.accept(id18, version):
                continue
            records.append(record)
            keys.append(f"{id18}@{version}")
            positions.append(i)
            versions.append(version)
        return RawBatch(
            stream=stream,
            records=records,
            keys=keys,
            positions=positions,
            cursor=window.to_cursor(),
            errors=errors,
            provenance={"object": stream, **provenance},
            versions=versions,
        )

    def _describe(self, stream: str) -> dict[str, Any]:
        if stream not in self._describes:
            self._describes[stream] = self.client.describe(stream)
        return self._describes[stream]

    def _fields(self, stream: str) -> list[str]:
        configured = self.config.fields.get(stream)
        if configured is not None:
            names = list(configured)
        else:
            described = self._describe(stream).get("fields", [])
            names = [f["name"] for f in described if f.get("type") not in _SKIPPED_TYPES]
        required = ["Id", "SystemModstamp"]
        if self.config.include_deleted:
            required.append("IsDeleted")
        return required + [n for n in names if n not in required]

    def fetch(self, stream: str, ids: list[str]) -> RawBatch:
        """Read the current state of ``ids`` (``WHERE Id IN (...)``, 200 ids per query).

        Ids that do not exist (or are deleted, without ``include_deleted``) are absent.  The
        batch carries keys and versions like ``read``, and an empty cursor.

        Raises:
            ConfigError: ``stream`` is not an API name or an id is not a Salesforce id.
            AuthError, RateLimitedError, RetryableError, FatalError: as ``read``.
        """
        if not API_NAME.match(stream):
            raise ConfigError(f"{stream!r} is not an sObject API name")
        wanted = list(dict.fromkeys(ids))
        if any(not _ID_TEXT.match(i) for i in wanted):
            raise ConfigError("a record id to fetch is not a Salesforce id")
        fields = ", ".join(self._fields(stream))
        window = Window(None, {}, overlap_s=self.config.overlap_s, max_seen=len(wanted) + 1)
        records: list[dict[str, Any]] = []
        keys: list[str] = []
        versions: list[str] = []
        errors: list[RowError] = []
        for start in range(0, len(wanted), 200):
            chunk = ", ".join(f"'{i}'" for i in wanted[start : start + 200])
            soql = f"SELECT {fields} FROM {stream} WHERE Id IN ({chunk})"  # noqa: S608
            pages = self.client.query_pages(
                soql, include_deleted=self.config.include_deleted, page_size=2000
            )
            for page in pages:
                part = self._batch(stream, page, window, len(records), {"api": "rest"})
                records.extend(part.records)
                keys.extend(part.keys)
                errors.extend(part.errors)
                versions.extend(v for v in part.versions or () if v is not None)
        # positions index the requested ids: callers map each record back to its event
        order = {normalize_id(i): n for n, i in enumerate(wanted)}
        positions = [order.get(k.partition("@")[0], 0) for k in keys]
        return RawBatch(
            stream=stream,
            records=records,
            keys=keys,
            positions=positions,
            cursor={},
            errors=errors,
            provenance={"object": stream, "api": "rest"},
            versions=versions,
        )

    def parse_push(self, body: bytes, headers: dict[str, str]) -> list[PushItem]:
        """The notifications of one verified Outbound Message (no I/O).

        With ``push_fetch`` the items name their records (``fetch_id``) instead of carrying
        the fields the message selected.

        Raises:
            ParseError: the body is not a readable Outbound Message (DTDs are refused).
        """
        items = parse_notifications(body)
        if not self.config.push_fetch:
            return items
        return [
            PushItem(
                event_id=it.event_id,
                stream=it.stream,
                fetch_id=str((it.record or {}).get("Id", "")),
            )
            for it in items
        ]

    def push_ack(self, items: list[PushItem]) -> PushAck | None:
        """The SOAP ``notificationsResponse`` with ``Ack`` true."""
        return ack()
