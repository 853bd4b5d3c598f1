"""The one module that talks to simple-salesforce (and requests): login, REST, Bulk 2.0.

Every call goes through :meth:`SalesforceClient._run`, which logs in lazily, re-logs in once when
a login-based session expired, stops before the org's daily API limit is exhausted, and turns
the SDK's exceptions into Junction's taxonomy:

* login refused (``SalesforceAuthenticationFailed``) → ``AuthError``; a 429 or an outage on
  the login itself → ``RateLimitedError`` / ``UnavailableError``
* 401 ``INVALID_SESSION_ID`` → re-login and retry once (login-based auth), else ``AuthError``
* 403 ``REQUEST_LIMIT_EXCEEDED``, 429 → ``RateLimitedError(retry_after=Retry-After)`` (one hour
  for the daily limit when Salesforce gives none)
* 403 other (``INSUFFICIENT_ACCESS``, ``API_DISABLED_FOR_ORG``) → ``AuthError``: a permission
* 400 ``INVALID_TYPE`` / ``INVALID_FIELD``, describe 404 → ``ConfigError``
* 408, a requests timeout → ``RemoteTimeoutError``
* 500 → ``RetryableError``; 502/503/504, connection refused or reset → ``UnavailableError``
* other 4xx, 300, a failed Bulk 2.0 job, an unreadable answer → ``FatalError``
* ``Sforce-Limit-Info`` api-usage at or over the configured share → ``RateLimitedError``
  before the next request

User messages never hold response bodies (they may carry record values); those go to
``details``.  Secrets are never put in either.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import jwt
import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.bulk2 import Operation, SFBulk2Handler, _Bulk2Client
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceOperationError,
)

from connectors.salesforce.config import SalesforceConnection
from junction.core.errors import (
    AuthError,
    ConfigError,
    FatalError,
    InternalError,
    JunctionError,
    RateLimitedError,
    RemoteTimeoutError,
    RetryableError,
    UnavailableError,
)

__all__ = ["SalesforceClient", "SalesforceConnection", "translate_status"]

T = TypeVar("T")
_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")
# an org past its daily limit recovers as the 24 h window rolls; look again in an hour
USAGE_RETRY_AFTER_S = 3600.0
# login answers that mean "the server", not "your credentials"
_SERVER_CODES = frozenset(
    {
        "SERVER_UNAVAILABLE",
        "UNKNOWN_EXCEPTION",
        "server_error",
        "temporarily_unavailable",
        "unavailable",
    }
)


class _Session(requests.Session):
    """A requests session that may send every URL to ``base_url`` (CLIENTS.md recipe B).

    simple-salesforce always builds ``https://<instance>/...`` and ``https://login...`` URLs;
    rewriting them here points the real SDK at a local fake or a proxy.  The session also sets
    the per-request timeout and remembers the last answer's status and headers, which the SDK's
    exceptions drop (Retry-After, Sforce-Limit-Info).
    """

    def __init__(self, base_url: str | None, timeout_s: float) -> None:
        super().__init__()
        self._base = base_url
        self._timeout = timeout_s
        if base_url is not None:
            self.trust_env = False  # a fake or proxy is explicit: no environment proxies
        self.last_status: int | None = None
        self.last_headers: dict[str, str] = {}
        self.usage: tuple[int, int] | None = None
        self.usage_at = 0.0  # time.monotonic() of the usage sample

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        url = url if isinstance(url, str) else url.decode()
        if self._base is not None:
            parts = urlsplit(url)
            url = self._base + urlunsplit(("", "", parts.path, parts.query, ""))
        kwargs.setdefault("timeout", self._timeout)
        self.last_status, self.last_headers = None, {}
        verb = method if isinstance(method, str) else method.decode()
        response = super().request(verb, url, *args, **kwargs)
        self.last_status = response.status_code
        self.last_headers = dict(response.headers)
        found = _LIMIT_INFO.search(response.headers.get("Sforce-Limit-Info", ""))
        if found:
            self.usage = (int(found.group(1)), int(found.group(2)))
            self.usage_at = time.monotonic()
        return response


def _retry_after(headers: dict[str, str]) -> float | None:
    value = headers.get("Retry-After") or headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _error_code(content: Any) -> str:
    # Salesforce errors are a JSON list of {"message", "errorCode", "fields"}
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("errorCode", ""))
    if isinstance(content, dict):
        return str(content.get("errorCode") or content.get("error") or "")
    return ""


def translate_status(
    status: int, code: str, headers: dict[str, str], *, details: str | None = None
) -> JunctionError:
    """Map an HTTP status and Salesforce errorCode to the taxonomy (the table above)."""
    ctx = {"status": status, "error_code": code} if code else {"status": status}
    if status == 429 or (status == 403 and code == "REQUEST_LIMIT_EXCEEDED"):
        retry_after = _retry_after(headers)
        if retry_after is None and status == 403:
            retry_after = USAGE_RETRY_AFTER_S  # the org's 24 h limit: no sooner than an hour
        return RateLimitedError(
            "Salesforce asked us to slow down (API request limit)",
            retry_after=retry_after,
            details=details,
            context=ctx,
        )
    if status == 401:
        return AuthError(
            "Salesforce refused the session (expired or invalid credentials)",
            details=details,
            context=ctx,
        )
    if status == 403:
        return AuthError(
            "Salesforce refused the request: the user lacks a permission",
            details=details,
            context=ctx,
        )
    if status == 408:
        return RemoteTimeoutError("Salesforce timed out", details=details, context=ctx)
    if status == 500:
        return RetryableError(
            "Salesforce failed with an internal error", details=details, context=ctx
        )
    if status >= 500:
        return UnavailableError(
            "Salesforce is unavailable",
            retry_after=_retry_after(headers),
            details=details,
            context=ctx,
        )
    if status == 400 and code in ("INVALID_TYPE", "INVALID_FIELD", "NOT_FOUND"):
        return ConfigError(
            "Salesforce does not know a configured object or field", details=details, context=ctx
        )
    return FatalError("Salesforce rejected the request", details=details, context=ctx)


class SalesforceClient:
    """A logged-in Salesforce org, reached through simple-salesforce.

    Args:
        connection: how to log in (the shared ``SalesforceConnection`` model).
        max_api_usage: stop before a request once the daily API usage reached this share.
    """

    def __init__(self, connection: SalesforceConnection, *, max_api_usage: float = 1.0) -> None:
        self.connection = connection
        self.max_api_usage = max_api_usage
        self._session = _Session(connection.base_url, connection.timeout_s)
        self._sf: Salesforce | None = None
        self.logins = 0

    @property
    def login_based(self) -> bool:
        """True when the client can log in again (every method but a given session)."""
        return self.connection.auth != "session"

    @property
    def api_usage(self) -> tuple[int, int] | None:
        """The last (used, total) of the org's daily API requests, when Salesforce said."""
        return self._session.usage

    def close(self) -> None:
        """Close the HTTP session; safe to call twice."""
        self._sf = None
        self._session.close()

    def _login(self) -> Salesforce:
        c = self.connection
        secret = _secret
        common: dict[str, Any] = {
            "session": self._session,
            "version": c.api_version,
            "domain": c.domain,
            "object_pairs_hook": dict,
        }
        if c.auth == "session":
            sf = Salesforce(session_id=secret(c.session_id), instance_url=c.instance_url, **common)
        elif c.auth == "password":
            sf = Salesforce(
                username=c.username,
                password=secret(c.password),
                security_token=secret(c.security_token),
                **common,
            )
        elif c.auth == "oauth_password":
            sf = Salesforce(
                username=c.username,
                password=secret(c.password),
                consumer_key=c.client_id,
                consumer_secret=secret(c.client_secret),
                **common,
            )
        elif c.auth == "jwt_bearer":
            sf = Salesforce(
                username=c.username,
                consumer_key=c.client_id,
                privatekey=secret(c.private_key),
                **common,
            )
        else:
            sf = Salesforce(
                consumer_key=c.client_id, consumer_secret=secret(c.client_secret), **common
            )
        self.logins += 1
        return sf

    def _connected(self) -> Salesforce:
        if self._sf is None:
            try:
                self._sf = self._login()
            except SalesforceAuthenticationFailed as exc:
                raise self._login_error(exc) from None
            except (ValueError, TypeError, jwt.PyJWTError) as exc:
                # PyJWT refuses an unreadable private key
                raise ConfigError(
                    "the Salesforce credentials are unusable (check the private key)",
                    details=type(exc).__name__,
                ) from None
        return self._sf

    def _login_error(self, exc: SalesforceAuthenticationFailed) -> JunctionError:
        # SOAP login faults (INVALID_LOGIN) come with HTTP 500: the fault code decides; a code
        # that is the bare status means the SDK could not read the body (a proxy, an outage)
        status = self._session.last_status or 0
        code = exc.code
        details = f"code={code}"
        if status == 429 or code == "REQUEST_LIMIT_EXCEEDED":
            return translate_status(429, "", self._session.last_headers, details=details)
        if status >= 500 and (not isinstance(code, str) or code in _SERVER_CODES):
            return translate_status(status, "", self._session.last_headers, details=details)
        return AuthError(
            "Salesforce refused the login", details=details, context={"auth": self.connection.auth}
        )

    def guard(self) -> None:
        """Raise ``RateLimitedError`` when the org's daily API usage passed the configured share.

        Raises:
            RateLimitedError: usage/total >= ``max_api_usage``.
        """
        usage = self._session.usage
        if usage is None or usage[1] <= 0:
            return
        if time.monotonic() - self._session.usage_at > USAGE_RETRY_AFTER_S:
            return  # an old sample: the 24 h window has rolled on, let a request look again
        if usage[0] / usage[1] >= self.max_api_usage:
            raise RateLimitedError(
                "the org's daily API usage reached the configured share; reading stops to "
                "leave the rest to other integrations",
                retry_after=USAGE_RETRY_AFTER_S,
                context={"used": usage[0], "total": usage[1], "share": self.max_api_usage},
            )

    def _run(self, call: Callable[[Salesforce], T]) -> T:
        self.guard()
        for attempt in (1, 2):
            try:
                return call(self._connected())
            except SalesforceExpiredSession as exc:
                if attempt == 1 and self.login_based:
                    self._sf = None  # the SDK re-logs REST calls itself; Bulk 2.0 needs this
                    continue
                raise translate_status(401, _error_code(exc.content), {}) from None
            except SalesforceAuthenticationFailed as exc:
                raise self._login_error(exc) from None
            except SalesforceError as exc:
                raise translate_status(
                    exc.status,
                    _error_code(exc.content),
                    self._session.last_headers,
                    details=f"{exc.resource_name}: {str(exc.content)[:300]}",
                ) from None
            except SalesforceOperationError as exc:
                raise FatalError(
                    "a Salesforce Bulk API 2.0 job failed", details=str(exc)[:300]
                ) from None
            except requests.Timeout:
                raise RemoteTimeoutError(
                    "Salesforce did not answer in time",
                    context={"timeout_s": self.connection.timeout_s},
                ) from None
            except requests.ConnectionError as exc:
                raise UnavailableError(
                    "Salesforce could not be reached", details=type(exc).__name__
                ) from None
            except (KeyError, ValueError) as exc:
                # an answer without the fields the SDK expects (a proxy's HTML page, ...)
                raise FatalError(
                    "Salesforce sent an answer that could not be read", details=repr(exc)[:300]
                ) from None
        raise InternalError("the Salesforce call loop ended without an answer")

    # -- REST ------------------------------------------------------------------------------

    def describe_global(self) -> list[dict[str, Any]]:
        """The org's sObjects (``GET /sobjects``)."""
        result = self._run(lambda sf: sf.describe())
        return list((result or {}).get("sobjects", []))

    def describe(self, sobject: str) -> dict[str, Any]:
        """One sObject's describe (``GET /sobjects/{name}/describe``).

        Raises:
            ConfigError: the org has no such object (or hides it from this user).
        """
        try:
            result: dict[str, Any] = self._run(lambda sf: getattr(sf, sobject).describe())
        except FatalError as exc:
            if exc.context.get("status") == 404:
                raise ConfigError(
                    f"Salesforce has no object {sobject} visible to this user",
                    context={"object": sobject},
                ) from None
            raise
        return dict(result)

    def count(self, soql: str, *, include_deleted: bool = False) -> int:
        """The ``totalSize`` of a ``SELECT COUNT() ...`` query."""
        result = self._run(lambda sf: sf.query(soql, include_deleted=include_deleted))
        return int(result["totalSize"])

    def query_pages(
        self, soql: str, *, include_deleted: bool, page_size: int
    ) -> Iterator[list[dict[str, Any]]]:
        """The records of ``soql``, one list per result page (``nextRecordsUrl`` paging)."""
        headers = {"Sforce-Query-Options": f"batchSize={page_size}"}
        result = self._run(
            lambda sf: sf.query(soql, include_deleted=include_deleted, headers=headers)
        )
        while True:
            yield [dict(r) for r in result.get("records", [])]
            next_url = result.get("nextRecordsUrl")
            if result.get("done", True) or not next_url:
                return
            result = self._run(_more(next_url, headers))

    # -- Bulk API 2.0 ----------------------------------------------------------------------

    def bulk_query_start(self, soql: str, *, include_deleted: bool, poll_s: float) -> str:
        """Create a Bulk API 2.0 query job, wait until it completes, and return its id."""
        operation = Operation.query_all if include_deleted else Operation.query
        job = self._run(lambda sf: _bulk2(sf).create_job(operation, soql))
        job_id = str(job["id"])
        self._run(lambda sf: _bulk2(sf).wait_for_job(job_id, True, poll_s))
        return job_id

    def bulk_query_page(self, job_id: str, locator: str, max_records: int) -> tuple[str, str]:
        """One CSV page of a completed query job and the locator of the next ('' at the end)."""
        result = self._run(lambda sf: _bulk2(sf).get_query_results(job_id, locator, max_records))
        return str(result["records"]), str(result["locator"] or "")

    # -- sObject Collections -------------------------------------------------------------------

    def collections_update(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``PATCH /composite/sobjects``: update up to 200 records by Id, one result each."""
        body = json.dumps({"allOrNone": False, "records": records}, default=_json_value)
        result = self._run(lambda sf: sf.restful("composite/sobjects", method="PATCH", data=body))
        return [dict(r) for r in (result or [])]

    def collections_upsert(
        self, sobject: str, external_field: str, records: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """``PATCH /composite/sobjects/{sobject}/{field}``: upsert by an external id."""
        body = json.dumps({"allOrNone": False, "records": records}, default=_json_value)
        path = f"composite/sobjects/{sobject}/{external_field}"
        result = self._run(lambda sf: sf.restful(path, method="PATCH", data=body))
        return [dict(r) for r in (result or [])]


def _json_value(value: Any) -> Any:
    # values a scored record carries that JSON lacks: decimals as numbers, times as ISO-8601
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} cannot be written to Salesforce")


def _more(next_url: str, headers: dict[str, str]) -> Callable[[Salesforce], Any]:
    def call(sf: Salesforce) -> Any:
        return sf.query_more(next_url, identifier_is_url=True, headers=headers)

    return call


def _bulk2(sf: Salesforce) -> _Bulk2Client:
    # the SDK's public query() hides the Sforce-Locator, which a resumable read must keep, so
    # jobs are driven through the client the public API wraps (object name unused by queries)
    handler = SFBulk2Handler(sf.session_id, sf.bulk2_url, session=sf.session)
    return _Bulk2Client("Query", sf.bulk2_url, handler.headers, sf.session)


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())
