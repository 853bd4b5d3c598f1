"""A stateful fake Salesforce org speaking the real wire format, for simple-salesforce.

It serves, on plain HTTP (the connector's ``base_url`` rewrites the SDK's https URLs):

* ``POST /services/oauth2/token``: password, client_credentials (Basic auth) and JWT bearer
  (RS256, verified against the org's public key) grants; bad credentials get
  ``{"error", "error_description"}`` with 400.
* ``POST /services/Soap/u/{v}``: the SOAP partner login (``sessionId``/``serverUrl``), or a
  ``LoginFault`` with ``sf:exceptionCode`` and 500.
* ``/services/data/v{v}/``: ``sobjects`` (describe global), ``sobjects/{o}/describe``,
  ``query``/``queryAll`` (a SOQL subset, ``Sforce-Query-Options: batchSize``, ``nextRecordsUrl``
  paging over a snapshot), ``jobs/query`` (Bulk API 2.0 query jobs, CSV pages with
  ``Sforce-NumberOfRecords``/``Sforce-Locator``, rows in no particular order), and
  ``composite/sobjects`` (sObject Collections update, and upsert by external id).

Every data answer carries ``Sforce-Limit-Info: api-usage=n/m``.  Errors are the JSON list
``[{"message", "errorCode", "fields"}]``; a revoked token gets 401 ``INVALID_SESSION_ID``.
``faults`` (``tests.fakes.server.Faults``) is consulted first on every request.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import io
import itertools
import json
import re
import secrets
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import jwt
from fastapi import FastAPI, Request, Response

from connectors.salesforce.outbound_message import to18
from tests.fakes.salesforce_data import FIELDS, KEY_PREFIX
from tests.fakes.server import Faults

INSTANCE = "https://acme.my.salesforce.com"
ORG_ID = "00D5g000004ABCDEAA"
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SOQL = re.compile(
    r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<obj>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+ORDER\s+BY\s+(?P<order>.+?))?"
    r"(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_IN = re.compile(r"^\s*(\w+)\s+IN\s*\((.+)\)\s*$", re.IGNORECASE)
_COND = re.compile(r"^\s*(\w+)\s*(>=|<=|!=|=|>|<)\s*(.+?)\s*$")
# the dateTime literal forms SOQL documents: no fractional seconds
_SOQL_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$")
_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$")


def sf_stamp(when: datetime) -> str:
    """A datetime the way Salesforce REST writes it: ``2022-01-02T15:41:15.000+0000``."""
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}+0000"


def _parse_dt(text: str) -> datetime:
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    return datetime.fromisoformat(text)


def _errors(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    body = json.dumps([{"message": message, "errorCode": code, "fields": []}])
    return Response(body, status_code=status, media_type="application/json", headers=headers)


class SoqlError(Exception):
    """A query the fake (or Salesforce) refuses: errorCode + message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Query:
    """A parsed SOQL query of the supported subset."""

    obj: str
    fields: list[str] | None  # None: SELECT COUNT()
    where: list[tuple[str, str, Any]]
    order: list[tuple[str, bool]]  # (field, descending)
    limit: int | None


