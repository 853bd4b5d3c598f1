"""The only module that talks to HubSpot: the hubspot-api-client SDK, auth, error translation.

Every call goes through the SDK (``HubSpot(access_token=..., host=base_url, retry=...)``) with
``_preload_content=False``: the SDK builds the request, authenticates it and raises on a non-2xx
status, and this module reads the wire JSON itself, so records keep HubSpot's exact shape
(``id``, ``properties``, ``createdAt``, ``updatedAt``, ``archived``) and the SDK never logs a
response body (it would at DEBUG with preloading: personal data, and OAuth tokens).

urllib3's retry is off: a 429 or a 5xx becomes a typed error at once and the hub's one retry
policy decides (``RateLimitedError.retry_after`` carries HubSpot's Retry-After).

Translation table:

| HubSpot answer | error |
|---|---|
| 401, 403 (after one token refresh for OAuth) | ``AuthError`` |
| 429 | ``RateLimitedError(retry_after=Retry-After)``; without it, by ``policyName`` |
| 408, 423, 5xx | ``UnavailableError`` |
| connect or read timeout | ``RemoteTimeoutError`` |
| connection refused or reset, TLS failure, a body that is not JSON | ``UnavailableError`` |
| other 4xx | ``FatalError`` |

Messages name the operation and the status; ``details`` add HubSpot's error category and
correlation id, never the body's message (it may quote record values) nor a token.
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import urllib3
from hubspot import HubSpot
from hubspot.crm.objects import (
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInput,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectId,
)
from hubspot.crm.objects.exceptions import ApiException as ObjectsApiException
from hubspot.crm.properties.exceptions import ApiException as PropertiesApiException
from hubspot.oauth.exceptions import ApiException as OAuthApiException
from urllib3.util.retry import Retry

from connectors.hubspot.config import HubSpotConnection as HubSpotConnection  # re-exported
from junction.core.errors import (
    AuthError,
    FatalError,
    JunctionError,
    RateLimitedError,
    RemoteTimeoutError,
    UnavailableError,
)

JsonObject = dict[str, Any]

_API_EXCEPTIONS = (ObjectsApiException, PropertiesApiException, OAuthApiException)
# refresh an OAuth access token this long before HubSpot says it expires
REFRESH_MARGIN_S = 60.0


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """One search filter: ``propertyName operator value`` (or ``values`` for IN)."""

    property: str
    operator: str  # EQ, GT, GTE, LT, LTE, IN, ...
    value: str | None = None
    values: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """A 2xx answer: its status (200, 201, 207) and JSON body."""

    status: int
    body: JsonObject


class _Response(Protocol):
    status: int
    data: bytes

    def release_conn(self) -> None: ...


class HubSpotClient:
    """A HubSpot CRM v3 session: objects, search, batch, properties, OAuth tokens."""

    def __init__(self, conn: HubSpotConnection, *, clock: Callable[[], float] = time.time) -> None:
        """Build the SDK clients (no network until the first call)."""
        self._conn = conn
        self._clock = clock
        self._timeout = conn.timeout_s
        self._lock = threading.Lock()
        self._closed = False
        self._access_token: str | None = (
            conn.access_token.get_secret_value() if conn.access_token is not None else None
        )
        self._refresh_token: str | None = (
            conn.refresh_token.get_secret_value() if conn.refresh_token is not None else None
        )
        self._expires_at = 0.0
        self._refreshes = 0
        # no urllib3 retries: every failure is typed at once; the hub owns the retry policy
        api = HubSpot(
            access_token=self._access_token,
            host=conn.base_url.rstrip("/"),
            retry=Retry(total=0, redirect=0, raise_on_redirect=False),
        )
        crm = api.crm
        self._search = crm.objects.search_api
        self._basic = crm.objects.basic_api
        self._batch = crm.objects.batch_api
        self._properties = crm.properties.core_api
        self._tokens = api.oauth.tokens_api
        self._apis = (self._search, self._basic, self._batch, self._properties, self._tokens)

    @property
    def token_refreshes(self) -> int:
        """How many OAuth access tokens this client obtained (for tests and metrics)."""
        return self._refreshes

    def list_page(
        self, object_type: str, *, limit: int, after: str | None, properties: list[str]
    ) -> JsonObject:
        """One page of ``GET /crm/v3/objects/{object}`` (basic list, paged by ``after``)."""
        kwargs: dict[str, Any] = {"limit": limit, "archived": False}
        if after is not None:
            kwargs["after"] = after
        if properties:
            kwargs["properties"] = properties
        return self._call("list", lambda k: self._basic.get_page(object_type, **kwargs, **k)).body

    def search(
        self,
        object_type: str,
        *,
        filter_groups: list[list[SearchFilter]],
        sort_property: str,
        properties: list[str],
        limit: int,
        after: str | None = None,
    ) -> JsonObject:
        """One page of ``POST /crm/v3/objects/{object}/search``, sorted ascending."""
        request = PublicObjectSearchRequest(
            filter_groups=[
                FilterGroup(filters=[_sdk_filter(f) for f in group]) for group in filter_groups
            ],
            sorts=[{"propertyName": sort_property, "direction": "ASCENDING"}],
            properties=properties,
            limit=limit,
            after=after,
        )
        return self._call(
            "search",
            lambda k: self._search.do_search(object_type, request, **k),
        ).body

    def batch_read(self, object_type: str, ids: list[str], properties: list[str]) -> JsonObject:
        """``POST /crm/v3/objects/{object}/batch/read`` (≤ 100 ids; missing ids are errors)."""
        request = BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=i) for i in ids],
            properties=properties,
            properties_with_history=[],
        )
        return self._call(
            "batch read",
            lambda k: self._batch.read(object_type, request, archived=False, **k),
        ).body

    def batch_update(self, object_type: str, inputs: list[tuple[str, dict[str, str]]]) -> Answer:
        """``POST …/batch/update`` of ``(id, properties)``; 207 carries per-record errors."""
        request = BatchInputSimplePublicObjectBatchInput(
            inputs=[SimplePublicObjectBatchInput(id=i, properties=p) for i, p in inputs]
        )
        return self._call("batch update", lambda k: self._batch.update(object_type, request, **k))

    def batch_upsert(
        self, object_type: str, id_property: str, inputs: list[tuple[str, dict[str, str]]]
    ) -> Answer:
        """``POST …/batch/upsert`` of ``(value of id_property, properties)``."""
        request = BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[
                SimplePublicObjectBatchInputUpsert(id_property=id_property, id=i, properties=p)
                for i, p in inputs
            ]
        )
        return self._call("batch upsert", lambda k: self._batch.upsert(object_type, request, **k))

    def property_definitions(self, object_type: str) -> list[JsonObject]:
        """``GET /crm/v3/properties/{object}``: name, type, fieldType, ... of every property."""
        body = self._call(
            "properties",
            lambda k: self._properties.get_all(object_type, archived=False, **k),
        ).body
        results = body.get("results")
        if not isinstance(results, list):
            raise UnavailableError(
                "HubSpot answered the properties request without results",
                details="properties: no 'results' list",
            )
        return [r for r in results if isinstance(r, dict)]

    def close(self) -> None:
        """Close the SDK's connection pools; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for api in self._apis:
            api.api_client.rest_client.pool_manager.clear()

    def _call(self, what: str, send: Callable[[dict[str, Any]], Any]) -> Answer:
        """Run one SDK call with a fresh token; for OAuth, refresh once after a 401."""
        if self._closed:
            raise FatalError("the HubSpot client is closed", details=what)
        if self._conn.uses_oauth:
            self._ensure_token()
        stale = self._access_token
        try:
            return self._send(what, send)
        except AuthError as exc:
            if not self._conn.uses_oauth or exc.context.get("status") != 401:
                raise
        # the token was revoked or expired early: one refresh, one retry
        self._refresh(stale)
        return self._send(what, send)

    def _send(self, what: str, send: Callable[[dict[str, Any]], Any]) -> Answer:
        try:
            # raw answers: the wire JSON, and nothing for the SDK to log at DEBUG
            response: _Response = send(
                {"_preload_content": False, "_request_timeout": self._timeout}
            )
            try:
                data = response.data
            finally:
                response.release_conn()
        except _API_EXCEPTIONS as exc:
            raise _translate_status(what, exc) from None
        except urllib3.exceptions.HTTPError as exc:
            raise _translate_transport(what, exc, self._timeout) from None
        try:
            body = json.loads(data) if data else {}
        except ValueError:
            raise UnavailableError(
                f"HubSpot answered the {what} request with a body that is not JSON",
                details=f"{what}: HTTP {response.status}, {len(data)} bytes",
            ) from None
        if not isinstance(body, dict):
            raise UnavailableError(
                f"HubSpot answered the {what} request with unexpected JSON",
                details=f"{what}: HTTP {response.status}, {type(body).__name__}",
            )
        return Answer(response.status, body)

    def _ensure_token(self) -> None:
        if self._access_token is None or self._clock() >= self._expires_at - REFRESH_MARGIN_S:
            self._refresh(self._access_token)

    def _refresh(self, stale: str | None) -> None:
        """Replace the access token ``stale`` with a new one from the refresh-token grant."""
        with self._lock:
            fresh = self._clock() < self._expires_at - REFRESH_MARGIN_S
            if self._access_token != stale and fresh:
                return  # another thread refreshed it meanwhile
            conn = self._conn
            assert conn.client_secret is not None  # checked by the config
            secret = conn.client_secret.get_secret_value()
            answer = self._send(
                "token refresh",
                lambda k: self._tokens.create(
                    grant_type="refresh_token",
                    client_id=conn.client_id,
                    client_secret=secret,
                    refresh_token=self._refresh_token,
                    **k,
                ),
            )
            token = answer.body.get("access_token")
            expires_in = answer.body.get("expires_in")
            if not isinstance(token, str) or not token or not isinstance(expires_in, int | float):
                raise AuthError(
                    "HubSpot's token endpoint answered without an access token",
                    details="token refresh: no access_token/expires_in",
                )
            rotated = answer.body.get("refresh_token")
            if isinstance(rotated, str) and rotated:
                self._refresh_token = rotated
            self._access_token = token
            self._expires_at = self._clock() + float(expires_in)
            self._refreshes += 1
            for api in self._apis:
                api.api_client.configuration.access_token = token


