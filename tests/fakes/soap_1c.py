"""A local 1C:Enterprise-style SOAP web service (and the SOAP plumbing the SAP fake shares).

``SoapFake`` answers SOAP 1.1 and 1.2 POSTs the way a published 1C or SAP service does: HTTP
Basic auth checked on the UTF-8 bytes of the credentials (Cyrillic passwords), an optional
WS-Security UsernameToken, faults as HTTP 500 with ``soap:Fault`` (Russian fault strings), and
the ``Faults`` knob of ``tests/fakes/server.py`` (``rate_limit`` → 429 + Retry-After,
``server_error`` → a server fault, ``timeout`` → a slow answer).  ``inject`` puts a DOCTYPE or
an entity declaration into the next answers, as a hostile or broken server could.

``OneCExchange`` is the 1C service of ``wsdl/hub_exchange_1c.wsdl``: counterparties read by
change date (``GetCounterparties(ChangedSince, Limit)``) or by exchange-node message number
(``GetChanges(NodeCode, ReceivedNo)``), and ``Ping``.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from fastapi import FastAPI, Request, Response
from lxml import etree

from tests.fakes.server import Faults

WSDL_DIR = Path(__file__).resolve().parent / "wsdl"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


class SoapFault(Exception):
    """Raised by a handler: answered as a SOAP fault (``client`` or ``server`` side)."""

    def __init__(self, side: str, message: str) -> None:
        super().__init__(message)
        self.side = side
        self.message = message


def _local(tag: Any) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def element_dict(elem: Any) -> dict[str, Any]:
    """The children of ``elem`` by local name: text for leaves, dicts/lists for the rest."""
    out: dict[str, Any] = {}
    for child in elem:
        if not isinstance(child.tag, str):
            continue
        name = _local(child.tag)
        value: Any = element_dict(child) if len(child) else (child.text or "")
        if name in out:
            prev = out[name]
            out[name] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[name] = value
    return out


def xml_value(value: Any) -> str:
    """A Python value as XML Schema text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return escape(str(value))


