"""The one module that talks to zeep (and requests) for the SOAP connectors.

The client loads the WSDL from a **local file only**: the transport's loader refuses every
non-local URL, and ``Settings(forbid_external=True)`` refuses remote imports before any
connection is attempted, so a WSDL importing ``http://…`` fails with a ``ConfigError`` and no
request leaves the process.  Answers are parsed with ``strict=True``, ``forbid_dtd``,
``forbid_entities`` and ``forbid_external``.  Calls go to the configured ``address`` (never the
WSDL's ``soap:address``), over the SOAP 1.1 or 1.2 binding, with HTTP Basic on the UTF-8 bytes
of the credentials or a WS-Security UsernameToken.

Error translation (user messages never hold answer bodies; fault texts go to ``details``):

| condition | error |
|---|---|
| WSDL missing, unreadable, remote import, unknown operation or parameter | ``ConfigError`` |
| HTTP 401 / 403 | ``AuthError`` |
| HTTP 429 | ``RateLimitedError`` (``retry_after`` from Retry-After) |
| HTTP 408, read or connect timeout | ``RemoteTimeoutError`` |
| HTTP 502 / 503 / 504, connection refused or reset | ``UnavailableError`` |
| SOAP server fault (``Server`` / ``Receiver``), HTTP 500 without a fault | ``UnavailableError`` |
| SOAP client fault (``Client`` / ``Sender``) or any other fault code | ``FatalError`` |
| DOCTYPE or entity in an answer | ``FatalError`` (``dtd_forbidden`` / ``entities_forbidden``) |
| other 4xx, an answer that does not fit the WSDL | ``FatalError`` |
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

import requests
from requests.auth import HTTPBasicAuth
from zeep import Client, Settings, Transport
from zeep import exceptions as zx
from zeep.helpers import serialize_object
from zeep.wsdl.bindings.soap import Soap11Binding, Soap12Binding
from zeep.wsse.username import UsernameToken

from connectors.soap.config import SoapConnection
from junction.core.errors import (
    AuthError,
    ConfigError,
    FatalError,
    JunctionError,
    RateLimitedError,
    RemoteTimeoutError,
    UnavailableError,
)

__all__ = ["SoapClient", "plain"]

T = TypeVar("T")


class _RemoteDocument(Exception):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def translate_status(status: int, headers: Any, *, details: str | None = None) -> JunctionError:
    """Map an HTTP status of a SOAP answer to the taxonomy (the table above)."""
    ctx = {"status": status}
    if status in (401, 403):
        return AuthError("the SOAP service refused the credentials", details=details, context=ctx)
    if status == 429:
        return RateLimitedError(
            "the SOAP service asked us to slow down",
            retry_after=_retry_after(headers),
            details=details,
            context=ctx,
        )
    if status == 408:
        return RemoteTimeoutError("the SOAP service timed out", details=details, context=ctx)
    if status >= 500:
        return UnavailableError(
            f"the SOAP service is unavailable (HTTP {status})", details=details, context=ctx
        )
    return FatalError(
        f"the SOAP service rejected the call (HTTP {status})", details=details, context=ctx
    )


class _LocalTransport(Transport):
    """Loads documents from local files only; turns HTTP failures into Junction errors."""

    def __init__(self, session: requests.Session, timeout_s: float) -> None:
        super().__init__(session=session, timeout=timeout_s, operation_timeout=timeout_s)  # type: ignore[no-untyped-call]
        # zeep logs every envelope (a UsernameToken's password, record values) at DEBUG: its
        # transport gets a logger outside the logging tree, above every level, that never emits
        self.logger = logging.Logger("connectors.soap.wire", logging.CRITICAL + 1)

    def load(self, url: str) -> bytes:
        parsed = urlparse(url)
        if parsed.scheme == "file":
            path = unquote(parsed.path)
        elif parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
            path = url
        else:
            raise _RemoteDocument(url)
        with open(os.path.expanduser(path), "rb") as fh:
            return fh.read()

    def post(self, address: str, message: Any, headers: dict[str, str]) -> requests.Response:
        try:
            response: requests.Response = super().post(address, message, headers)  # type: ignore[no-untyped-call]
        except requests.Timeout as exc:
            raise RemoteTimeoutError(
                "the SOAP service did not answer in time", details=type(exc).__name__
            ) from None
        except requests.ConnectionError as exc:
            raise UnavailableError(
                "the SOAP service cannot be reached", details=type(exc).__name__
            ) from None
        status = response.status_code
        # a 500 may be a SOAP fault, which zeep reads; the rest never reach zeep
        if status >= 300 and status != 500:
            raise translate_status(status, response.headers)
        return response


def plain(value: Any) -> Any:
    """zeep's answer as JSON-safe Python: dicts, lists, text, numbers, booleans, None.

    Dates and times become ISO-8601 text (aware ones in UTC), decimals exact text, binary
    base64.
    """
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def _fault_error(fault: zx.Fault) -> JunctionError:
    code = str(fault.code or "")
    side = code.rpartition(":")[2].rpartition("}")[2].lower()
    details = f"faultcode={code} faultstring={fault.message}"
    ctx = {"fault_code": code}
    if side in ("server", "receiver"):
        return UnavailableError(
            "the SOAP service answered with a server fault", details=details, context=ctx
        )
    return FatalError(
        "the SOAP service rejected the call (client fault)", details=details, context=ctx
    )


class SoapClient:
    """A lazily built zeep client for one service; safe to ``close()`` twice."""

    def __init__(self, conn: SoapConnection, *, address: str | None = None) -> None:
        self.conn = conn
        self.address = address or conn.address
        self._session: requests.Session | None = None
        self._service: Any = None
        self._client: Any = None

    def _build(self) -> Any:
        if self._service is not None:
            return self._service
        conn = self.conn
        session = requests.Session()
        session.trust_env = False  # no proxy or netrc from the environment: the address is explicit
        wsse = None
        if conn.auth == "basic" and conn.username is not None and conn.password is not None:
            # requests encodes str credentials as latin-1: Cyrillic 1C users need the bytes
            session.auth = HTTPBasicAuth(
                conn.username.encode("utf-8"), conn.password.get_secret_value().encode("utf-8")
            )
        elif conn.auth == "ws_security" and conn.username is not None and conn.password:
            wsse = UsernameToken(  # type: ignore[no-untyped-call]
                conn.username,
                conn.password.get_secret_value(),
                use_digest=conn.ws_security_digest,
            )
        settings = Settings(
            strict=True,
            xml_huge_tree=False,
            forbid_dtd=True,
            forbid_entities=True,
            forbid_external=True,
        )
        transport = _LocalTransport(session, conn.timeout_s)
        path = conn.path
        if not path.startswith("file:"):
            path = os.path.abspath(os.path.expanduser(path))
        try:
            client = Client(path, transport=transport, settings=settings, wsse=wsse)  # type: ignore[no-untyped-call]
        except (zx.ExternalReferenceForbidden, _RemoteDocument) as exc:
            session.close()
            url = getattr(exc, "url", None) or (exc.args[0] if exc.args else "?")
            raise ConfigError(
                "the WSDL refers to a remote document; only local WSDL and XSD files are "
                "loaded (download the imports and point to them)",
                details=f"url={url}",
                context={"wsdl": conn.path},
            ) from None
        except OSError as exc:
            session.close()
            raise ConfigError(
                "the WSDL file cannot be read",
                details=f"{type(exc).__name__}: {exc.strerror}",
                context={"wsdl": conn.path},
            ) from None
        except (zx.Error, ValueError, KeyError) as exc:
            session.close()
            raise ConfigError(
                "the WSDL cannot be used", details=f"{type(exc).__name__}: {exc}"
            ) from None
        try:
            binding = self._binding(client)
        except ConfigError:
            session.close()
            raise
        self._session, self._client = session, client
        self._service = client.create_service(binding, self.address)  # type: ignore[no-untyped-call]
        return self._service

    def _binding(self, client: Any) -> str:
        kind = Soap12Binding if self.conn.soap_version == "1.2" else Soap11Binding
        found = [
            str(qname)
            for qname, binding in client.wsdl.bindings.items()
            if type(binding) is kind
            and (self.conn.binding is None or str(qname).rpartition("}")[2] == self.conn.binding)
        ]
        if len(found) != 1:
            raise ConfigError(
                f"the WSDL has {len(found)} SOAP {self.conn.soap_version} bindings"
                + (f" named {self.conn.binding}" if self.conn.binding else "")
                + "; set `binding` or `soap_version`",
                context={"wsdl": self.conn.path},
            )
        return found[0]

    def operations(self) -> list[str]:
        """The operation names of the chosen binding."""
        service = self._build()
        return sorted(service._binding._operations)  # zeep has no public list

    def call(self, operation: str, params: dict[str, Any]) -> Any:
        """Call ``operation`` with ``params``; return the answer as JSON-safe Python.

        Raises:
            ConfigError, AuthError, RetryableError, FatalError: see the module table.
        """
        service = self._build()
        try:
            method: Callable[..., Any] = getattr(service, operation)
        except AttributeError:
            raise ConfigError(
                f"the service has no operation {operation!r}", context={"operation": operation}
            ) from None

        def run() -> Any:
            answer = method(**params)
            return plain(serialize_object(answer, target_cls=dict))  # type: ignore[no-untyped-call]

        return self._run(run)

    def _run(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except JunctionError:
            raise
        except zx.Fault as fault:
            raise _fault_error(fault) from None
        except zx.TransportError as exc:
            status = int(exc.status_code or 0) or 500
            if status < 300:  # a 200 whose body is not XML (a proxy's or login page)
                raise FatalError(
                    "the SOAP answer is not XML", details=str(exc)[:500], context={"status": status}
                ) from None
            raise translate_status(status, {}, details=str(exc)[:500]) from None
        except zx.DTDForbidden:
            raise FatalError(
                "the SOAP answer declares a DTD (DOCTYPE); it is refused",
                code="dtd_forbidden",
            ) from None
        except zx.EntitiesForbidden:
            raise FatalError(
                "the SOAP answer declares XML entities; it is refused",
                code="entities_forbidden",
            ) from None
        except zx.ExternalReferenceForbidden as exc:
            raise FatalError(
                "the SOAP answer refers to an external resource; it is refused",
                details=str(exc),
                code="external_reference",
            ) from None
        except (zx.ValidationError, TypeError) as exc:
            raise ConfigError(
                "the call's parameters do not fit the WSDL", details=str(exc)[:500]
            ) from None
        except (zx.XMLSyntaxError, zx.XMLParseError, zx.Error) as exc:
            raise FatalError(
                "the SOAP answer cannot be read", details=f"{type(exc).__name__}: {exc}"[:500]
            ) from None
        except requests.Timeout:
            raise RemoteTimeoutError("the SOAP service did not answer in time") from None
        except requests.RequestException as exc:
            raise UnavailableError(
                "the SOAP service cannot be reached", details=type(exc).__name__
            ) from None

    def close(self) -> None:
        """Close the HTTP session; safe to call twice."""
        if self._session is not None:
            self._session.close()
        self._session = None
        self._service = None
        self._client = None