def _sdk_filter(f: SearchFilter) -> Any:
    if f.values is not None:
        return Filter(property_name=f.property, operator=f.operator, values=list(f.values))
    return Filter(property_name=f.property, operator=f.operator, value=f.value)


def _error_fields(body: Any) -> tuple[str | None, str | None]:
    """HubSpot's error ``category`` (or ``status`` / ``errorType``) and ``correlationId``."""
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        return None, None
    if not isinstance(parsed, dict):
        return None, None
    category = parsed.get("category") or parsed.get("errorType") or parsed.get("status")
    cid = parsed.get("correlationId")
    return (
        category if isinstance(category, str) else None,
        cid if isinstance(cid, str) else None,
    )


# HubSpot's 429 often has no Retry-After; its policy says which window ran out
_POLICY_WAIT_S = {"SECONDLY": 1.0, "TEN_SECONDLY_ROLLING": 10.0, "DAILY": 3600.0}


def _policy_of(body: Any) -> str | None:
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        return None
    policy = parsed.get("policyName") if isinstance(parsed, dict) else None
    return policy if isinstance(policy, str) else None


def retry_after_of(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _translate_status(what: str, exc: Any) -> JunctionError:
    status = int(getattr(exc, "status", 0) or 0)
    category, cid = _error_fields(getattr(exc, "body", None))
    details = f"{what}: HTTP {status}, category={category}, correlationId={cid}"
    ctx = {"status": status, "operation": what}
    if status in (401, 403):
        message = (
            "HubSpot rejected the credentials"
            if status == 401
            else "HubSpot refused access: the app lacks a scope"
        )
        return AuthError(f"{message} ({what}, HTTP {status})", details=details, context=ctx)
    if status == 400 and what == "token refresh":
        return AuthError(
            "HubSpot refused the OAuth refresh token or client credentials",
            details=details,
            context=ctx,
        )
    if status == 429:
        wait = retry_after_of(getattr(exc, "headers", None))
        if wait is None:
            wait = _POLICY_WAIT_S.get(_policy_of(getattr(exc, "body", None)) or "")
        return RateLimitedError(
            f"HubSpot rate limit reached ({what})", retry_after=wait, details=details, context=ctx
        )
    if status in (408, 423) or status >= 500 or status == 0:
        return UnavailableError(
            f"HubSpot is unavailable ({what}, HTTP {status})", details=details, context=ctx
        )
    return FatalError(
        f"HubSpot refused the {what} request (HTTP {status}, {category or 'no category'})",
        details=details,
        context=ctx,
    )


def _translate_transport(what: str, exc: Exception, timeout: float) -> JunctionError:
    reason: Exception = exc
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        reason = exc.reason
    details = f"{what}: {type(reason).__name__}"
    # NewConnectionError subclasses ConnectTimeoutError in urllib3 2: a refusal is no timeout
    if isinstance(reason, urllib3.exceptions.TimeoutError) and not isinstance(
        reason, urllib3.exceptions.NewConnectionError
    ):
        return RemoteTimeoutError(
            f"HubSpot did not answer the {what} request within {timeout:g} s", details=details
        )
    return UnavailableError(f"HubSpot could not be reached ({what})", details=details)
