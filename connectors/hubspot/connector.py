"""The HubSpot source: incremental reads of CRM objects, webhook events, reads by id.

Incremental reads use the search API on each object's last-modified property, ascending, as a
keyset walk: every page is a new search from the last timestamp seen (``GTE``), and the ids
already yielded at that timestamp are skipped.  No page offset (``after``) is ever sent, so

* a record updated during the read cannot shift later pages and hide another one (an offset
  would skip the record that slid into the gap); the updated record simply comes later;
* the search API's 10,000-result cap never applies: every window starts at offset 0;
* when a whole page shares one timestamp, that timestamp is walked by id
  (``EQ t`` and ``hs_object_id GT last``, sorted by id), then the walk goes on ``GT t``.

The cursor after each batch holds ``since`` (where the next read starts: the watermark minus
``overlap_s``) and ``seen`` (the id and version of every record yielded at or after ``since``).
A resumed read looks back over the overlap, so a record indexed late or stamped by a skewed clock
is still read, while the ``(id, version)`` pairs in ``seen`` are skipped: nothing is read twice.
``seen`` is bounded (``SEEN_LIMIT``): past it, the oldest timestamps are dropped and ``since``
moves up to the oldest timestamp kept, shortening the overlap instead of growing the cursor.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
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
from connectors.hubspot.client import HubSpotClient, JsonObject, SearchFilter
from connectors.hubspot.config import MODIFIED_PROPERTY, HubSpotConfig
from connectors.hubspot.events import parse_events
from junction.core.errors import ConfigError, FatalError, JunctionError, ParseError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SEEN_LIMIT = 5000  # (id, version) pairs a cursor keeps at most (ties at one timestamp excepted)
BATCH_READ_LIMIT = 100  # HubSpot's batch read takes 100 ids per call
ID_PROPERTY = "hs_object_id"
CURSOR_VERSION = 1
END = 2**62  # progress once a walk has read everything


def to_ms(value: Any) -> int | None:
    """Milliseconds since the epoch of a HubSpot timestamp (ISO-8601 text or ms digits)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - EPOCH) // timedelta(milliseconds=1)


def iso_ms(ms: int) -> str:
    """Fixed-width UTC ISO-8601 with milliseconds (``2026-03-01T10:00:00.000Z``): sorts by time."""
    moment = EPOCH + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class _Cursor:
    """Where a read resumes: ``since`` (ms), the watermark (ms), and the versions seen since.

    ``seen`` maps a record id to ``(timestamp ms, version ms)`` for every record yielded with a
    timestamp at or after ``since``; a heap orders them by timestamp so pruning is cheap.
    """

    def __init__(self, since: int, watermark: int | None, seen: dict[str, tuple[int, int]]):
        self.since = since
        self.watermark = watermark
        self.seen = seen
        self._heap = [(stamp, rid) for rid, (stamp, _v) in seen.items()]
        heapq.heapify(self._heap)

    @classmethod
    def load(cls, raw: dict[str, Any] | None, start: int) -> _Cursor:
        if not raw:
            return cls(start, None, {})
        try:
            since = to_ms(raw["since"])
            watermark = to_ms(raw["watermark"]) if raw.get("watermark") else None
            seen: dict[str, tuple[int, int]] = {}
            for rid, value in dict(raw.get("seen") or {}).items():
                pair = (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))
                seen[str(rid)] = pair
        except (KeyError, TypeError, ValueError, IndexError):
            raise ConfigError(
                "the stored HubSpot cursor is not readable; reset the stream's cursor"
            ) from None
        if since is None:
            raise ConfigError("the stored HubSpot cursor has no 'since'; reset the stream's cursor")
        return cls(since, watermark, seen)

    def is_seen(self, rid: str, version: int) -> bool:
        """True when this version of ``rid`` was yielded before."""
        known = self.seen.get(rid)
        return known is not None and known[1] == version

    def add(self, rid: str, stamp: int, version: int) -> None:
        """Remember a yielded record; the watermark is the newest timestamp yielded."""
        self.seen[rid] = (stamp, version)
        heapq.heappush(self._heap, (stamp, rid))
        if self.watermark is None or stamp > self.watermark:
            self.watermark = stamp

    def advance(self, progress: int, overlap_ms: int) -> None:
        """Move ``since`` up once every record before ``progress`` was walked.

        ``since`` never passes ``progress`` (records from there on may not be read yet); below
        it, ``since`` is the watermark minus the overlap, or higher when ``seen`` would exceed
        ``SEEN_LIMIT`` (then the oldest timestamps are dropped whole).
        """
        if self.watermark is not None:
            self.since = max(self.since, min(progress, self.watermark - overlap_ms))
        heap, seen = self._heap, self.seen
        while heap:
            stamp, rid = heap[0]
            current = seen.get(rid)
            if current is None or current[0] != stamp:
                heapq.heappop(heap)  # an older version of a record yielded again since
                continue
            if stamp < self.since:
                heapq.heappop(heap)
                del seen[rid]
                continue
            if len(seen) > SEEN_LIMIT and stamp < progress:
                # drop the whole oldest timestamp; a resumed read starts after it
                while heap and heap[0][0] == stamp:
                    _s, drop = heapq.heappop(heap)
                    if seen.get(drop, (None,))[0] == stamp:
                        del seen[drop]
                self.since = stamp + 1
                continue
            break

    def dump(self) -> dict[str, Any]:
        """The cursor to store with a batch."""
        return {
            "v": CURSOR_VERSION,
            "since": iso_ms(self.since),
            "watermark": iso_ms(self.watermark) if self.watermark is not None else None,
            "seen": {rid: (t if t == v else [t, v]) for rid, (t, v) in self.seen.items()},
        }


