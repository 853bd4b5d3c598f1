"""HubSpot CRM write-back through the batch APIs (100 records per call).

``match: id`` updates records by their HubSpot id (``POST /crm/v3/objects/{object}/batch/update``);
``match: property:<name>`` upserts by a unique property such as ``email``
(``…/batch/upsert`` with ``idProperty``), creating records that do not exist yet.  HubSpot
answers a partial failure with 207 and an ``errors[]`` list naming the failed ids
(``context.ids``): those items get a ``FatalError`` or a ``RetryableError`` by the error's
category, the others succeed.  A whole-call failure (auth, 429, 5xx, timeout, a 400 for the
batch) raises the client's typed error.  Auth, tokens and the error table are the connector's
(``connectors.hubspot.client``).

A batch never names one record twice (HubSpot refuses duplicate ids in a batch): repeated
targets go out in later calls, in order, so the last write wins as it would one by one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel

from connectors.hubspot.client import Answer, HubSpotClient, HubSpotConnection
from junction.core.errors import ConfigError, FatalError, JunctionError, RetryableError
from outbound.crm.base import WriteBack, WriteResult

# per-record error categories worth retrying: capacity and contention, not the data itself
_RETRYABLE = frozenset(
    {"RATE_LIMITS", "INTERNAL_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT", "LOCKED", "BAD_GATEWAY"}
)
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def property_value(value: Any) -> str:
    """A value as HubSpot properties take it: text (``""`` clears the property)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return str(int((moment - _EPOCH).total_seconds() * 1000))
    if isinstance(value, date):
        # date properties take midnight UTC of the day, in ms
        return property_value(datetime.combine(value, time(), tzinfo=UTC))
    if isinstance(value, int | float | Decimal | str):
        return str(value)
    if isinstance(value, list | tuple):
        return ";".join(property_value(v) for v in value)  # multi-select checkboxes
    raise TypeError(type(value).__name__)


def item_error(error: dict[str, Any]) -> JunctionError:
    """The taxonomy error of one record named in a 207's ``errors[]``."""
    category = str(error.get("category") or "UNKNOWN")
    ctx = {"category": category}
    # HubSpot's message may quote the values sent (an email): it stays out of the error
    if category in _RETRYABLE:
        return RetryableError(
            f"HubSpot could not write the record now ({category})", context=ctx, code="crm_busy"
        )
    return FatalError(f"HubSpot rejected the record ({category})", context=ctx)


def _named_ids(error: dict[str, Any]) -> list[str]:
    context = error.get("context")
    if not isinstance(context, dict):
        return []
    named: list[str] = []
    for key in ("ids", "id"):
        value = context.get(key)
        if isinstance(value, list):
            named.extend(str(v) for v in value)
        elif isinstance(value, str | int):
            named.append(str(value))
    return named


