"""A stateful local HubSpot portal speaking CRM v3's wire format, for the real hubspot-api-client.

Serves objects (list, search, batch read/update/upsert), the properties API and the OAuth token
endpoint, with Bearer auth and HubSpot's error JSON.  ``Faults`` (``tests.fakes.server``) is
consulted before every answer: ``rate_limit`` → 429 + Retry-After, ``server_error`` → 502/503,
``expired_session`` → 401 EXPIRED_AUTHENTICATION, ``timeout`` → the answer waits ``delay_s``.

Test helpers: ``put`` places a record with a chosen modification time (at the watermark, during
a poll, skewed), ``search_cap`` lowers the search API's 10,000-result cap, ``expire_tokens``
invalidates OAuth access tokens, and ``calls`` / ``search_bodies`` log what the client sent.
Ties in a sort are ordered by a hash of the id, not by id, as nothing promises HubSpot's order.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.fakes.server import Faults

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MODIFIED = {
    "contacts": "lastmodifieddate",
    "companies": "hs_lastmodifieddate",
    "deals": "hs_lastmodifieddate",
}
SINGULAR = {"contacts": "CONTACT", "companies": "COMPANY", "deals": "DEAL"}
PRIVATE_TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"

_DATETIME = {"createdate", "lastmodifieddate", "hs_lastmodifieddate", "closedate"}
_NUMBER = {"hs_object_id", "amount", "numemployees", "annualrevenue", "hs_analytics_num_visits"}

DEFINITIONS: dict[str, list[str]] = {
    "contacts": [
        "email",
        "firstname",
        "lastname",
        "phone",
        "mobilephone",
        "company",
        "jobtitle",
        "industry",
        "website",
        "city",
        "country",
        "lifecyclestage",
        "hs_lead_status",
        "hs_analytics_source",
        "hs_analytics_num_page_views",
        "hs_analytics_num_visits",
        "hs_email_open",
        "numemployees",
        "annualrevenue",
        "associatedcompanyid",
        "createdate",
        "lastmodifieddate",
        "hs_object_id",
    ],
    "companies": [
        "name",
        "domain",
        "industry",
        "phone",
        "city",
        "country",
        "address",
        "numberofemployees",
        "annualrevenue",
        "createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
    ],
    "deals": [
        "dealname",
        "amount",
        "deal_currency_code",
        "dealstage",
        "pipeline",
        "closedate",
        "createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
    ],
}


def iso(ms: int) -> str:
    """HubSpot's timestamp text: ``2023-02-24T14:07:59.929Z``."""
    moment = EPOCH + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def ms_of(value: Any) -> int | None:
    """Milliseconds of an ISO text, ms digits, a datetime or a number."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value - EPOCH) // timedelta(milliseconds=1)
    if isinstance(value, int | float):
        return int(value)
    text = str(value)
    if text.isdigit():
        return int(text)
    try:
        return (datetime.fromisoformat(text) - EPOCH) // timedelta(milliseconds=1)
    except ValueError:
        return None


@dataclass
class FakeRecord:
    """One CRM object as the portal stores it (property values are strings or None)."""

    id: str
    properties: dict[str, str | None]
    created_ms: int
    updated_ms: int
    archived: bool = False

    def wire(self, obj: str, names: list[str] | None) -> dict[str, Any]:
        props = dict(self.properties)
        props["hs_object_id"] = self.id
        props.setdefault("createdate", iso(self.created_ms))
        props[MODIFIED[obj]] = iso(self.updated_ms)
        defaults = ["hs_object_id", "createdate", MODIFIED[obj]]
        if names is not None:
            props = {n: props.get(n) for n in dict.fromkeys([*names, *defaults])}
        return {
            "id": self.id,
            "properties": props,
            "createdAt": iso(self.created_ms),
            "updatedAt": iso(self.updated_ms),
            "archived": self.archived,
        }


def _error(status: int, message: str, category: str, **extra: Any) -> JSONResponse:
    body = {
        "status": "error",
        "message": message,
        "correlationId": "aeb5f871-7f07-4993-9211-075dc63e7cbf",
        "category": category,
        **extra,
    }
    return JSONResponse(body, status_code=status)


@dataclass
class HubSpotFake:
    """The portal's state and its FastAPI app (``serve_app(fake.app)``)."""

    faults: Faults = field(default_factory=Faults)
    search_cap: int = 10_000
    send_retry_after: bool = True  # HubSpot's 429s often come without one
    token_ttl_s: int = 1800
    clock: Callable[[], float] = time.time
    private_tokens: set[str] = field(default_factory=lambda: {PRIVATE_TOKEN})
    oauth_clients: dict[str, tuple[str, str]] = field(default_factory=dict)  # id → secret, refresh
    objects: dict[str, dict[str, FakeRecord]] = field(
        default_factory=lambda: {k: {} for k in MODIFIED}
    )
    # custom properties the portal defines besides the standard ones (e.g. a score field)
    custom_properties: dict[str, list[str]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    search_bodies: list[dict[str, Any]] = field(default_factory=list)
    batch_bodies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    token_grants: int = 0
    bearer_seen: list[str] = field(default_factory=list)
    _access: dict[str, float] = field(default_factory=dict)  # OAuth token → expiry (clock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(101))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server_errors: int = 0
    # sorted views for large portals (benchmarks): rebuilt when ``_rev`` moved
    _rev: int = 0
    _views: dict[tuple[str, str], tuple[int, list[Any], list[Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.app = self._build()

    # ---- helpers for tests
    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def put(
        self,
        obj: str,
        rid: str | int | None = None,
        *,
        updated: Any = None,
        created: Any = None,
        **properties: str | None,
    ) -> str:
        """Create or replace a record; ``updated`` is its modification time (default: now)."""
        with self._lock:
            rid = str(rid if rid is not None else next(self._ids))
            updated_ms = ms_of(updated) if updated is not None else self.now_ms()
            assert updated_ms is not None
            created_ms = ms_of(created) if created is not None else updated_ms
            assert created_ms is not None
            self.objects[obj][rid] = FakeRecord(rid, dict(properties), created_ms, updated_ms)
            self._rev += 1
            return rid

    def touch(self, obj: str, rid: str, *, updated: Any = None, **properties: str | None) -> None:
        """Change a record (its modification time moves to ``updated`` or now)."""
        with self._lock:
            record = self.objects[obj][rid]
            record.properties.update(properties)
            ms = ms_of(updated) if updated is not None else self.now_ms()
            assert ms is not None
            record.updated_ms = ms
            self._rev += 1

    def delete(self, obj: str, rid: str) -> None:
        with self._lock:
            self.objects[obj].pop(rid, None)
            self._rev += 1

    def add_oauth_client(self, client_id: str, secret: str, refresh_token: str) -> None:
        self.oauth_clients[client_id] = (secret, refresh_token)

    def expire_tokens(self) -> None:
        """Every OAuth access token issued so far is now expired."""
        with self._lock:
            for token in self._access:
                self._access[token] = 0.0

    def view(self, obj: str, order: str) -> tuple[list[Any], list[Any]]:
        """Live records of ``obj`` sorted by ``id`` or by ``modified`` (then the tie-break),
        with their sort keys; cached until a write changes the order (call under the lock)."""
        key = (obj, order)
        cached = self._views.get(key)
        if cached is not None and cached[0] == self._rev:
            return cached[1], cached[2]
        live = [r for r in self.objects[obj].values() if not r.archived]
        if order == "id":
            keyed = sorted(((int(r.id),), r) for r in live)
        else:
            keyed = sorted(((r.updated_ms, _tie(r.id)), r) for r in live)
        keys, rows = [k for k, _ in keyed], [r for _, r in keyed]
        self._views[key] = (self._rev, keys, rows)
        return keys, rows

    # ---- the app
    def _build(self) -> FastAPI:
        app = FastAPI()
        fake = self

        @app.middleware("http")
        async def faults_and_auth(request: Request, call_next: Any) -> Any:
            path = request.url.path
            fake.calls.append((request.method, path))
            kind = fake.faults.take(path)
            if kind == "timeout":
                await asyncio.sleep(fake.faults.delay_s)
            elif kind == "rate_limit":
                response = _error(
                    429,
                    "You have reached your ten_secondly_rolling limit.",
                    "RATE_LIMITS",
                    errorType="RATE_LIMIT",
                    policyName="TEN_SECONDLY_ROLLING",
                    groupName="publicapi:private-app-api-calls-10Secondly:33",
                )
                if fake.send_retry_after:
                    response.headers["Retry-After"] = f"{fake.faults.retry_after_s:g}"
                return response
            elif kind == "server_error":
                fake._server_errors += 1
                status = 502 if fake._server_errors % 2 else 503
                return _error(status, "internal error", "INTERNAL_ERROR")
            elif kind == "expired_session":
                return _error(
                    401,
                    "The OAuth token used to make this call expired 0 hour(s) ago.",
                    "EXPIRED_AUTHENTICATION",
                )
            if not path.startswith("/oauth/"):
                header = request.headers.get("authorization", "")
                token = header[7:] if header.lower().startswith("bearer ") else ""
                fake.bearer_seen.append(token)
                if token not in fake.private_tokens:
                    expires = fake._access.get(token)
                    if expires is None:
                        return _error(
                            401,
                            "Authentication credentials not found. This API supports OAuth 2.0 "
                            "authentication and you can find more details at "
                            "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                            "INVALID_AUTHENTICATION",
                        )
                    if expires <= fake.clock():
                        return _error(
                            401,
                            "The OAuth token used to make this call expired 0 hour(s) ago.",
                            "EXPIRED_AUTHENTICATION",
                        )
            return await call_next(request)

        @app.post("/oauth/v1/token")
        async def token(request: Request) -> Any:
            form = dict(parse_qsl((await request.body()).decode()))
            if form.get("grant_type") != "refresh_token":
                return JSONResponse(
                    {"status": "BAD_GRANT_TYPE", "message": "grant_type must be refresh_token"},
                    status_code=400,
                )
            client = fake.oauth_clients.get(form.get("client_id", ""))
            secret = form.get("client_secret", "")
            if client is None or not secrets.compare_digest(client[0], secret):
                return JSONResponse(
                    {"status": "BAD_CLIENT_ID", "message": "missing or unknown client_id"},
                    status_code=400,
                )
            if not secrets.compare_digest(client[1], form.get("refresh_token", "")):
                return JSONResponse(
                    {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"},
                    status_code=400,
                )
            access = f"CKXfake{secrets.token_hex(12)}"
            with fake._lock:
                fake._access[access] = fake.clock() + fake.token_ttl_s
                fake.token_grants += 1
            return {
                "token_type": "bearer",
                "refresh_token": client[1],
                "access_token": access,
                "expires_in": fake.token_ttl_s,
            }

        @app.get("/crm/v3/properties/{obj}")
        async def properties(obj: str) -> Any:
            if obj not in DEFINITIONS:
                return _error(400, f"Unable to infer object type from: {obj}", "VALIDATION_ERROR")
            return {
                "results": [
                    {
                        "name": name,
                        "label": name.replace("_", " ").title(),
                        "type": "datetime"
                        if name in _DATETIME
                        else "number"
                        if name in _NUMBER
                        else "string",
                        "fieldType": "text",
                        "groupName": f"{SINGULAR[obj].lower()}information",
                        "hidden": False,
                        "formField": True,
                    }
                    for name in DEFINITIONS[obj]
                ]
            }

        @app.get("/crm/v3/objects/{obj}")
        async def list_page(obj: str, request: Request) -> Any:
            if obj not in MODIFIED:
                return _error(400, f"Unable to infer object type from: {obj}", "VALIDATION_ERROR")
            q = request.query_params
            limit = min(int(q.get("limit", "10")), 100)
            after = int(q.get("after", "0") or 0)
            names = [n for v in q.getlist("properties") for n in v.split(",") if n] or None
            with fake._lock:
                keys, rows = fake.view(obj, "id")
                start = bisect.bisect_left(keys, (after,))
                page = rows[start : start + limit + 1]
            body: dict[str, Any] = {"results": [r.wire(obj, names) for r in page[:limit]]}
            if len(page) > limit:
                nxt = page[limit].id
                body["paging"] = {"next": {"after": nxt, "link": f"?after={nxt}"}}
            return body

        @app.post("/crm/v3/objects/{obj}/search")
        async def search(obj: str, request: Request) -> Any:
            body = await request.json()
            fake.search_bodies.append(body)
            limit = int(body.get("limit") or 10)
            if limit > 200:
                return _error(400, "limit must be at most 200", "VALIDATION_ERROR")
            after = int(body.get("after") or 0)
            if after >= fake.search_cap:
                return _error(
                    400,
                    "There was a problem with the request.",
                    "VALIDATION_ERROR",
                    errors=[{"message": f"after must be less than {fake.search_cap}"}],
                )
            groups = body.get("filterGroups") or []
            sorts = body.get("sorts") or []
            prop, descending = _sort_of(sorts[0]) if sorts else ("hs_object_id", False)
            with fake._lock:
                narrowed = _by_modified(fake, obj, groups)
                if (
                    narrowed is not None
                    and narrowed[1]
                    and prop == MODIFIED[obj]
                    and not descending
                ):
                    rows = narrowed[0]  # already in (modified, tie) order, every one a match
                else:
                    pool = narrowed[0] if narrowed is not None else fake.objects[obj].values()
                    rows = [
                        r
                        for r in pool
                        if not r.archived
                        and (not groups or any(_group_ok(obj, r, g) for g in groups))
                    ]
                    rows.sort(
                        key=lambda r: (_sort_value(obj, r, prop), _tie(r.id)), reverse=descending
                    )
            names = body.get("properties") or None
            page = rows[after : after + limit]
            answer: dict[str, Any] = {
                "total": len(rows),
                "results": [r.wire(obj, names) for r in page],
            }
            if after + limit < len(rows):
                nxt = str(after + limit)
                answer["paging"] = {"next": {"after": nxt, "link": f"?after={nxt}"}}
            return answer

        @app.post("/crm/v3/objects/{obj}/batch/read")
        async def batch_read(obj: str, request: Request) -> Any:
            body = await request.json()
            fake.batch_bodies.append(("read", body))
            inputs = body.get("inputs") or []
            if len(inputs) > 100:
                return _error(400, "Batch size must be at most 100", "VALIDATION_ERROR")
            names = body.get("properties") or None
            found, missing = [], []
            with fake._lock:
                for item in inputs:
                    record = fake.objects[obj].get(str(item.get("id")))
                    if record is None or record.archived:
                        missing.append(str(item.get("id")))
                    else:
                        found.append(record.wire(obj, names))
            return _batch_answer(obj, found, missing, "get")

        @app.post("/crm/v3/objects/{obj}/batch/update")
        async def batch_update(obj: str, request: Request) -> Any:
            body = await request.json()
            fake.batch_bodies.append(("update", body))
            inputs = body.get("inputs") or []
            if len(inputs) > 100:
                return _error(400, "Batch size must be at most 100", "VALIDATION_ERROR")
            bad = _unknown_properties(obj, inputs, self.custom_properties.get(obj, []))
            if bad:
                return _error(
                    400,
                    f'Property values were not valid: [{{"isValid":false,"name":"{bad}",'
                    '"error":"PROPERTY_DOESNT_EXIST"}]',
                    "VALIDATION_ERROR",
                )
            done, missing = [], []
            with fake._lock:
                for item in inputs:
                    record = fake.objects[obj].get(str(item.get("id")))
                    if record is None or record.archived:
                        missing.append(str(item.get("id")))
                        continue
                    record.properties.update(item.get("properties") or {})
                    record.updated_ms = fake.now_ms()
                    fake._rev += 1
                    done.append(record.wire(obj, None))
            return _batch_answer(obj, done, missing, "update")

        @app.post("/crm/v3/objects/{obj}/batch/upsert")
        async def batch_upsert(obj: str, request: Request) -> Any:
            body = await request.json()
            fake.batch_bodies.append(("upsert", body))
            inputs = body.get("inputs") or []
            if len(inputs) > 100:
                return _error(400, "Batch size must be at most 100", "VALIDATION_ERROR")
            bad = _unknown_properties(obj, inputs, self.custom_properties.get(obj, []))
            if bad:
                return _error(400, f"Property {bad} does not exist", "VALIDATION_ERROR")
            results = []
            with fake._lock:
                for item in inputs:
                    key_prop = item.get("idProperty") or "hs_object_id"
                    value = str(item.get("id", ""))
                    match = next(
                        (
                            r
                            for r in fake.objects[obj].values()
                            if _key_of(r, key_prop).lower() == value.lower()
                        ),
                        None,
                    )
                    now = fake.now_ms()
                    fake._rev += 1
                    if match is None:
                        rid = str(next(fake._ids))
                        props = {key_prop: value, **(item.get("properties") or {})}
                        match = FakeRecord(rid, props, now, now)
                        fake.objects[obj][rid] = match
                        new = True
                    else:
                        match.properties.update(item.get("properties") or {})
                        match.updated_ms = now
                        new = False
                    results.append({**match.wire(obj, None), "new": new})
            return {
                "status": "COMPLETE",
                "results": results,
                "startedAt": iso(fake.now_ms()),
                "completedAt": iso(fake.now_ms()),
            }

        return app


def _by_modified(
    fake: HubSpotFake, obj: str, groups: list[dict[str, Any]]
) -> tuple[list[FakeRecord], bool] | None:
    """Records in the range one filter group sets on the modified property, by bisection.

    Returns (candidates in (modified, tie) order, whether the range is the whole filter), or None
    when the filters do not bound the modified property (the caller scans everything).
    """
    if len(groups) != 1:
        return None
    filters = groups[0].get("filters") or []
    low, high, only = None, None, True
    for f in filters:
        op = f.get("operator")
        if f.get("propertyName") != MODIFIED[obj] or op not in ("GT", "GTE", "LT", "LTE", "EQ"):
            only = False
            continue
        ms = ms_of(f.get("value"))
        if ms is None:
            return None
        if op in ("GT", "GTE", "EQ"):
            lo = ms + 1 if op == "GT" else ms
            low = lo if low is None else max(low, lo)
        if op in ("LT", "LTE", "EQ"):
            hi = ms - 1 if op == "LT" else ms
            high = hi if high is None else min(high, hi)
    if low is None and high is None:
        return None
    keys, rows = fake.view(obj, "modified")
    start = 0 if low is None else bisect.bisect_left(keys, (low,))
    end = len(rows) if high is None else bisect.bisect_left(keys, (high + 1,))
    return rows[start:end], only


def _key_of(record: FakeRecord, prop: str) -> str:
    return record.id if prop == "hs_object_id" else record.properties.get(prop) or ""


def _tie(rid: str) -> str:
    return hashlib.md5(rid.encode(), usedforsecurity=False).hexdigest()


def _value(obj: str, record: FakeRecord, prop: str) -> Any:
    if prop == "hs_object_id":
        return int(record.id)
    if prop == MODIFIED[obj]:
        return record.updated_ms
    if prop == "createdate":
        return ms_of(record.properties.get("createdate")) or record.created_ms
    return record.properties.get(prop)


def _typed(prop: str, value: Any) -> Any:
    if prop in _DATETIME:
        return ms_of(value)
    if prop in _NUMBER:
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    return None if value is None else str(value)


def _sort_value(obj: str, record: FakeRecord, prop: str) -> Any:
    value = _value(obj, record, prop)
    typed = _typed(prop, value)
    return (
        (typed is None, typed if typed is not None else 0)
        if prop in _DATETIME | _NUMBER
        else (value is None, str(value or ""))
    )


def _filter_ok(obj: str, record: FakeRecord, f: dict[str, Any]) -> bool:
    prop = f.get("propertyName", "")
    op = f.get("operator", "EQ")
    have = _typed(prop, _value(obj, record, prop))
    if op == "HAS_PROPERTY":
        return have is not None
    if op == "NOT_HAS_PROPERTY":
        return have is None
    if op in ("IN", "NOT_IN"):
        wanted = {_typed(prop, v) for v in f.get("values") or []}
        return (have in wanted) == (op == "IN")
    want = _typed(prop, f.get("value"))
    if have is None or want is None:
        return False
    if op == "EQ":
        return bool(have == want)
    if op == "NEQ":
        return bool(have != want)
    return bool(
        {"GT": have > want, "GTE": have >= want, "LT": have < want, "LTE": have <= want}[op]
    )


def _group_ok(obj: str, record: FakeRecord, group: dict[str, Any]) -> bool:
    return all(_filter_ok(obj, record, f) for f in group.get("filters") or [])


def _sort_of(sort: Any) -> tuple[str, bool]:
    if isinstance(sort, str):
        return sort.lstrip("-"), sort.startswith("-")
    return sort.get("propertyName", "hs_object_id"), sort.get("direction") == "DESCENDING"


def _unknown_properties(obj: str, inputs: list[dict[str, Any]], custom: list[str]) -> str | None:
    known = set(DEFINITIONS[obj]) | set(custom)
    for item in inputs:
        for name in item.get("properties") or {}:
            if name not in known:
                return str(name)
    return None


def _batch_answer(obj: str, results: list[Any], missing: list[str], verb: str) -> JSONResponse:
    now = iso(int(time.time() * 1000))
    body: dict[str, Any] = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": now,
        "completedAt": now,
    }
    if not missing:
        return JSONResponse(body, status_code=200)
    body["numErrors"] = 1
    body["errors"] = [
        {
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": f"Could not {verb} some {SINGULAR[obj]} objects, they may be deleted or "
            "not exist. Check that ids are valid.",
            "context": {"ids": missing},
        }
    ]
    return JSONResponse(json.loads(json.dumps(body)), status_code=207)
