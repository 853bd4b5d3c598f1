"""The ``odbc`` connector: tables and configured queries of a database, read as polled streams.

Incremental streams read ``WHERE wm >= ? ORDER BY wm, key`` in fetchmany batches.  Each batch's
cursor is ``{"watermark", "kind", "seen"}``: the highest watermark yielded so far and the
``key -> version`` of every row yielded at or after ``watermark - overlap``.  A resumed read
starts at ``watermark - overlap`` and skips exactly the (key, version) pairs in ``seen``: what was
yielded is not yielded again, while a row committed late with an older watermark (within the
overlap) or sharing the watermark's value is still read.  Integer and string watermarks take no
overlap (the window is the watermark value itself).

Streams without a watermark are read whole on every run (cursor ``{}``).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

import orjson

from connectors.base import Capability, CheckResult, RawBatch, StreamInfo
from connectors.odbc.client import Column, OdbcClient
from connectors.odbc.config import OdbcConfig, QueryStream, TableStream
from junction.core.errors import ConfigError, FatalError, JunctionError

_JSON_TYPES = {
    "timestamp": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "string": {"type": "string"},
    "decimal": {"type": "string", "format": "decimal"},
}
_WATERMARK_KINDS = ("timestamp", "date", "integer", "string")
_NOTHING = object()
_BASE64 = {"type": "string", "contentEncoding": "base64"}


@dataclass(frozen=True, slots=True)
class _Plan:
    """A stream resolved against the catalog: every identifier here was found there."""

    name: str
    source: str  # quoted table, or the configured query as a derived table
    params: tuple[Any, ...]
    columns: tuple[Column, ...]
    keys: tuple[str, ...]
    watermark: str | None
    kind: str | None
    overlap_s: float


def version_of(value: Any, kind: str) -> str:
    """A fixed-width string that sorts as ``value`` does (ISO-8601 UTC, zero-padded ints)."""
    if kind == "timestamp":
        # naive stamps are taken as UTC (set the database session's time zone to UTC)
        return _timestamp_version(value)
    if kind == "date":
        return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
    if kind == "integer":
        if value < 0:
            raise FatalError("a negative integer watermark cannot be ordered as a version")
        return f"{value:020d}"
    return str(value)


def _timestamp_version(ts: dt.datetime) -> str:
    if ts.tzinfo is not None:
        ts = ts.astimezone(dt.UTC).replace(tzinfo=None)
    # isoformat pads the year to four digits and, with timespec, always writes microseconds
    return ts.isoformat(timespec="microseconds") + "Z"


def _formatter(kind: str) -> Callable[[Any], str]:
    if kind == "timestamp":
        return _timestamp_version
    return lambda value: version_of(value, kind)


def _encode(value: Any, kind: str) -> Any:
    return value.isoformat() if kind in ("timestamp", "date") else value


def _decode(value: Any, kind: str) -> Any:
    if kind == "timestamp":
        return dt.datetime.fromisoformat(str(value))
    if kind == "date":
        return dt.date.fromisoformat(str(value))
    return int(value) if kind == "integer" else str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    return value


class OdbcConnector:
    """Reads configured tables and queries through pyodbc (unixODBC)."""

    name: ClassVar[str] = "odbc"
    config_model: ClassVar[type[OdbcConfig]] = OdbcConfig
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.DISCOVER, Capability.INCREMENTAL}
    )

    def __init__(self, config: OdbcConfig) -> None:
        """Keep the config; the connection opens on first use."""
        self.config = config
        if config.connection_string is not None:
            cs = config.connection_string.get_secret_value()
        else:
            assert config.dsn is not None  # the config's validator guarantees one of the two
            pw = config.password.get_secret_value() if config.password else None
            cs = OdbcClient.dsn_string(config.dsn, config.username, pw)
        secrets = [config.password.get_secret_value()] if config.password else []
        self._client = OdbcClient(cs, timeout_s=config.timeout_s, secrets=secrets)
        self._plans: dict[str, _Plan] | None = None

    def _resolve(self) -> dict[str, _Plan]:
        if self._plans is None:
            plans = {}
            for name, t in self.config.tables.items():
                plans[name] = self._table_plan(name, t)
            for name, q in self.config.queries.items():
                plans[name] = self._query_plan(name, q)
            self._plans = plans
        return self._plans

    def _catalog_name(self, wanted: str, names: list[str], what: str) -> str:
        if wanted in names:
            return wanted
        folded = [n for n in names if n.casefold() == wanted.casefold()]
        if len(folded) == 1:
            return folded[0]
        raise ConfigError(f"{what} {wanted!r} is not in the database catalog")

    def _table_plan(self, name: str, t: TableStream) -> _Plan:
        c = self._client
        schema = self.config.db_schema
        table = self._catalog_name(name, c.table_names(schema), "table")
        source = (c.quote(schema) + "." if schema else "") + c.quote(table)
        columns = c.describe(f"SELECT * FROM {source} WHERE 1=0", ())  # noqa: S608 - catalog ids
        keys = t.key_columns or c.primary_key(table, schema)
        if not keys:
            raise ConfigError(f"table {name!r} has no primary key: set key_columns")
        return self._plan(name, source, (), columns, keys, t)

    def _query_plan(self, name: str, q: QueryStream) -> _Plan:
        source = f"({q.sql}) q"
        sql = f"SELECT * FROM {source} WHERE 1=0"  # noqa: S608 - the configured query itself
        columns = self._client.describe(sql, q.params)
        return self._plan(name, source, tuple(q.params), columns, q.key_columns, q)

    def _plan(
        self,
        name: str,
        source: str,
        params: tuple[Any, ...],
        columns: list[Column],
        keys: list[str],
        s: TableStream | QueryStream,
    ) -> _Plan:
        names = [col.name for col in columns]
        keys = [self._catalog_name(k, names, f"stream {name!r}: key column") for k in keys]
        wm = kind = None
        if s.watermark_column is not None:
            wm = self._catalog_name(s.watermark_column, names, f"stream {name!r}: column")
            kind = next(col.kind for col in columns if col.name == wm)
            if kind not in _WATERMARK_KINDS:
                raise ConfigError(
                    f"stream {name!r}: watermark column {wm!r} must be a timestamp, date, "
                    "integer or string column"
                )
        overlap = s.overlap_s if s.overlap_s is not None else self.config.overlap_s
        return _Plan(name, source, params, tuple(columns), tuple(keys), wm, kind, overlap)

    def check(self) -> CheckResult:
        """Connect, then find every configured stream and its columns in the catalog."""
        try:
            plans = self._resolve()
        except JunctionError as exc:
            return CheckResult(False, exc.user_message)
        return CheckResult(True, f"{len(plans)} stream(s) on {self._client.dbms or 'ODBC'}")

    def discover(self) -> list[StreamInfo]:
        """The configured streams, with their columns as a JSON Schema."""
        out = []
        for p in self._resolve().values():
            props = {
                c.name: _BASE64
                if c.binary and self.config.json_safe
                else _JSON_TYPES.get(c.kind, {})
                for c in p.columns
            }
            schema = {"type": "object", "properties": props}
            out.append(StreamInfo(p.name, schema, key_fields=p.keys, cursor_field=p.watermark))
        return out

    def read(self, stream: str, cursor: dict[str, Any] | None) -> Iterator[RawBatch]:
        """Yield ``stream``'s rows after ``cursor`` in batches of ``batch_size``."""
        plans = self._resolve()
        if stream not in plans:
            raise ConfigError(f"unknown stream {stream!r}")
        p = plans[stream]
        if p.watermark is None or p.kind is None:
            yield from self._read_all(p)
        else:
            yield from self._read_since(p, p.watermark, p.kind, cursor or {})

    def _select(self, p: _Plan, where: str) -> str:
        q = self._client.quote
        cols = ", ".join(q(c.name) for c in p.columns)
        order = ", ".join(q(c) for c in ((p.watermark,) if p.watermark else ()) + p.keys)
        return f"SELECT {cols} FROM {p.source}{where} ORDER BY {order}"  # noqa: S608 - catalog ids

    def _rows(self, p: _Plan, where: str, params: tuple[Any, ...]) -> Iterator[list[Any]]:
        return self._client.batches(
            self._select(p, where), p.params + params, self.config.batch_size
        )

    def _convert(self, p: _Plan) -> tuple[list[str], list[int], list[int]]:
        names = [c.name for c in p.columns]
        keys = [names.index(k) for k in p.keys]
        fix = [i for i, c in enumerate(p.columns) if c.kind == "decimal" or c.binary]
        if not self.config.json_safe:
            fix = []
        return names, keys, fix

    @staticmethod
    def _key(row: Any, idx: list[int]) -> str:
        if len(idx) == 1:
            return str(row[idx[0]])
        return orjson.dumps([_json_value(row[i]) for i in idx], default=str).decode()

    def _read_all(self, p: _Plan) -> Iterator[RawBatch]:
        names, kidx, fix = self._convert(p)
        pos = 0
        single = kidx[0] if len(kidx) == 1 else None
        for rows in self._rows(p, "", ()):
            records = [dict(zip(names, row)) for row in rows]  # noqa: B905 - same columns
            for i in fix:
                col = names[i]
                for rec in records:
                    rec[col] = _json_value(rec[col])
            if single is not None:
                keys = [str(row[single]) for row in rows]
            else:
                keys = [self._key(row, kidx) for row in rows]
            yield self._batch(p, records, keys, pos, {}, None)
            pos += len(records)

    def _read_since(
        self, p: _Plan, wm: str, kind: str, cursor: dict[str, Any]
    ) -> Iterator[RawBatch]:
        names, kidx, fix = self._convert(p)
        widx = names.index(wm)
        overlap = dt.timedelta(seconds=p.overlap_s if kind == "timestamp" else 0)
        prior: dict[str, str] = dict(cursor.get("seen") or {})
        high: Any = None
        upto = ""  # rows up to this version may be in ``prior``; later ones are all new
        where = f" WHERE {self._client.quote(wm)} IS NOT NULL"
        params: tuple[Any, ...] = ()
        if cursor.get("watermark") is not None:
            if cursor.get("kind") != kind:
                raise ConfigError(f"stream {p.name!r}: the cursor's watermark kind changed")
            high = _decode(cursor["watermark"], kind)
            upto = version_of(high, kind)
            pred, low = self._client.at_least(
                self._client.quote(wm), kind, high - overlap if overlap else high
            )
            where += f" AND {pred}"
            params = (low,)
        # (key, version) of the rows yielded by this read, oldest first, trimmed to the overlap
        recent: deque[tuple[str, str]] = deque()
        single = kidx[0] if len(kidx) == 1 else None
        fmt = _formatter(kind)
        pos = 0
        last_raw: Any = _NOTHING
        version = ""
        for rows in self._rows(p, where, params):
            vers = []
            for row in rows:
                raw = row[widx]
                if raw != last_raw:  # neighbours often share a watermark value
                    last_raw, version = raw, fmt(raw)
                vers.append(version)
            if single is not None:
                rkeys = [str(row[single]) for row in rows]
            else:
                rkeys = [self._key(row, kidx) for row in rows]
            if prior and vers[0] <= upto:
                # this batch may hold rows yielded before the cursor: drop exactly those
                kept = [
                    i
                    for i, (k, v) in enumerate(zip(rkeys, vers, strict=True))
                    if not (v <= upto and prior.get(k) == v)
                ]
                if len(kept) < len(rows):
                    rows = [rows[i] for i in kept]
                    rkeys = [rkeys[i] for i in kept]
                    vers = [vers[i] for i in kept]
            records = [dict(zip(names, row)) for row in rows]  # noqa: B905 - same columns
            for i in fix:
                col = names[i]
                for rec in records:
                    rec[col] = _json_value(rec[col])
            keys = [f"{k}@{v}" for k, v in zip(rkeys, vers, strict=True)]
            versions = vers
            recent.extend(zip(rkeys, vers, strict=True))
            if not records:
                continue
            high = rows[-1][widx]
            floor = fmt(high - overlap) if overlap else fmt(high)
            while recent and recent[0][1] < floor:
                recent.popleft()
            if prior:
                prior = {k: v for k, v in prior.items() if v >= floor}
            seen = dict(prior)
            seen.update(recent)
            nxt = {"watermark": _encode(high, kind), "kind": kind, "seen": seen}
            yield self._batch(p, records, keys, pos, nxt, versions)
            pos += len(records)

    @staticmethod
    def _batch(
        p: _Plan,
        records: list[dict[str, Any]],
        keys: list[str],
        start: int,
        cursor: dict[str, Any],
        versions: list[str] | None,
    ) -> RawBatch:
        return RawBatch(
            stream=p.name,
            records=records,
            keys=keys,
            positions=list(range(start, start + len(records))),
            cursor=cursor,
            provenance={"topic": f"odbc:{p.name}"},
            versions=versions,
        )

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        self._client.close()
        self._plans = None