class HubSpotConnector:
    """Reads HubSpot contacts, companies and deals; parses HubSpot webhooks; fetches by id."""

    name: ClassVar[str] = "hubspot"
    config_model: ClassVar[type[HubSpotConfig]] = HubSpotConfig
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.DISCOVER, Capability.INCREMENTAL, Capability.PUSH, Capability.FETCH}
    )

    def __init__(self, config: HubSpotConfig, *, client: HubSpotClient | None = None) -> None:
        """Keep the config; the SDK session is built now, connections on first use."""
        self.config = config
        self._client = client or HubSpotClient(config)
        self._all_properties: dict[str, list[JsonObject]] = {}

    def check(self) -> CheckResult:
        """One small authenticated read per configured object (each needs its own scope)."""
        try:
            for obj in self.config.objects:
                self._client.list_page(
                    obj, limit=1, after=None, properties=[MODIFIED_PROPERTY[obj]]
                )
        except JunctionError as exc:
            return CheckResult(False, exc.user_message)
        return CheckResult(True, f"read {', '.join(self.config.objects)}")

    def discover(self) -> list[StreamInfo]:
        """One stream per configured object, its schema from the properties API."""
        streams = []
        for obj in self.config.objects:
            wanted = set(self._properties(obj))
            props: dict[str, Any] = {}
            for definition in self._definitions(obj):
                name = definition.get("name")
                if isinstance(name, str) and name in wanted:
                    props[name] = {
                        "type": ["string", "null"],
                        "description": str(definition.get("label") or name),
                        "x-hubspot-type": definition.get("type"),
                    }
            schema = {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "properties": {"type": "object", "properties": props},
                    "createdAt": {"type": "string", "format": "date-time"},
                    "updatedAt": {"type": "string", "format": "date-time"},
                    "archived": {"type": "boolean"},
                },
                "required": ["id", "properties"],
            }
            streams.append(StreamInfo(obj, schema, ("id",), MODIFIED_PROPERTY[obj]))
        return streams

    def read(self, stream: str, cursor: dict[str, Any] | None) -> Iterator[RawBatch]:
        """Yield one batch per search page of records changed since ``cursor``."""
        obj = self._object(stream)
        start = 0
        if self.config.start_date is not None:
            start_at = self.config.start_date
            if start_at.tzinfo is None:
                start_at = start_at.replace(tzinfo=UTC)
            start = (start_at - EPOCH) // timedelta(milliseconds=1)
        state = _Cursor.load(cursor, start)
        walk = _Walk(self, obj, state)
        yield from walk.run()

    def fetch(self, stream: str, ids: list[str]) -> RawBatch:
        """The current state of ``ids`` (batch read, 100 per call); missing ids are absent."""
        obj = self._object(stream)
        order = {rid: i for i, rid in reversed(list(enumerate(ids)))}
        unique = list(dict.fromkeys(ids))
        found: dict[str, JsonObject] = {}
        props = self._properties(obj)
        for at in range(0, len(unique), BATCH_READ_LIMIT):
            body = self._client.batch_read(obj, unique[at : at + BATCH_READ_LIMIT], props)
            for record in body.get("results") or []:
                if isinstance(record, dict) and str(record.get("id")) in order:
                    found[str(record["id"])] = record
        records: list[JsonObject] = []
        keys: list[str] = []
        positions: list[int] = []
        versions: list[str] = []
        errors: list[RowError] = []
        for rid in unique:
            record = found.get(rid)
            if record is None:
                continue
            version = _stamp_and_version(record, MODIFIED_PROPERTY[obj])[1]
            if version is None:
                errors.append(_row_error(rid, order[rid], record))
                continue
            records.append(record)
            keys.append(f"{rid}@{iso_ms(version)}")
            positions.append(order[rid])
            versions.append(iso_ms(version))
        return RawBatch(
            stream=obj,
            records=records,
            keys=keys,
            positions=positions,
            cursor={},
            errors=errors,
            provenance={"source": "hubspot", "object": obj, "via": "batch/read"},
            versions=versions,
        )

    def parse_push(self, body: bytes, headers: dict[str, str]) -> list[PushItem]:
        """HubSpot's event array → one item per event of a contact, company or deal."""
        return parse_events(body)

    def push_ack(self, items: list[PushItem]) -> PushAck | None:
        """HubSpot only needs a 2xx: the hub's JSON answer will do."""
        return None

    def close(self) -> None:
        """Close the HubSpot session; safe to call twice."""
        self._client.close()

    def _object(self, stream: str) -> str:
        if stream not in MODIFIED_PROPERTY:
            raise ConfigError(f"unknown HubSpot stream {stream!r} (contacts, companies, deals)")
        return stream

    def _definitions(self, obj: str) -> list[JsonObject]:
        if obj not in self._all_properties:
            self._all_properties[obj] = self._client.property_definitions(obj)
        return self._all_properties[obj]

    def _properties(self, obj: str) -> list[str]:
        """The configured properties of ``obj`` (or all), plus the id and modified ones."""
        configured = self.config.properties.get(obj)  # type: ignore[call-overload]
        if configured:
            names = list(configured)
        else:
            names = [d["name"] for d in self._definitions(obj) if isinstance(d.get("name"), str)]
        extra = [ID_PROPERTY, MODIFIED_PROPERTY[obj]]
        return list(dict.fromkeys([*names, *extra]))


