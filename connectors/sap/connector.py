"""The SAP connector: RFC-enabled function modules called as SOAP services (SOAMANAGER).

The WSDL SOAMANAGER generates for an RFC function (``urn:sap-com:document:sap:rfc:functions``)
takes importing parameters and tables, and answers exporting parameters and tables; tables are
repeated ``<item>`` elements of unqualified fields.  Each configured function is a stream whose
records are the rows of one output table, flattened: one dict of fields per ``<item>``.  Values
stay as SAP sends them (ALPHA leading zeros, ``date10``, trailing-minus text): mappings own
normalization.  A BAPIRET2 ``RETURN`` table with an ``E``/``A`` message fails the call even under
HTTP 200.  The endpoint gets ``?sap-client=<client>``.

Incremental reads filter by change date (``AEDAT``, optionally ``AEZET``), inclusive and by day
as SAP function modules do: the cursor's watermark and the keys stored at it make a re-read of
the watermark day repeat nothing (:mod:`connectors.soap.incremental`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from connectors.base import Capability, CheckResult, RawBatch, RowError, StreamInfo
from connectors.sap.config import SapConfig, SapFunction
from connectors.soap.client import SoapClient
from connectors.soap.incremental import Item, Watermark, items_batch, stamp_version, version_date
from junction.core.errors import ConfigError, FatalError, JunctionError, ParseError


def table_rows(value: Any) -> list[dict[str, Any]]:
    """The rows of an ABAP table as zeep reads it (``{"item": [...]}``, a list, or None)."""
    if isinstance(value, dict) and set(value) <= {"item"}:
        value = value.get("item")
    if value is None:
        return []
    rows = value if isinstance(value, list) else [value]
    return [r for r in rows if isinstance(r, dict)]


def abap_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """Configured parameters for zeep: a list (an input table) becomes ``{"item": [...]}``."""
    return {k: {"item": v} if isinstance(v, list) else v for k, v in parameters.items()}


class SapConnector:
    """Reads the output tables of SAP functions exposed as SOAP services."""

    name: ClassVar[str] = "sap"
    config_model: ClassVar[type[SapConfig]] = SapConfig
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.DISCOVER, Capability.INCREMENTAL}
    )

    def __init__(self, config: SapConfig) -> None:
        """Keep the config; the WSDL is loaded at the first call."""
        self.config = config
        self.client = SoapClient(config, address=config.endpoint)

    def close(self) -> None:
        """Close the HTTP session; safe to call twice."""
        self.client.close()

    def check(self) -> CheckResult:
        """Load the WSDL, find the functions, and call the first one (logon and authority)."""
        cfg = self.config
        try:
            known = set(self.client.operations())
            missing = sorted({f.function for f in cfg.functions.values()} - known)
            if missing:
                return CheckResult(False, f"the service has no function {', '.join(missing)}")
            name, fn = next(iter(cfg.functions.items()))
            self._call(name, fn, None)
        except JunctionError as exc:
            return CheckResult(False, exc.user_message)
        return CheckResult(True, f"logged on; {len(cfg.functions)} function(s) callable")

    def discover(self) -> list[StreamInfo]:
        """One stream per configured function."""
        return [
            StreamInfo(
                name,
                {"type": "object", "x-sap-function": fn.function, "x-sap-table": fn.table},
                key_fields=tuple(fn.key_fields),
                cursor_field=fn.change_field if fn.incremental == "change_date" else None,
            )
            for name, fn in self.config.functions.items()
        ]

    def _call(self, stream: str, fn: SapFunction, since: str | None) -> Any:
        params = abap_parameters(fn.parameters)
        if fn.since_parameter is not None and since is not None:
            day = version_date(since)
            params[fn.since_parameter] = (
                day.isoformat() if fn.since_format == "date10" else day.strftime("%Y%m%d")
            )
        answer = self.client.call(fn.function, params)
        if not isinstance(answer, dict):
            raise FatalError(
                f"the answer of {fn.function} is not a parameter list", context={"stream": stream}
            )
        if fn.return_table:
            errors = [
                m
                for m in table_rows(answer.get(fn.return_table))
                if str(m.get("TYPE", "")).upper() in ("E", "A")
            ]
            if errors:
                first = errors[0]
                raise FatalError(
                    f"{fn.function} returned an error message ({first.get('ID')} "
                    f"{first.get('NUMBER')})",
                    details=str(first.get("MESSAGE"))[:500],
                    context={"stream": stream, "messages": len(errors)},
                )
        return answer

    def read(self, stream: str, cursor: dict[str, Any] | None) -> Iterator[RawBatch]:
        """Yield the rows of ``stream``'s table after ``cursor``, in batches.

        Nothing is called before the first batch is asked for.

        Raises:
            ConfigError: unknown stream or foreign cursor; the WSDL lacks the function.
            AuthError: logon failed (credentials or client).
            RetryableError: a server fault, 429, 5xx, a timeout.
            FatalError: a client fault, an E/A message in the return table, a refused answer.
        """
        fn = self.config.functions.get(stream)
        if fn is None:
            raise ConfigError(f"no configured function named {stream!r}")
        dated = fn.incremental == "change_date"
        window = Watermark.from_cursor(cursor, start=fn.start) if dated else None
        answer = self._call(stream, fn, window.since if window is not None else None)
        rows, errors = self._versioned(stream, fn, table_rows(answer.get(fn.table)))
        fresh = [r for r in rows if window is None or window.is_new(r[0], r[1])]
        size = self.config.batch_size
        for at in range(0, len(fresh), size):
            chunk = fresh[at : at + size]
            if window is not None:
                for key, version, _, _ in chunk:
                    window.accept(key, version)
            yield self._batch(
                stream, fn, chunk, window.to_cursor() if window else {}, errors if at == 0 else []
            )
        if errors and not fresh:
            yield self._batch(stream, fn, [], window.to_cursor() if window else {}, errors)

    def _versioned(
        self, stream: str, fn: SapFunction, rows: list[dict[str, Any]]
    ) -> tuple[list[tuple[str, str, int, dict[str, Any]]], list[RowError]]:
        out: list[tuple[str, str, int, dict[str, Any]]] = []
        errors: list[RowError] = []
        for i, row in enumerate(rows, 1):
            key = "/".join(str(row.get(f) or "") for f in fn.key_fields)
            try:
                if not key.strip("/"):
                    raise ParseError(f"a row of {fn.table} has no {'/'.join(fn.key_fields)}")
                version = None
                if fn.change_field:
                    stamp = str(row.get(fn.change_field) or "")
                    if stamp and fn.change_time_field and row.get(fn.change_time_field):
                        stamp = f"{stamp.replace('-', '')[:8]}T{row[fn.change_time_field]}"
                        stamp = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:]}"
                    version = stamp_version(stamp)
                if version is None and fn.incremental == "change_date":
                    raise ParseError(f"a row of {fn.table} has no {fn.change_field}")
            except (ParseError, ValueError) as exc:
                err = (
                    exc
                    if isinstance(exc, ParseError)
                    else ParseError(f"a row of {fn.table} has an unreadable {fn.change_field}")
                )
                err.context.update(stream=stream, position=i)
                errors.append(RowError(f"{stream}:{i}", i, repr(row)[:2000].encode(), err))
                continue
            out.append((key, version or "", i, row))
        out.sort(key=lambda r: (r[1], r[0]))
        return out, errors

    def _batch(
        self,
        stream: str,
        fn: SapFunction,
        rows: list[Item],
        cursor: dict[str, Any],
        errors: list[RowError],
    ) -> RawBatch:
        return items_batch(
            stream,
            rows,
            cursor,
            errors,
            {"connector": self.name, "function": fn.function, "table": fn.table},
        )