class HubSpotWriteBackend:
    """Writes scored values back to HubSpot records, by id or by a unique property."""

    system: ClassVar[str] = "hubspot"
    options_model: ClassVar[type[BaseModel]] = HubSpotConnection
    max_batch: ClassVar[int] = 100

    def __init__(self, options: HubSpotConnection, *, match: str) -> None:
        """Validate ``match`` ("id" or "property:<name>"); no I/O until ``write``.

        Raises:
            ConfigError: ``match`` is neither form.
        """
        self.id_property: str | None = None
        if match.startswith("property:"):
            name = match.partition(":")[2]
            if not _NAME.match(name):
                raise ConfigError(f"match {match!r}: the property must be a HubSpot property name")
            self.id_property = name
        elif match != "id":
            raise ConfigError(f"match must be 'id' or 'property:<name>', not {match!r}")
        self.match = match
        self._client = HubSpotClient(options)

    def close(self) -> None:
        """Close the HubSpot session; safe to call twice."""
        self._client.close()

    def write(self, items: list[WriteBack]) -> list[WriteResult]:
        """Write ``items``; one result per item, in order.

        Raises:
            AuthError, RateLimitedError, UnavailableError, RemoteTimeoutError, FatalError: a
                whole call failed; no item of that call is known to be written.
        """
        results: list[WriteResult | None] = [None] * len(items)
        groups: dict[str, list[tuple[int, str, dict[str, str]]]] = {}
        for i, item in enumerate(items):
            prepared = self._prepare(item)
            if isinstance(prepared, JunctionError):
                results[i] = WriteResult(error=prepared)
                continue
            groups.setdefault(item.object_type, []).append((i, *prepared))
        for object_type, rows in groups.items():
            for chunk in _rounds(rows, self.max_batch, fold=self.id_property is not None):
                answer = self._send(object_type, [(t, p) for _i, t, p in chunk])
                for (i, _t, _p), result in zip(chunk, self._results(answer, chunk), strict=True):
                    results[i] = result
        return [
            r if r is not None else WriteResult(error=FatalError("not written")) for r in results
        ]

    def _prepare(self, item: WriteBack) -> tuple[str, dict[str, str]] | JunctionError:
        if not _NAME.match(item.object_type):
            return FatalError("the object type is not a HubSpot object name")
        props: dict[str, str] = {}
        for name, value in item.fields.items():
            if not _NAME.match(name):
                return FatalError("a field name is not a HubSpot property name")
            try:
                props[name] = property_value(value)
            except TypeError:
                return FatalError(
                    "a value cannot be written to a HubSpot property", context={"field": name}
                )
        if self.id_property is None:
            # the hub's source keys are <id>@<version>; the record is addressed by the id
            target = item.target.partition("@")[0]
            if not target.isascii() or not target.isdigit():
                return FatalError("the target is not a HubSpot record id")
        else:
            target = item.target.strip()
            if not target:
                return FatalError(f"the {self.id_property} value is empty")
        return target, props

    def _send(self, object_type: str, rows: list[tuple[str, dict[str, str]]]) -> Answer:
        if self.id_property is None:
            return self._client.batch_update(object_type, rows)
        return self._client.batch_upsert(object_type, self.id_property, rows)

    def _results(
        self, answer: Answer, chunk: list[tuple[int, str, dict[str, str]]]
    ) -> list[WriteResult]:
        body = answer.body
        by_target: dict[str, dict[str, Any]] = {}
        for record in body.get("results") or []:
            if not isinstance(record, dict):
                continue
            if self.id_property is None:
                by_target[str(record.get("id"))] = record
            else:
                value = (record.get("properties") or {}).get(self.id_property)
                if value is not None:
                    by_target[str(value).lower()] = record
        failed: dict[str, JunctionError] = {}
        unnamed: JunctionError | None = None
        for error in body.get("errors") or []:
            if not isinstance(error, dict):
                continue
            named = _named_ids(error)
            for target in named:
                failed[target.lower() if self.id_property else target] = item_error(error)
            if not named and unnamed is None:
                unnamed = item_error(error)
        out = []
        for _i, target, _p in chunk:
            key = target.lower() if self.id_property else target
            record = by_target.get(key)
            if key in failed:
                out.append(WriteResult(error=failed[key], detail={"status": answer.status}))
            elif record is not None:
                detail = {"new": record["new"]} if "new" in record else {}
                out.append(WriteResult(remote_id=str(record.get("id")), detail=detail))
            elif unnamed is not None:
                out.append(WriteResult(error=unnamed, detail={"status": answer.status}))
            else:
                # accepted, but HubSpot named no record for it (upserts may omit the property)
                out.append(WriteResult(detail={"status": answer.status}))
        return out


def _rounds(
    rows: list[tuple[int, str, dict[str, str]]], size: int, *, fold: bool
) -> Iterable[list[tuple[int, str, dict[str, str]]]]:
    """Calls of at most ``size`` rows, none naming one target twice (later repeats wait)."""
    pending = rows
    while pending:
        batch: list[tuple[int, str, dict[str, str]]] = []
        later: list[tuple[int, str, dict[str, str]]] = []
        named: set[str] = set()
        for row in pending:
            key = row[1].lower() if fold else row[1]
            if key in named or len(batch) >= size:
                later.append(row)
                continue
            named.add(key)
            batch.append(row)
        yield batch
        pending = later