@dataclass
class FakeOrg:
    """The org's state, credentials and knobs; ``app()`` serves it."""

    client_id: str = "3MVG9fakeConsumerKey"
    client_secret: str = "fake-consumer-secret-8d1f"
    username: str = "integration@acme.example"
    password: str = "Pa55-word-fake"
    security_token: str = "SecTok3nFake"
    public_key_pem: bytes | None = field(default_factory=lambda: rsa_keypair()[1])
    version: str = "59.0"
    api_max: int = 15000
    api_used: int = 0
    bulk_polls: int = 1  # a new job answers InProgress this many times before JobComplete
    # collection rows whose id or external id value is a key here fail with that status code
    fail_rows: dict[str, str] = field(default_factory=dict)
    # data requests whose path contains the key get (status, errorCode) once each
    answer_next: dict[str, tuple[int, str]] = field(default_factory=dict)
    bulk_fail: bool = False  # query jobs end in state Failed
    faults: Faults = field(default_factory=lambda: Faults(retry_after_s=7.0, delay_s=0.5))
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    logins: list[str] = field(default_factory=list)  # grant per successful login
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    soql: list[str] = field(default_factory=list)  # every query received (REST and Bulk 2.0)
    clock: datetime = field(default_factory=lambda: datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _cursors: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _jobs: dict[str, dict[str, Any]] = field(default_factory=dict)

    # -- state helpers for tests -----------------------------------------------------------

    def tick(self, seconds: float = 1.0) -> datetime:
        """Advance the org clock and return the new time."""
        with self._lock:
            self.clock += timedelta(seconds=seconds)
            return self.clock

    def new_id(self, obj: str) -> str:
        """A fresh 18-character id with the object's key prefix."""
        n = next(self._ids)
        digits = ""
        for _ in range(5):
            n, r = divmod(n, 62)
            digits = _B62[r] + digits
        return to18(KEY_PREFIX.get(obj, "a00") + "5g0000" + "0" + digits)

    def insert(self, obj: str, values: dict[str, Any], *, modstamp: datetime | None = None) -> str:
        """Create a record stamped ``modstamp`` (default: the org clock, one tick later)."""
        with self._lock:
            stamp = modstamp or self.tick()
            rid = self.new_id(obj)
            rec: dict[str, Any] = {
                name: None for name, kind, _x in FIELDS[obj] if kind != "address"
            }
            rec.update(values)
            rec.update(
                Id=rid,
                IsDeleted=False,
                CreatedDate=sf_stamp(stamp),
                LastModifiedDate=sf_stamp(stamp),
                SystemModstamp=sf_stamp(stamp),
            )
            self.records.setdefault(obj, {})[rid] = rec
            return rid

    def update(
        self, obj: str, rid: str, values: dict[str, Any], *, modstamp: datetime | None = None
    ) -> None:
        """Change a record; it gets a new SystemModstamp (default: the org clock, one tick)."""
        with self._lock:
            stamp = modstamp or self.tick()
            rec = self.records[obj][rid]
            rec.update(values)
            rec.update(LastModifiedDate=sf_stamp(stamp), SystemModstamp=sf_stamp(stamp))

    def delete(self, obj: str, rid: str, *, modstamp: datetime | None = None) -> None:
        """Move a record to the recycle bin (queryAll still returns it, IsDeleted true)."""
        self.update(obj, rid, {"IsDeleted": True}, modstamp=modstamp)

    def revoke_tokens(self) -> None:
        """Invalidate every issued session (the next data call gets INVALID_SESSION_ID)."""
        with self._lock:
            self.tokens.clear()

    def issue_token(self) -> str:
        """A valid access token, as a direct session would hold."""
        token = f"{ORG_ID[:15]}!{secrets.token_urlsafe(24)}"
        with self._lock:
            self.tokens.add(token)
        return token

    # -- SOQL ------------------------------------------------------------------------------

    def parse(self, soql: str) -> Query:
        """Parse the SOQL subset: fields or COUNT(), AND-ed comparisons, ORDER BY, LIMIT."""
        with self._lock:
            self.soql.append(soql)
        m = _SOQL.match(soql)
        if not m:
            raise SoqlError("MALFORMED_QUERY", "unexpected token")
        obj = m.group("obj")
        if obj not in FIELDS:
            raise SoqlError("INVALID_TYPE", f"sObject type '{obj}' is not supported.")
        known = {name for name, _k, _x in FIELDS[obj]}
        raw_fields = [f.strip() for f in m.group("fields").split(",")]
        fields: list[str] | None
        if [f.upper() for f in raw_fields] == ["COUNT()"]:
            fields = None
        else:
            fields = raw_fields
            for f in fields:
                if f not in known:
                    raise SoqlError("INVALID_FIELD", f"No such column '{f}' on entity '{obj}'.")
        where: list[tuple[str, str, Any]] = []
        if m.group("where"):
            for part in re.split(r"\s+AND\s+", m.group("where"), flags=re.IGNORECASE):
                inside = _IN.match(part)
                if inside and inside.group(1) in known:
                    values = [self._literal(v.strip()) for v in inside.group(2).split(",")]
                    if inside.group(1) == "Id":  # Salesforce matches 15- and 18-char ids
                        values = [to18(v) if isinstance(v, str) else v for v in values]
                    where.append((inside.group(1), "IN", values))
                    continue
                c = _COND.match(part)
                if not c or c.group(1) not in known:
                    raise SoqlError("MALFORMED_QUERY", "unexpected condition")
                where.append((c.group(1), c.group(2), self._literal(c.group(3))))
        order: list[tuple[str, bool]] = []
        if m.group("order"):
            for part in m.group("order").split(","):
                words = part.split()
                if not words or words[0] not in known:
                    raise SoqlError("MALFORMED_QUERY", "unexpected ORDER BY")
                order.append((words[0], len(words) > 1 and words[1].upper() == "DESC"))
        limit = int(m.group("limit")) if m.group("limit") else None
        return Query(obj, fields, where, order, limit)

    @staticmethod
    def _literal(text: str) -> Any:
        if text.startswith("'") and text.endswith("'"):
            return text[1:-1].replace("\\'", "'")
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        if low == "null":
            return None
        if _SOQL_DATETIME.match(text):
            return _parse_dt(text)
        try:
            return float(text)
        except ValueError:
            raise SoqlError("MALFORMED_QUERY", f"unexpected literal {text}") from None

    def run(self, q: Query, *, include_deleted: bool) -> list[dict[str, Any]]:
        """The matching records (copies), filtered, ordered and limited."""
        ops = {
            "=": lambda a, b: a == b,
            "!=": lambda a, b: a != b,
            ">": lambda a, b: a is not None and a > b,
            ">=": lambda a, b: a is not None and a >= b,
            "<": lambda a, b: a is not None and a < b,
            "<=": lambda a, b: a is not None and a <= b,
            "IN": lambda a, b: a in b,
        }
        with self._lock:
            rows = [dict(r) for r in self.records.get(q.obj, {}).values()]
        out = []
        for rec in rows:
            if rec.get("IsDeleted") and not include_deleted:
                continue
            ok = True
            for name, op, lit in q.where:
                value = rec.get(name)
                if isinstance(lit, datetime) and isinstance(value, str):
                    value = _parse_dt(value)
                if not ops[op](value, lit):
                    ok = False
                    break
            if ok:
                out.append(rec)
        for name, desc in reversed(q.order):
            out.sort(
                key=lambda r, n=name: (r.get(n) is not None, _sort_value(r.get(n))), reverse=desc
            )
        if q.limit is not None:
            out = out[: q.limit]
        return out

    def project(self, rec: dict[str, Any], q: Query) -> dict[str, Any]:
        """A record as the REST API returns it: attributes, then the selected fields."""
        url = f"/services/data/v{self.version}/sobjects/{q.obj}/{rec['Id']}"
        out: dict[str, Any] = {"attributes": {"type": q.obj, "url": url}}
        for f in q.fields or []:
            out[f] = rec.get(f)
        return out

    # -- the app ---------------------------------------------------------------------------

    def app(self) -> FastAPI:
        """The FastAPI app serving this org."""
        api = FastAPI()

        @api.api_route("/{path:path}", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
        async def dispatch(path: str, request: Request) -> Response:
            path = "/" + path
            body = await request.body()
            with self._lock:
                self.requests.append((request.method, path))
            kind = self.faults.take(path)
            if kind == "timeout":
                await asyncio.sleep(self.faults.delay_s)
            elif kind is not None:
                return self._fault(kind, path)
            if path == "/services/oauth2/token":
                return self._oauth(request, body)
            if path.startswith("/services/Soap/u/"):
                return self._soap_login(body)
            m = re.match(r"^/services/data/v(\d+\.\d)/(.*)$", path)
            if not m:
                return _errors(404, "NOT_FOUND", "The requested resource does not exist")
            return self._data(request, m.group(2), body)

        return api

    def _fault(self, kind: str, path: str) -> Response:
        retry = {"Retry-After": f"{self.faults.retry_after_s:g}"}
        if path == "/services/oauth2/token":
            # the login host answers an outage with an HTML page, a throttle with OAuth JSON
            if kind == "server_error":
                page = "<html><body>Service Unavailable</body></html>"
                return Response(page, status_code=503, media_type="text/html")
            status = 429 if kind == "rate_limit" else 401
            body = {"error": "rate_limit_exceeded", "error_description": "too many requests"}
            return Response(
                json.dumps(body),
                status_code=status,
                media_type="application/json",
                headers=retry if kind == "rate_limit" else None,
            )
        if kind == "rate_limit":
            return _errors(429, "REQUEST_LIMIT_EXCEEDED", "Too many requests", retry)
        if kind == "server_error":
            return _errors(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable")
        return _errors(401, "INVALID_SESSION_ID", "Session expired or invalid")

    def _login_ok(self, grant: str) -> str:
        token = self.issue_token()
        with self._lock:
            self.logins.append(grant)
        return token

    def _oauth(self, request: Request, body: bytes) -> Response:
        form = dict(parse_qsl(body.decode()))
        grant = form.get("grant_type", "")
        ok = False
        if grant == "password":
            ok = (
                form.get("client_id") == self.client_id
                and form.get("client_secret") == self.client_secret
                and form.get("username") == self.username
                and form.get("password") in (self.password, self.password + self.security_token)
            )
        elif grant == "client_credentials":
            auth = request.headers.get("authorization", "")
            expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
            ok = auth == f"Basic {expected}"
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer" and self.public_key_pem:
            try:
                claims = jwt.decode(
                    form.get("assertion", ""),
                    self.public_key_pem,
                    algorithms=["RS256"],
                    options={"verify_aud": False},
                )
                ok = (
                    claims.get("iss") == self.client_id
                    and claims.get("sub") == self.username
                    and str(claims.get("aud", "")).endswith(".salesforce.com")
                )
            except jwt.PyJWTError:
                ok = False
        if not ok:
            err = {"error": "invalid_grant", "error_description": "authentication failure"}
            return Response(json.dumps(err), status_code=400, media_type="application/json")
        token = self._login_ok(grant)
        answer = {
            "access_token": token,
            "instance_url": INSTANCE,
            "id": f"https://login.salesforce.com/id/{ORG_ID}/0055g00000ABCDEAA",
            "token_type": "Bearer",
            "issued_at": "1767225600000",
            "signature": "c2lnbmF0dXJl",
        }
        return Response(json.dumps(answer), media_type="application/json")

    def _soap_login(self, body: bytes) -> Response:
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            root = None
        values = {}
        if root is not None:
            for el in root.iter():
                values[el.tag.rpartition("}")[2]] = (el.text or "").strip()
        if (
            values.get("username") == self.username
            and values.get("password") == self.password + self.security_token
        ):
            token = self._login_ok("soap")
            server = f"{INSTANCE}/services/Soap/u/{self.version}/{ORG_ID[:15]}"
            xml = (
                '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
                'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
                'xmlns="urn:partner.soap.sforce.com"><soapenv:Body><loginResponse><result>'
                f"<passwordExpired>false</passwordExpired><sandbox>false</sandbox>"
                f"<serverUrl>{server}</serverUrl><sessionId>{token}</sessionId>"
                "<userId>0055g00000ABCDEAA</userId></result></loginResponse>"
                "</soapenv:Body></soapenv:Envelope>"
            )
            return Response(xml, media_type="text/xml")
        fault = (
            '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
            'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:sf="urn:fault.partner.soap.sforce.com" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault>'
            "<faultcode>INVALID_LOGIN</faultcode><faultstring>INVALID_LOGIN: Invalid username, "
            "password, security token; or user locked out.</faultstring><detail>"
            '<sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>INVALID_LOGIN'
            "</sf:exceptionCode><sf:exceptionMessage>Invalid username, password, security "
            "token; or user locked out.</sf:exceptionMessage></sf:LoginFault></detail>"
            "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
        )
        return Response(fault, status_code=500, media_type="text/xml")

    # -- data API --------------------------------------------------------------------------

    def _limit_headers(self) -> dict[str, str]:
        with self._lock:
            self.api_used += 1
            return {"Sforce-Limit-Info": f"api-usage={self.api_used}/{self.api_max}"}

    def _data(self, request: Request, rest: str, body: bytes) -> Response:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return _errors(401, "INVALID_SESSION_ID", "Session expired or invalid")
        headers = self._limit_headers()
        with self._lock:
            forced = next((k for k in self.answer_next if k in "/" + rest), None)
            status_code = self.answer_next.pop(forced) if forced is not None else None
        if status_code is not None:
            return _errors(status_code[0], status_code[1], "forced by the test", headers)
        try:
            response = self._route(request, rest.rstrip("/"), body)
        except SoqlError as exc:
            return _errors(400, exc.code, str(exc), headers)
        response.headers.update(headers)
        return response

    def _route(self, request: Request, rest: str, body: bytes) -> Response:
        method = request.method
        if rest == "sobjects" and method == "GET":
            return _json(
                {
                    "encoding": "UTF-8",
                    "maxBatchSize": 200,
                    "sobjects": [
                        {"name": o, "label": o, "queryable": True, "custom": False} for o in FIELDS
                    ],
                }
            )
        m = re.match(r"^sobjects/(\w+)/describe$", rest)
        if m and method == "GET":
            obj = m.group(1)
            if obj not in FIELDS:
                return _errors(404, "NOT_FOUND", "The requested resource does not exist")
            fields = [
                {
                    "name": n,
                    "type": k,
                    "label": n,
                    "externalId": x,
                    "nillable": n != "Id",
                    "updateable": k not in ("id", "datetime") and n != "IsDeleted",
                }
                for n, k, x in FIELDS[obj]
            ]
            return _json({"name": obj, "label": obj, "queryable": True, "fields": fields})
        if rest in ("query", "queryAll") and method == "GET":
            return self._query(request, include_deleted=rest == "queryAll")
        m = re.match(r"^(?:query|queryAll)/([\w]+)-(\d+)$", rest)
        if m and method == "GET":
            return self._page(m.group(1), int(m.group(2)))
        if rest == "jobs/query" and method == "POST":
            return self._bulk_create(body)
        m = re.match(r"^jobs/query/(\w+)(/results)?$", rest)
        if m and method == "GET":
            job = self._jobs.get(m.group(1))
            if job is None:
                return _errors(404, "NOT_FOUND", "Could not find job")
            if m.group(2):
                return self._bulk_results(job, request)
            return self._bulk_state(job)
        if rest == "composite/sobjects" and method == "PATCH":
            return self._collections(json.loads(body), None, None)
        m = re.match(r"^composite/sobjects/(\w+)/(\w+)$", rest)
        if m and method == "PATCH":
            return self._collections(json.loads(body), m.group(1), m.group(2))
        return _errors(404, "NOT_FOUND", "The requested resource does not exist")

    def _query(self, request: Request, *, include_deleted: bool) -> Response:
        q = self.parse(request.query_params.get("q", ""))
        rows = self.run(q, include_deleted=include_deleted)
        if q.fields is None:
            return _json({"totalSize": len(rows), "done": True, "records": []})
        snapshot = [self.project(r, q) for r in rows]
        locator = "01g" + secrets.token_hex(6)
        batch = 2000
        opts = request.headers.get("sforce-query-options", "")
        found = re.search(r"batchSize=(\d+)", opts)
        if found:
            batch = max(200, min(2000, int(found.group(1))))
        with self._lock:
            self._cursors[locator] = snapshot
            self._cursors[locator + ":batch"] = [{"n": batch}]
        return self._page(locator, 0)

    def _page(self, locator: str, offset: int) -> Response:
        with self._lock:
            snapshot = self._cursors.get(locator)
            meta = self._cursors.get(locator + ":batch")
        if snapshot is None or meta is None:
            return _errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        batch = int(meta[0]["n"])
        page = snapshot[offset : offset + batch]
        nxt = offset + batch
        answer: dict[str, Any] = {
            "totalSize": len(snapshot),
            "done": nxt >= len(snapshot),
            "records": page,
        }
        if nxt < len(snapshot):
            answer["nextRecordsUrl"] = f"/services/data/v{self.version}/query/{locator}-{nxt}"
        return _json(answer)

    def _bulk_create(self, body: bytes) -> Response:
        spec = json.loads(body)
        operation = spec.get("operation")
        if operation not in ("query", "queryAll"):
            return _errors(400, "INVALIDJOB", "unsupported operation")
        q = self.parse(spec.get("query", ""))
        if q.fields is None:
            return _errors(400, "INVALIDJOB", "Aggregate queries are not supported")
        rows = [self.project(r, q) for r in self.run(q, include_deleted=operation == "queryAll")]
        if not q.order:
            # Bulk API 2.0 results come in no particular order
            rows.sort(key=lambda r: hashlib.sha256(str(r.get("Id")).encode()).hexdigest())
        job_id = "750" + secrets.token_hex(6)
        job = {
            "id": job_id,
            "operation": operation,
            "object": q.obj,
            "createdById": "0055g00000ABCDEAA",
            "createdDate": sf_stamp(self.clock),
            "state": "UploadComplete",
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.version),
            "lineEnding": spec.get("lineEnding", "LF"),
            "columnDelimiter": spec.get("columnDelimiter", "COMMA"),
        }
        with self._lock:
            self._jobs[job_id] = {
                "info": job,
                "rows": rows,
                "fields": q.fields,
                "polls": self.bulk_polls,
            }
        return _json(job)

    def _bulk_state(self, job: dict[str, Any]) -> Response:
        info = dict(job["info"])
        with self._lock:
            if job["polls"] > 0:
                job["polls"] -= 1
                info["state"] = "InProgress"
            elif self.bulk_fail:
                info["state"] = "Failed"
                info["errorMessage"] = "InternalServerError: the query timed out"
            else:
                info["state"] = "JobComplete"
                info["numberRecordsProcessed"] = len(job["rows"])
        return _json(info)

    def _bulk_results(self, job: dict[str, Any], request: Request) -> Response:
        max_records = int(request.query_params.get("maxRecords", "50000"))
        locator = request.query_params.get("locator")
        offset = int(base64.b64decode(locator).decode()) if locator else 0
        rows = job["rows"][offset : offset + max_records]
        out = io.StringIO()
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(job["fields"])
        for r in rows:
            writer.writerow([_csv_value(r.get(f)) for f in job["fields"]])
        nxt = offset + max_records
        next_locator = (
            base64.b64encode(str(nxt).encode()).decode() if nxt < len(job["rows"]) else "null"
        )
        return Response(
            out.getvalue(),
            media_type="text/csv",
            headers={"Sforce-NumberOfRecords": str(len(rows)), "Sforce-Locator": next_locator},
        )

    def _collections(
        self, payload: dict[str, Any], obj: str | None, ext_field: str | None
    ) -> Response:
        records = payload.get("records") or []
        if len(records) > 200:
            return _errors(400, "EXCEEDED_ID_LIMIT", "record limit exceeded: 200")
        results = []
        for rec in records:
            results.append(self._write_one(rec, obj, ext_field))
        return _json(results)

    def _write_one(
        self, rec: dict[str, Any], obj: str | None, ext_field: str | None
    ) -> dict[str, Any]:
        rtype = (rec.get("attributes") or {}).get("type")
        values = {k: v for k, v in rec.items() if k not in ("attributes", "id", "Id")}
        if rtype not in FIELDS or (obj is not None and rtype != obj):
            return _row_error(None, "INVALID_TYPE", "sObject type is missing or unsupported")
        known = {n: k for n, k, _x in FIELDS[rtype]}
        for value in (rec.get("id"), *values.values()):
            if isinstance(value, str) and value in self.fail_rows:
                return _row_error(rec.get("id"), self.fail_rows[value], "forced by the test")
        for name, value in values.items():
            if name not in known or known[name] in ("id", "datetime", "address"):
                return _row_error(rec.get("id"), "INVALID_FIELD", f"No such column '{name}'")
            if known[name] == "email" and value is not None and "@" not in str(value):
                return _row_error(rec.get("id"), "INVALID_EMAIL_ADDRESS", "Email: invalid email")
        with self._lock:
            table = self.records.setdefault(rtype, {})
            if ext_field is None:
                rid = str(rec.get("id") or rec.get("Id") or "")
                if rid not in table or table[rid].get("IsDeleted"):
                    return _row_error(
                        rid or None, "ENTITY_IS_DELETED", "entity is deleted or does not exist"
                    )
                self.update(rtype, rid, values)
                return {"id": rid, "success": True, "errors": []}
            key = values.get(ext_field)
            if key is None:
                return _row_error(None, "MISSING_ARGUMENT", f"{ext_field} not specified")
            matches = [r for r in table.values() if r.get(ext_field) == key and not r["IsDeleted"]]
            if len(matches) > 1:
                return _row_error(None, "DUPLICATE_EXTERNAL_ID", "more than one record matches")
            if matches:
                rid = matches[0]["Id"]
                self.update(rtype, rid, values)
                return {"id": rid, "success": True, "errors": [], "created": False}
            rid = self.insert(rtype, values)
            return {"id": rid, "success": True, "errors": [], "created": True}


def _row_error(rid: str | None, code: str, message: str) -> dict[str, Any]:
    return {
        "id": rid,
        "success": False,
        "errors": [{"statusCode": code, "message": message, "fields": []}],
    }


def _sort_value(value: Any) -> Any:
    if isinstance(value, str) and _DATETIME.match(value.replace("+0000", "Z")):
        return _parse_dt(value).isoformat()
    return value if value is not None else ""


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and re.match(r"^\d{4}-\d\d-\d\dT.*\+0000$", value):
        return value.replace("+0000", "Z")
    return str(value)


def _json(data: Any) -> Response:
    return Response(json.dumps(data), media_type="application/json")


_KEYPAIR: list[tuple[str, bytes]] = []


def rsa_keypair() -> tuple[str, bytes]:
    """A (private PEM text, public PEM bytes) pair for the JWT bearer flow (made once)."""
    if not _KEYPAIR:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _KEYPAIR.append((private, public))
    return _KEYPAIR[0]


def options_for(
    org: FakeOrg, url: str, auth: str = "client_credentials", **extra: Any
) -> dict[str, Any]:
    """Connector options that log in to ``org`` (served at ``url``) with ``auth``."""
    base: dict[str, Any] = {"auth": auth, "base_url": url, "timeout_s": 5}
    if auth == "client_credentials":
        base.update(domain="acme.my", client_id=org.client_id, client_secret=org.client_secret)
    elif auth == "jwt_bearer":
        base.update(client_id=org.client_id, username=org.username, private_key=rsa_keypair()[0])
    elif auth == "password":
        base.update(username=org.username, password=org.password, security_token=org.security_token)
    elif auth == "oauth_password":
        base.update(
            client_id=org.client_id,
            client_secret=org.client_secret,
            username=org.username,
            password=org.password,
        )
    elif auth == "session":
        base.update(session_id=org.issue_token(), instance_url=INSTANCE)
    base.update(extra)
    return base
