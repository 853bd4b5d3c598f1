"""The 1C:Enterprise SOAP connector: configured operations as polled streams.

A 1C web service is document/literal: each operation's answer wraps one ``return`` (zeep hands
back its value), and the items are a repeated element inside it.  Streams read in one of three
ways (``OneCOperation.incremental``):

* ``none``: one call; the answer is split into batches; every read returns everything.
* ``change_date``: the service returns items changed at or after ``since_parameter``; the cursor
  holds the watermark and the ids stored at it (:mod:`connectors.soap.incremental`).  With a
  ``limit_parameter`` a read pages: each call asks again from the newest stamp read.
* ``message_number``: an exchange-plan node: the call passes the number of the last message
  stored (1C's ``ReceivedNo`` acknowledgement) and answers the next message with its number;
  one message is one batch, and the cursor moves to its number only with that batch.

A call that fails (a timeout, a fault) raises before its batch exists, so the cursor stays after
the last batch the runner committed.  Keys are ``<id>@<version>``; versions are the change stamp
(fixed-width ISO) or the zero-padded message number.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar

from connectors.base import Capability, CheckResult, RawBatch, RowError, StreamInfo
from connectors.soap.client import SoapClient
from connectors.soap.incremental import Item, Watermark, items_batch, stamp_version
from connectors.soap_1c.config import OneCOperation, Soap1CConfig
from junction.core.errors import ConfigError, FatalError, JunctionError, ParseError


def walk(value: Any, path: str) -> Any:
    """Follow a dotted path through nested dicts (None when a step is missing).

    zeep unwraps an element whose type has a single child (``return`` holding only the repeated
    item), so a list met on the way is the value the path leads to.
    """
    for step in path.split(".") if path else ():
        if isinstance(value, list):
            return value
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def as_items(value: Any) -> list[dict[str, Any]]:
    """A repeated element's value as a list of item dicts (one item arrives unwrapped)."""
    if value is None:
        return []
    rows = value if isinstance(value, list) else [value]
    return [r for r in rows if isinstance(r, dict)]


