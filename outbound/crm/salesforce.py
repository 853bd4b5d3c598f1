"""Salesforce CRM write-back through the sObject Collections API (200 records per call).

``match: id`` updates records by their Salesforce Id (``PATCH /composite/sobjects``);
``match: external_id:<Field__c>`` upserts by an external-id field
(``PATCH /composite/sobjects/{Object}/{Field__c}``), creating records that do not exist yet.
Calls use ``allOrNone: false``, so one bad row fails only its own delivery.  Auth, sessions and
the error table are the connector's (``connectors.salesforce.client``).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel

from connectors.salesforce.client import SalesforceClient, SalesforceConnection
from junction.core.errors import (
    ConfigError,
    FatalError,
    JunctionError,
    RateLimitedError,
    RetryableError,
)
from outbound.crm.base import WriteBack, WriteResult

# row-level status codes worth retrying: contention and capacity, not the data itself
_RETRYABLE = frozenset(
    {
        "UNABLE_TO_LOCK_ROW",
        "SERVER_UNAVAILABLE",
        "UNKNOWN_EXCEPTION",
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "TXN_SECURITY_METERING_ERROR",
    }
)
# JSON values, plus what the client serializes (decimals as numbers, dates as ISO-8601)
_WRITABLE = (str, int, float, bool, Decimal, date, type(None))
_API_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


def _api_name(value: str) -> bool:
    return bool(value) and value[0].isalpha() and set(value) <= _API_NAME_CHARS


def _looks_like_id(value: str) -> bool:
    return len(value) in (15, 18) and value.isalnum()


def row_error(errors: list[dict[str, Any]]) -> JunctionError:
    """The taxonomy error of one rejected row (its Salesforce message goes to ``details``)."""
    first = errors[0] if errors else {}
    code = str(first.get("statusCode") or first.get("errorCode") or "UNKNOWN")
    details = str(first.get("message", ""))[:300]
    ctx = {"status_code": code, "fields": ",".join(str(f) for f in first.get("fields") or [])}
    if code == "REQUEST_LIMIT_EXCEEDED":
        return RateLimitedError("Salesforce throttled the record", details=details, context=ctx)
    if code in _RETRYABLE:
        return RetryableError(
            f"Salesforce could not write the record now ({code})", details=details, context=ctx
        )
    return FatalError(f"Salesforce rejected the record ({code})", details=details, context=ctx)


class SalesforceWriteBackend:
    """Writes scored values back to Salesforce records, by Id or by an external id."""

    system: ClassVar[str] = "salesforce"
    options_model: ClassVar[type[BaseModel]] = SalesforceConnection
    max_batch: ClassVar[int] = 200

    def __init__(self, options: SalesforceConnection, *, match: str) -> None:
        """Validate ``match`` ("id" or "external_id:<Field__c>"); no I/O until ``write``.

        Raises:
            ConfigError: ``match`` is neither form.
        """
        self.external_field: str | None = None
        if match.startswith("external_id:"):
            field = match.partition(":")[2]
            if not _api_name(field):
                raise ConfigError(f"match {match!r}: the external id must be a field API name")
            self.external_field = field
        elif match != "id":
            raise ConfigError(f"match must be 'id' or 'external_id:<Field__c>', not {match!r}")
        self.match = match
        self._client = SalesforceClient(options)

    def close(self) -> None:
        """Close the HTTP session; safe to call twice."""
        self._client.close()

    def write(self, items: list[WriteBack]) -> list[WriteResult]:
        """Write ``items``; one result per item, in order.

        Items are sent in calls of at most 200 (one object type per upsert call).

        Raises:
            AuthError, RateLimitedError, UnavailableError, RemoteTimeoutError, FatalError: the
                whole call failed; no item is known to be written.
        """
        results: list[WriteResult | None] = [None] * len(items)
        pending: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for i, item in enumerate(items):
            record, problem = self._record(item)
            if problem is not None:
                results[i] = WriteResult(error=problem)
                continue
            group = item.object_type if self.external_field else ""
            pending.setdefault(group, []).append((i, record))
        for object_type, rows in pending.items():
            for start in range(0, len(rows), self.max_batch):
                chunk = rows[start : start + self.max_batch]
                answers = self._send(object_type, [r for _i, r in chunk])
                if len(answers) != len(chunk):
                    raise FatalError(
                        "Salesforce answered a different number of results than records sent",
                        context={"sent": len(chunk), "answered": len(answers)},
                    )
                for (i, _r), answer in zip(chunk, answers, strict=True):
                    results[i] = self._result(answer)
        return [
            r if r is not None else WriteResult(error=FatalError("not written")) for r in results
        ]

    def _record(self, item: WriteBack) -> tuple[dict[str, Any], JunctionError | None]:
        if not _api_name(item.object_type):
            return {}, FatalError("the object type is not an sObject API name")
        bad = [k for k in item.fields if not _api_name(k)]
        if bad:
            return {}, FatalError("a field name is not an API name", context={"field": bad[0]})
        odd = [k for k, v in item.fields.items() if not isinstance(v, _WRITABLE)]
        if odd:
            return {}, FatalError(
                "a value has a type Salesforce cannot take", context={"field": odd[0]}
            )
        record: dict[str, Any] = {"attributes": {"type": item.object_type}, **item.fields}
        if self.external_field is None:
            # the hub's source keys are <Id>@<version>; the record is addressed by the Id
            target = item.target.partition("@")[0]
            if not _looks_like_id(target):
                return {}, FatalError("the target is not a Salesforce record id")
            record["id"] = target
        else:
            if not item.target:
                return {}, FatalError("the external id value is empty")
            record[self.external_field] = item.target
        return record, None

    def _send(self, object_type: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.external_field is None:
            return self._client.collections_update(records)
        return self._client.collections_upsert(object_type, self.external_field, records)

    @staticmethod
    def _result(answer: dict[str, Any]) -> WriteResult:
        remote_id = answer.get("id")
        if answer.get("success"):
            detail = {"created": answer["created"]} if "created" in answer else {}
            return WriteResult(remote_id=str(remote_id), detail=detail)
        return WriteResult(
            remote_id=str(remote_id) if remote_id else None,
            error=row_error(list(answer.get("errors") or [])),
        )
