"""The ``fake`` connector: a polled, versioned source backed by a JSON-lines file.

It behaves like a CRM stream where it matters to the engine: records carry an id and a version
(``updated_at``), reads go in (version, id) order from a cursor, each batch carries the cursor
after it, and faults can be injected after N batches.  The file is read anew on every call, so a
test changes the "remote" by rewriting it between runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import orjson

from connectors.base import Capability, CheckResult, PushAck, PushItem, RawBatch, StreamInfo
from connectors.fake.config import FakeSourceConfig
from junction.core.errors import (
    AuthError,
    ConfigError,
    JunctionError,
    ParseError,
    RateLimitedError,
    UnavailableError,
)

TOKEN_LINE = "#token "  # noqa: S105 - a marker: an optional first line "#token <value>"
# a sidecar "<path>.faults" holding {"kind": ..., "remaining": n} fails the next n calls, like a
# remote that starts refusing: kinds unavailable (a 5xx), rate_limited (429) or auth (401)
FAULTS_SUFFIX = ".faults"


class FakeConnector:
    """Reads ``stream`` records of a JSON-lines file in (updated_at, id) order."""

    name: ClassVar[str] = "fake"
    config_model: ClassVar[type[FakeSourceConfig]] = FakeSourceConfig
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.DISCOVER, Capability.INCREMENTAL, Capability.FETCH, Capability.PUSH}
    )

    def __init__(self, config: FakeSourceConfig) -> None:
        """Keep the config; nothing is opened until a read."""
        self.config = config
        self.closed = False

    def _load(self) -> list[dict[str, Any]]:
        path = Path(self.config.path)
        self._injected(path.with_name(path.name + FAULTS_SUFFIX))
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UnavailableError("the fake source file cannot be read") from exc
        if lines and lines[0].startswith(TOKEN_LINE):
            expected = lines[0][len(TOKEN_LINE) :].strip()
            given = self.config.token.get_secret_value() if self.config.token else None
            if given != expected:
                raise AuthError("the fake source refused the token")
            lines = lines[1:]
        records = [orjson.loads(line) for line in lines if line.strip()]
        for r in records:
            if not {"stream", "id", "updated_at"} <= r.keys():
                raise ConfigError("every fake record needs stream, id and updated_at")
        return records

    def check(self) -> CheckResult:
        """Whether the file can be read with the configured token."""
        try:
            n = len(self._load())
        except JunctionError as exc:
            return CheckResult(False, exc.user_message)
        return CheckResult(True, f"{n} record(s)")

    def discover(self) -> list[StreamInfo]:
        """One stream per distinct ``stream`` value, sorted."""
        names = sorted({r["stream"] for r in self._load()})
        return [
            StreamInfo(n, {"type": "object"}, key_fields=("id",), cursor_field="updated_at")
            for n in names
        ]

    def read(self, stream: str, cursor: dict[str, Any] | None) -> Iterator[RawBatch]:
        """Yield records after ``cursor`` (``{"after": [version, id]}``) in version order."""
        after = tuple((cursor or {}).get("after", ("", "")))
        rows = sorted(
            (r for r in self._load() if r["stream"] == stream),
            key=lambda r: (str(r["updated_at"]), str(r["id"])),
        )
        rows = [r for r in rows if (str(r["updated_at"]), str(r["id"])) > after]
        size = self.config.batch_size
        for n, at in enumerate(range(0, len(rows), size)):
            if self.config.fail_after_batches is not None and n >= self.config.fail_after_batches:
                self._fail()
            if self.config.latency_s:
                time.sleep(self.config.latency_s)
            page = rows[at : at + size]
            last = page[-1]
            yield self._batch(
                stream, page, at, {"after": [str(last["updated_at"]), str(last["id"])]}
            )

    def fetch(self, stream: str, ids: list[str]) -> RawBatch:
        """The current records of ``ids`` (absent ids are left out)."""
        index = {r_id: i for i, r_id in enumerate(ids)}
        found = [r for r in self._load() if r["stream"] == stream and str(r["id"]) in index]
        batch = self._batch(stream, found, 0, {})
        batch.positions = [index[str(r["id"])] for r in found]
        return batch

    @staticmethod
    def _batch(
        stream: str, page: list[dict[str, Any]], start: int, cursor: dict[str, Any]
    ) -> RawBatch:
        return RawBatch(
            stream=stream,
            records=page,
            keys=[f"{r['id']}@{r['updated_at']}" for r in page],
            positions=list(range(start, start + len(page))),
            cursor=cursor,
            provenance={"topic": f"fake:{stream}"},
            versions=[str(r["updated_at"]) for r in page],
        )

    def parse_push(self, body: bytes, headers: dict[str, str]) -> list[PushItem]:
        """A JSON array of events: ``{eventId, stream, objectId}`` or ``{eventId, record}``."""
        try:
            events = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ParseError("the body is not JSON", code="invalid_json") from None
        if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
            raise ParseError("the body must be a JSON array of events", code="unexpected_shape")
        items = []
        for e in events:
            event_id, record = e.get("eventId"), e.get("record")
            if event_id is None:
                raise ParseError("an event has no eventId", code="unexpected_shape")
            if isinstance(record, dict):
                version = str(record.get("updated_at", "")) or None
                items.append(
                    PushItem(
                        event_id=str(event_id),
                        stream=str(record.get("stream", "")),
                        record=record,
                        version=version,
                        key=f"{record.get('id')}@{version}" if version else None,
                    )
                )
            elif e.get("objectId") is not None:
                items.append(
                    PushItem(str(event_id), str(e.get("stream", "")), fetch_id=str(e["objectId"]))
                )
            else:
                raise ParseError(
                    "an event has neither a record nor an objectId", code="unexpected_shape"
                )
        return items

    def push_ack(self, items: list[PushItem]) -> PushAck | None:
        """An XML acknowledgement when configured (as SOAP sources expect), else None."""
        if not self.config.push_ack_xml:
            return None
        return PushAck(f"<ack count='{len(items)}'/>".encode(), "text/xml")

    def _injected(self, sidecar: Path) -> None:
        try:
            plan = orjson.loads(sidecar.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return
        if int(plan.get("remaining", 0)) <= 0:
            return
        plan["remaining"] = int(plan["remaining"]) - 1
        sidecar.write_bytes(orjson.dumps(plan))
        self._fail(str(plan.get("kind", "unavailable")))

    def _fail(self, kind: str | None = None) -> None:
        kind = kind or self.config.fail_kind
        if kind == "rate_limited":
            raise RateLimitedError("the fake source is rate limiting", retry_after=7)
        if kind == "auth":
            raise AuthError("the fake source refused the token")
        raise UnavailableError("the fake source is unavailable")

    def close(self) -> None:
        """Nothing to release; safe to call twice."""
        self.closed = True