class Soap1CConnector:
    """Reads a 1C web service's configured operations, incrementally when configured."""

    name: ClassVar[str] = "soap_1c"
    config_model: ClassVar[type[Soap1CConfig]] = Soap1CConfig
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.DISCOVER, Capability.INCREMENTAL}
    )

    def __init__(self, config: Soap1CConfig) -> None:
        """Keep the config; the WSDL is loaded at the first call."""
        self.config = config
        self.client = SoapClient(config)

    def close(self) -> None:
        """Close the HTTP session; safe to call twice."""
        self.client.close()

    def check(self) -> CheckResult:
        """Load the WSDL, find every configured operation, and make one authenticated call."""
        cfg = self.config
        try:
            known = set(self.client.operations())
            wanted = {op.operation for op in cfg.operations.values()}
            if cfg.check_operation:
                wanted.add(cfg.check_operation)
            missing = sorted(wanted - known)
            if missing:
                return CheckResult(False, f"the service has no operation {', '.join(missing)}")
            if cfg.check_operation:
                self.client.call(cfg.check_operation, {})
            else:
                op = next(iter(cfg.operations.values()))
                self._call(op, self._since_value(op, None), limit=1)
        except JunctionError as exc:
            return CheckResult(False, exc.user_message)
        return CheckResult(True, f"connected; {len(cfg.operations)} operation(s) readable")

    def discover(self) -> list[StreamInfo]:
        """One stream per configured operation."""
        return [
            StreamInfo(
                name,
                {"type": "object", "x-1c-operation": op.operation},
                key_fields=(op.id_field,),
                cursor_field=op.change_field if op.incremental == "change_date" else None,
            )
            for name, op in self.config.operations.items()
        ]

    def read(self, stream: str, cursor: dict[str, Any] | None) -> Iterator[RawBatch]:
        """Yield batches of ``stream`` after ``cursor``; nothing is called before the first.

        Raises:
            ConfigError: unknown stream, a foreign cursor, an operation or parameter the WSDL
                does not have.
            AuthError: the credentials were refused.
            RetryableError: a server fault, 429, 5xx, a timeout.
            FatalError: a client fault or an answer that is refused (DOCTYPE, entities).
        """
        op = self.config.operations.get(stream)
        if op is None:
            raise ConfigError(f"no configured operation named {stream!r}")
        if op.incremental == "message_number":
            yield from self._read_messages(stream, op, cursor)
        else:
            yield from self._read_dated(stream, op, cursor)

    def _since_value(self, op: OneCOperation, since: Any) -> Any:
        if op.incremental == "message_number":
            return int(since if since is not None else (op.start or 0))
        if op.incremental == "change_date":
            version = since if since is not None else stamp_version(op.start)
            return datetime.fromisoformat(version) if version else None
        return None

    def _call(self, op: OneCOperation, since: Any, *, limit: int | None) -> Any:
        params = dict(op.parameters)
        if op.since_parameter is not None:
            params[op.since_parameter] = since
        if op.limit_parameter is not None and limit is not None:
            params[op.limit_parameter] = limit
        return self.client.call(op.operation, params)

    def _read_dated(
        self, stream: str, op: OneCOperation, cursor: dict[str, Any] | None
    ) -> Iterator[RawBatch]:
        dated = op.incremental == "change_date"
        window = Watermark.from_cursor(cursor, start=op.start) if dated else None
        size, page = self.config.batch_size, self.config.effective_page_size
        position = 0
        while True:
            since = self._since_value(op, window.since if window else None)
            # ask for the ids already stored at the watermark on top of a page: they come back
            # (the filter is inclusive), and a page of fresh items still fits
            known = len(window.seen) if window is not None else 0
            limit = page + known if op.limit_parameter else None
            answer = self._call(op, since, limit=limit)
            items = as_items(walk(answer, op.items))
            rows, errors = self._versioned(stream, op, items, position)
            position += len(items)
            fresh = [r for r in rows if window is None or window.seen.get(r[0]) != r[1]]
            for at in range(0, len(fresh), size):
                chunk = fresh[at : at + size]
                if window is not None:
                    for rid, version, _, _ in chunk:
                        window.accept(rid, version)
                cursor_after = window.to_cursor() if window is not None else {}
                yield self._batch(stream, op, chunk, cursor_after, errors if at == 0 else [])
            if errors and not fresh:
                cursor_after = window.to_cursor() if window is not None else {}
                yield self._batch(stream, op, [], cursor_after, errors)
            if limit is None or len(items) < limit:
                return
            if not fresh:
                raise FatalError(
                    f"more than page_size ({page}) items of {stream} share one change date; "
                    "raise page_size",
                    context={"stream": stream, "since": str(since)},
                )

    def _versioned(
        self, stream: str, op: OneCOperation, items: list[dict[str, Any]], start: int
    ) -> tuple[list[tuple[str, str, int, dict[str, Any]]], list[RowError]]:
        """(id, version, position, item) in (version, id) order, and the unreadable items."""
        rows: list[tuple[str, str, int, dict[str, Any]]] = []
        errors: list[RowError] = []
        for i, item in enumerate(items, start + 1):
            rid = item.get(op.id_field)
            try:
                if rid in (None, ""):
                    raise ParseError(f"an item of {stream} has no {op.id_field}")
                version = stamp_version(item.get(op.change_field)) if op.change_field else None
                if version is None and op.incremental == "change_date":
                    raise ParseError(f"an item of {stream} has no {op.change_field}")
            except (ParseError, ValueError) as exc:
                err = (
                    exc
                    if isinstance(exc, ParseError)
                    else ParseError(f"an item of {stream} has an unreadable {op.change_field}")
                )
                err.context.update(stream=stream, position=i)
                errors.append(RowError(f"{stream}:{i}", i, repr(item)[:2000].encode(), err))
                continue
            rows.append((str(rid), version or "", i, item))
        rows.sort(key=lambda r: (r[1], r[0]))
        return rows, errors

    def _read_messages(
        self, stream: str, op: OneCOperation, cursor: dict[str, Any] | None
    ) -> Iterator[RawBatch]:
        received = (cursor or {}).get("message_no", int(op.start or 0))
        if type(received) is not int or received < 0:
            raise ConfigError("the saved cursor has an unknown format", details=repr(cursor))
        position = 0
        while True:
            answer = self._call(op, received, limit=self.config.effective_page_size)
            number = walk(answer, op.message_number_field)
            try:
                number = int(number)
            except (TypeError, ValueError):
                raise FatalError(
                    f"the answer of {op.operation} has no message number "
                    f"({op.message_number_field})"
                ) from None
            if number <= received:
                return  # no message after the one received
            items = as_items(walk(answer, op.items))
            rows, errors = self._versioned(stream, op, items, position)
            position += len(items)
            tag = f"{number:020d}"
            latest: dict[str, tuple[str, str, int, dict[str, Any]]] = {}
            for rid, version, pos, item in sorted(rows, key=lambda r: r[2]):
                latest[rid] = (rid, version or tag, pos, item)  # changed twice: the last wins
            received = number
            if latest or errors:
                chunk = sorted(latest.values(), key=lambda r: r[2])
                yield self._batch(stream, op, chunk, {"message_no": number}, errors)

    def _batch(
        self,
        stream: str,
        op: OneCOperation,
        rows: list[Item],
        cursor: dict[str, Any],
        errors: list[RowError],
    ) -> RawBatch:
        return items_batch(
            stream, rows, cursor, errors, {"connector": self.name, "operation": op.operation}
        )
