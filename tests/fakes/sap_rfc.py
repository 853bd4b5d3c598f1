"""A local SAP RFC-style SOAP service (SOAMANAGER), answering ``wsdl/zsd_orders_sap_rfc.wsdl``.

The function ``Z_SD_GET_ORDERS(IV_VKORG, IV_CHANGED_SINCE, IT_STATUS)`` answers the sales order
items of a sales organisation changed on or after a date (``date10``, day granularity) in the
``ET_ORDERS`` table (repeated ``<item>``, unqualified elements), their count in ``EV_COUNT`` and
a BAPIRET2 ``RETURN`` table.  The endpoint needs ``?sap-client=<client>`` (another client is a
logon failure: 401) and HTTP Basic.  An unknown sales organisation answers 200 with an ``E``
message in ``RETURN``, as BAPIs do.  Faults, slow answers and DOCTYPE injection come from
:class:`tests.fakes.soap_1c.SoapFake`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import Request, Response

from tests.fakes.soap_1c import WSDL_DIR, SoapFake, xml_value

RFC_NS = "urn:sap-com:document:sap:rfc:functions"
SAP_PATH = "/sap/bc/srt/rfc/sap/zsd_orders/100/zsd_orders/zsd_orders_binding"
ROW_FIELDS = (
    "VBELN",
    "POSNR",
    "KUNNR",
    "MATNR",
    "ARKTX",
    "KWMENG",
    "VRKME",
    "NETWR",
    "WAERK",
    "ERDAT",
    "AEDAT",
    "AEZET",
)


def order_item(n: int, changed: date, at: time = time(8, 0), **extra: Any) -> dict[str, Any]:
    """A sales order item of the fake system (document numbers with ALPHA leading zeros)."""
    row: dict[str, Any] = {
        "VBELN": f"{n // 2 + 1:010d}",
        "POSNR": f"{(n % 2 + 1) * 10:06d}",
        "KUNNR": "0000100042",
        "MATNR": f"{1000 + n:018d}",
        "ARKTX": f"Material {n}",
        "KWMENG": Decimal(f"{n + 1}.000"),
        "VRKME": "ST",
        "NETWR": Decimal(f"{(n + 1) * 12}.50"),
        "WAERK": "EUR",
        "ERDAT": changed,
        "AEDAT": changed,
        "AEZET": at,
    }
    row.update(extra)
    return row


def _abap_value(name: str, value: Any) -> str:
    # ABAP has no null: an initial date is 0000-00-00, an initial time 00:00:00
    if value is None:
        return {"ERDAT": "0000-00-00", "AEDAT": "0000-00-00", "AEZET": "00:00:00"}.get(name, "")
    return xml_value(value)


@dataclass
class SapOrders(SoapFake):
    """The fake SAP system behind ``ZSD_ORDERS``."""

    username: str = "HUB_RFC"
    password: str = "Init-Pass#2026"
    path: str = SAP_PATH
    wsdl: Path = WSDL_DIR / "zsd_orders_sap_rfc.wsdl"
    sap_client: str = "100"
    sales_orgs: tuple[str, ...] = ("1000",)
    rows: list[dict[str, Any]] = field(default_factory=list)

    async def _answer(self, request: Request) -> Response:
        if request.query_params.get("sap-client") != self.sap_client:
            # SAP logs on to the client named in the URL: another one has no such user
            return Response("Logon failed", status_code=401)
        return await super()._answer(request)

    def handle(self, operation: str, params: dict[str, Any]) -> str:
        """Answer ``Z_SD_GET_ORDERS``."""
        if operation != "Z_SD_GET_ORDERS":
            return super().handle(operation, params)
        vkorg = params.get("IV_VKORG", "")
        if vkorg not in self.sales_orgs:
            return self._response([], [("E", f"Sales organization {vkorg} does not exist")])
        since_text = params.get("IV_CHANGED_SINCE") or ""
        rows = sorted(self.rows, key=lambda r: (str(r["AEDAT"]), str(r["AEZET"]), r["VBELN"]))
        if since_text:
            since = date.fromisoformat(since_text)
            rows = [r for r in rows if r["AEDAT"] is None or r["AEDAT"] >= since]
        return self._response(rows, [])

    @staticmethod
    def _response(rows: list[dict[str, Any]], messages: list[tuple[str, str]]) -> str:
        items = "".join(
            "<item>"
            + "".join(f"<{f}>{_abap_value(f, r.get(f))}</{f}>" for f in ROW_FIELDS)
            + "</item>"
            for r in rows
        )
        ret = "".join(
            f"<item><TYPE>{t}</TYPE><ID>ZSD</ID><NUMBER>001</NUMBER>"
            f"<MESSAGE>{xml_value(m)}</MESSAGE></item>"
            for t, m in messages
        )
        return (
            f'<n0:Z_SD_GET_ORDERSResponse xmlns:n0="{RFC_NS}">'
            f"<ET_ORDERS>{items}</ET_ORDERS><EV_COUNT>{len(rows)}</EV_COUNT>"
            f"<RETURN>{ret}</RETURN></n0:Z_SD_GET_ORDERSResponse>"
        )