def _row_error(rid: str, position: int, record: JsonObject) -> RowError:
    return RowError(
        key=rid,
        position=position,
        raw=repr(sorted(record)).encode(),  # field names only: the values may be personal data
        error=ParseError("a HubSpot record has no readable modification time", field="updatedAt"),
    )


class _Walk:
    """One incremental read of one object: the keyset walk described in the module docstring."""

    def __init__(self, connector: HubSpotConnector, obj: str, state: _Cursor) -> None:
        self.client = connector._client
        self.obj = obj
        self.state = state
        self.prop = MODIFIED_PROPERTY[obj]
        self.properties = connector._properties(obj)
        self.page_size = connector.config.effective_page_size
        self.overlap_ms = connector.config.overlap_s * 1000
        self.position = 0

    def run(self) -> Iterator[RawBatch]:
        lower, strict = self.state.since, False
        while True:
            page = self._search([SearchFilter(self.prop, "GT" if strict else "GTE", str(lower))])
            results, more = _results(page)
            stamps = self._stamps(results)
            if results and not stamps and more:
                # nothing to move the walk forward with: stop loudly rather than skip the rest
                raise FatalError(
                    f"HubSpot returned a page of {self.obj} without modification times",
                    details=f"search on {self.prop}: no readable {self.prop} or updatedAt",
                )
            # ascending order: every record before the page's newest timestamp has been walked
            top = max(stamps) if stamps else lower
            progress = top if more and stamps else END
            batch = self._batch(results, progress)
            if batch is not None:
                yield batch
            if progress == END:
                return
            if top > lower or strict:
                lower, strict = top, False
                continue
            # a whole page at one timestamp: walk that timestamp by id, then go on after it
            yield from self._walk_tie(lower)
            strict = True

    def _walk_tie(self, stamp: int) -> Iterator[RawBatch]:
        last_id: str | None = None
        while True:
            filters = [SearchFilter(self.prop, "EQ", str(stamp))]
            if last_id is not None:
                filters.append(SearchFilter(ID_PROPERTY, "GT", last_id))
            page = self._search(filters, sort=ID_PROPERTY)
            results, more = _results(page)
            batch = self._batch(results, stamp)
            if batch is not None:
                yield batch
            ids = [int(r["id"]) for r in results if str(r.get("id", "")).isdigit()]
            if not more or not ids:
                return
            last_id = str(max(ids))

    def _search(self, filters: list[SearchFilter], sort: str | None = None) -> JsonObject:
        return self.client.search(
            self.obj,
            filter_groups=[filters],
            sort_property=sort or self.prop,
            properties=self.properties,
            limit=self.page_size,
        )

    def _stamps(self, results: list[JsonObject]) -> list[int]:
        stamps = []
        for record in results:
            stamp = _stamp_and_version(record, self.prop)[0]
            if stamp is not None:
                stamps.append(stamp)
        return stamps

    def _batch(self, results: list[JsonObject], progress: int) -> RawBatch | None:
        """The page's records not yielded before, as one batch (None when there are none)."""
        records: list[JsonObject] = []
        keys: list[str] = []
        positions: list[int] = []
        versions: list[str] = []
        errors: list[RowError] = []
        state = self.state
        for record in results:
            rid = str(record.get("id") or "")
            stamp, version = _stamp_and_version(record, self.prop)
            if not rid or stamp is None or version is None:
                errors.append(_row_error(rid or "?", self.position, record))
                self.position += 1
                continue
            if state.is_seen(rid, version):
                continue  # yielded before (the overlap, or a timestamp read again)
            state.add(rid, stamp, version)
            records.append(record)
            keys.append(f"{rid}@{iso_ms(version)}")
            positions.append(self.position)
            versions.append(iso_ms(version))
            self.position += 1
        state.advance(progress, self.overlap_ms)
        if not records and not errors:
            return None
        return RawBatch(
            stream=self.obj,
            records=records,
            keys=keys,
            positions=positions,
            cursor=state.dump(),
            errors=errors,
            provenance={"source": "hubspot", "object": self.obj, "via": "search"},
            versions=versions,
        )


def _stamp_and_version(record: JsonObject, prop: str) -> tuple[int | None, int | None]:
    """The record's modified-property timestamp (walk order) and ``updatedAt`` (its version)."""
    props = record.get("properties")
    stamp = to_ms(props.get(prop)) if isinstance(props, dict) else None
    version = to_ms(record.get("updatedAt"))
    if stamp is None:
        stamp = version
    if version is None:
        version = stamp
    return stamp, version


def _results(page: JsonObject) -> tuple[list[JsonObject], bool]:
    results = page.get("results")
    if not isinstance(results, list):
        results = []
    paging = page.get("paging")
    more = isinstance(paging, dict) and isinstance(paging.get("next"), dict)
    return [r for r in results if isinstance(r, dict)], more