@dataclass
class SoapFake:
    """The SOAP plumbing of a fake: auth, faults, envelopes, injections."""

    username: str
    password: str
    path: str
    wsdl: Path
    faults: Faults = field(default_factory=Faults)
    require_wsse: bool = False
    # "doctype" | "entity" | a literal "<!DOCTYPE …>" prolog: put it in every answer
    inject: str | None = None
    delay_s: float = 0.0  # every answer is this slow
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    seen_headers: list[dict[str, str]] = field(default_factory=list)
    # called after each answered operation: a test arms the next fault mid-read
    on_call: Callable[[str, dict[str, Any]], None] | None = None

    def handle(self, operation: str, params: dict[str, Any]) -> str:
        """The XML inside the Body for ``operation`` (subclasses)."""
        raise SoapFault("client", f"Метод {operation} не найден")

    def app(self) -> FastAPI:
        """The ASGI app: GET ``?wsdl`` serves the WSDL, POST answers SOAP."""
        app = FastAPI()

        @app.get(self.path)
        async def wsdl() -> Response:
            return Response(self.wsdl.read_bytes(), media_type="text/xml")

        @app.post(self.path)
        async def soap(request: Request) -> Response:
            return await self._answer(request)

        return app

    def _authorized(self, headers: dict[str, str], envelope: Any) -> bool:
        if self.require_wsse:
            token = envelope.find(f".//{{{WSSE}}}UsernameToken")
            if token is None:
                return False
            user = token.findtext(f"{{{WSSE}}}Username")
            secret = token.findtext(f"{{{WSSE}}}Password")
            return user == self.username and secret == self.password
        auth = headers.get("authorization", "")
        if not auth.startswith("Basic "):
            return False
        try:
            raw = base64.b64decode(auth[6:])
            user, _, secret = raw.partition(b":")
            return user.decode("utf-8") == self.username and secret.decode() == self.password
        except (ValueError, UnicodeDecodeError):
            return False

    async def _answer(self, request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.seen_headers.append(headers)
        ns = SOAP12 if "application/soap+xml" in headers.get("content-type", "") else SOAP11
        fault = self.faults.take(request.url.path)
        if fault == "rate_limit":
            return Response(
                "Too Many Requests",
                status_code=429,
                headers={"Retry-After": str(int(self.faults.retry_after_s))},
            )
        if fault == "server_error":
            return self._fault(ns, "server", "Сервис временно недоступен")
        if fault == "timeout":
            await asyncio.sleep(self.faults.delay_s)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        try:
            envelope = etree.fromstring(body, _PARSER)
        except etree.XMLSyntaxError:
            return self._fault(ns, "client", "Некорректный XML запроса")
        if not self._authorized(headers, envelope):
            return Response(
                "Unauthorized", status_code=401, headers={"WWW-Authenticate": 'Basic realm="1C"'}
            )
        payload = envelope.find(f"{{{ns}}}Body")
        ops = [c for c in payload if isinstance(c.tag, str)] if payload is not None else []
        if not ops:
            return self._fault(ns, "client", "Пустой запрос")
        operation, params = _local(ops[0].tag), element_dict(ops[0])
        self.calls.append((operation, params))
        try:
            inner = self.handle(operation, params)
        except SoapFault as exc:
            return self._fault(ns, exc.side, exc.message)
        if self.on_call is not None:
            self.on_call(operation, params)
        return self._envelope(ns, inner, 200)

    def _envelope(self, ns: str, inner: str, status: int) -> Response:
        prolog = ""
        if self.inject == "doctype":
            prolog = "<!DOCTYPE soap:Envelope [<!ELEMENT soap:Envelope ANY>]>"
        elif self.inject == "entity":
            prolog = '<!DOCTYPE soap:Envelope [<!ENTITY boom "boom">]>'
        elif self.inject is not None:
            prolog = self.inject
        text = (
            f'<?xml version="1.0" encoding="UTF-8"?>{prolog}'
            f'<soap:Envelope xmlns:soap="{ns}"><soap:Header/><soap:Body>{inner}'
            "</soap:Body></soap:Envelope>"
        )
        media = "application/soap+xml" if ns == SOAP12 else "text/xml"
        return Response(text.encode(), status_code=status, media_type=f"{media}; charset=utf-8")

    def _fault(self, ns: str, side: str, message: str) -> Response:
        if ns == SOAP12:
            code = "soap:Sender" if side == "client" else "soap:Receiver"
            inner = (
                f"<soap:Fault><soap:Code><soap:Value>{code}</soap:Value></soap:Code>"
                f'<soap:Reason><soap:Text xml:lang="ru">{escape(message)}</soap:Text>'
                "</soap:Reason></soap:Fault>"
            )
        else:
            code = "soap:Client" if side == "client" else "soap:Server"
            inner = (
                f"<soap:Fault><faultcode>{code}</faultcode>"
                f"<faultstring>{escape(message)}</faultstring></soap:Fault>"
            )
        return self._envelope(ns, inner, 500)


ONEC_NS = "http://www.example.org/hub/exchange"
ONEC_PATH = "/trade/ws/HubExchange.1cws"


def counterparty(i: int, changed_at: datetime, **extra: Any) -> dict[str, Any]:
    """A counterparty of the fake infobase."""
    row: dict[str, Any] = {
        "Ref": f"5f2b6c1e-0000-11ee-8c90-{i:012d}",
        "Code": f"{i:09d}",
        "Description": f"Фирма Контрагент {i}",
        "INN": f"77{i:08d}",
        "KPP": None,
        "Email": f"buh{i}@example.ru",
        "Balance": Decimal(f"{i * 100}.50"),
        "DeletionMark": False,
        "ChangedAt": changed_at,
    }
    row.update(extra)
    return row


def _counterparty_xml(row: dict[str, Any]) -> str:
    parts = []
    for name in (
        "Ref",
        "Code",
        "Description",
        "INN",
        "KPP",
        "Email",
        "Balance",
        "DeletionMark",
        "ChangedAt",
    ):
        value = row.get(name)
        if value is None:
            parts.append(
                f'<m:{name} xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:nil="true"/>'
            )
        else:
            parts.append(f"<m:{name}>{xml_value(value)}</m:{name}>")
    return "<m:Counterparty>" + "".join(parts) + "</m:Counterparty>"


@dataclass
class OneCExchange(SoapFake):
    """The fake 1C infobase behind ``HubExchange.1cws``."""

    username: str = "Обмен"
    password: str = "пароль-Секрет-42"
    path: str = ONEC_PATH
    wsdl: Path = WSDL_DIR / "hub_exchange_1c.wsdl"
    counterparties: list[dict[str, Any]] = field(default_factory=list)
    # exchange-node messages: messages[k] holds the changes of message number k + 1
    messages: list[list[dict[str, Any]]] = field(default_factory=list)

    def handle(self, operation: str, params: dict[str, Any]) -> str:
        """Answer the three operations of the service."""
        if operation == "Ping":
            return f'<m:PingResponse xmlns:m="{ONEC_NS}"><m:return>ok</m:return></m:PingResponse>'
        if operation == "GetCounterparties":
            return self._counterparties(params)
        if operation == "GetChanges":
            return self._changes(params)
        return super().handle(operation, params)

    def _counterparties(self, params: dict[str, Any]) -> str:
        if params.get("Kind") == "invalid":
            raise SoapFault("client", "Неизвестный вид контрагентов: invalid")
        since_text = params.get("ChangedSince") or ""
        since = datetime.fromisoformat(since_text) if since_text else None
        rows = sorted(self.counterparties, key=lambda r: (r["ChangedAt"], r["Ref"]))
        if since is not None:
            rows = [r for r in rows if r["ChangedAt"] >= since]
        limit = int(params.get("Limit") or 0)
        if limit > 0:
            rows = rows[:limit]
        items = "".join(_counterparty_xml(r) for r in rows)
        return (
            f'<m:GetCounterpartiesResponse xmlns:m="{ONEC_NS}"><m:return>{items}</m:return>'
            "</m:GetCounterpartiesResponse>"
        )

    def _changes(self, params: dict[str, Any]) -> str:
        if params.get("NodeCode") != "HUB":
            raise SoapFault("client", "Узел обмена не найден")
        received = int(params.get("ReceivedNo") or 0)
        if received < len(self.messages):
            number, rows = received + 1, self.messages[received]
        else:
            number, rows = received, []
        items = "".join(_counterparty_xml(r) for r in rows)
        return (
            f'<m:GetChangesResponse xmlns:m="{ONEC_NS}"><m:return>'
            f"<m:MessageNo>{number}</m:MessageNo>{items}</m:return></m:GetChangesResponse>"
        )
