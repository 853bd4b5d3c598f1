"""Salesforce Outbound Messages (SOAP push) and the id and timestamp forms Junction keys on.

An Outbound Message is a SOAP 1.1 envelope whose body holds ``notifications``
(``http://soap.sforce.com/2005/09/outbound``): ``OrganizationId``, ``ActionId``, ``SessionId``,
the URLs, then up to 100 ``Notification`` elements, each with its own ``Id`` (the delivery's
dedupe key) and an ``sObject`` whose ``xsi:type`` (``sf:Lead``) names the object and whose
children (namespace ``urn:sobject.enterprise.soap.sforce.com``) are the selected fields.
Salesforce retries until it gets ``notificationsResponse/Ack = true``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from connectors.base import PushAck, PushItem
from connectors.safe_xml import parse_untrusted_xml
from junction.core.errors import ParseError

NS_OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
NS_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
NS_XSI = "http://www.w3.org/2001/XMLSchema-instance"
MAX_NOTIFICATIONS = 100
ACK_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    b"<soapenv:Body>"
    b'<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    b"<Ack>true</Ack></notificationsResponse>"
    b"</soapenv:Body></soapenv:Envelope>"
)
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def to18(sf_id: str) -> str:
    """The 18-character, case-insensitive-safe form of a 15- or 18-character Salesforce id.

    Raises:
        ValueError: ``sf_id`` is not 15 or 18 alphanumeric characters.
    """
    if len(sf_id) not in (15, 18) or not set(sf_id) <= _ID_CHARS:
        raise ValueError("not a Salesforce id")
    base = sf_id[:15]
    suffix = ""
    for start in (0, 5, 10):
        flags = sum(1 << i for i, ch in enumerate(base[start : start + 5]) if "A" <= ch <= "Z")
        suffix += _SUFFIX[flags]
    return base + suffix


def normalize_id(sf_id: str) -> str:
    """``to18`` when ``sf_id`` is a 15-character id, else the value unchanged.

    The APIs answer 18-character ids (already with their suffix), so those pass as they are.
    """
    if len(sf_id) == 15:
        try:
            return to18(sf_id)
        except ValueError:
            return sf_id
    return sf_id


def normalize_stamp(value: str) -> str:
    """A Salesforce datetime as fixed-width UTC ISO-8601 with milliseconds (sorts by time).

    Accepts the REST form ``2022-01-02T15:41:15.000+0000``, the SOAP/Bulk form ``...Z`` and
    offsets with a colon.

    Raises:
        ValueError: ``value`` is not a datetime with an offset.
    """
    text = value.strip()
    # the REST form with milliseconds in UTC is by far the most common: slice, do not parse
    if len(text) == 28 and text.endswith("+0000") and text[19] == "." and text[10] == "T":
        return text[:23] + "Z"
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError("a Salesforce datetime without an offset")
    stamp = parsed.astimezone(UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _local(tag: Any) -> str:
    return str(tag).rpartition("}")[2] if isinstance(tag, str) else ""


def _child(elem: Any, name: str) -> Any:
    for child in elem:
        if _local(child.tag) == name:
            return child
    return None


def notifications_element(body: bytes) -> Any:
    """The ``notifications`` element of an Outbound Message body (hardened parse).

    Raises:
        ParseError: the body is not XML, declares a DTD, or holds no ``notifications``.
    """
    root = parse_untrusted_xml(body, max_bytes=10_000_000)
    if _local(root.tag) != "Envelope":
        raise ParseError("the body is not a SOAP envelope")
    soap_body = _child(root, "Body")
    found = _child(soap_body, "notifications") if soap_body is not None else None
    if found is None:
        raise ParseError("the SOAP body holds no Outbound Message notifications")
    return found


def text_of(elem: Any, name: str) -> str | None:
    """The stripped text of ``elem``'s child ``name`` (any namespace), None when absent/empty."""
    child = _child(elem, name)
    if child is None or child.text is None:
        return None
    return child.text.strip() or None


def _sobject_fields(sobject: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for child in sobject:
        name = _local(child.tag)
        if not name:
            continue
        nil = child.get(f"{{{NS_XSI}}}nil") in ("true", "1")
        fields[name] = None if nil else (child.text or "").strip()
    return fields


def parse_notifications(body: bytes) -> list[PushItem]:
    """One ``PushItem`` per ``Notification``, in the order Salesforce sent them.

    ``stream`` is the sObject type (``sf:Lead`` → ``Lead``), ``record`` its fields plus
    ``attributes.type``, ``version`` the normalized ``SystemModstamp`` when selected, and
    ``key`` ``<Id>@<version>`` (or ``<Id>@<notification id>`` without a SystemModstamp).

    Raises:
        ParseError: malformed XML, a DTD (``DTDForbiddenError``), or a notification without
            an id, an sObject, a type or an Id field.
    """
    notifications = notifications_element(body)
    items: list[PushItem] = []
    for n, notification in enumerate(
        (c for c in notifications if _local(c.tag) == "Notification"), 1
    ):
        if n > MAX_NOTIFICATIONS:
            raise ParseError(f"an Outbound Message holds at most {MAX_NOTIFICATIONS} notifications")
        event_id = text_of(notification, "Id")
        sobject = _child(notification, "sObject")
        if event_id is None or sobject is None:
            raise ParseError("a notification has no Id or no sObject", context={"index": n})
        xsi_type = sobject.get(f"{{{NS_XSI}}}type") or ""
        stream = xsi_type.rpartition(":")[2]
        fields = _sobject_fields(sobject)
        record_id = fields.get("Id")
        if not stream or not record_id:
            raise ParseError(
                "a notification's sObject has no xsi:type or no Id", context={"index": n}
            )
        version: str | None = None
        stamp = fields.get("SystemModstamp")
        if stamp:
            try:
                version = normalize_stamp(stamp)
            except ValueError:
                raise ParseError(
                    "a notification's SystemModstamp is not a datetime",
                    field="SystemModstamp",
                    context={"index": n},
                ) from None
        record = {"attributes": {"type": stream}, **fields}
        key_id = normalize_id(record_id)
        items.append(
            PushItem(
                event_id=event_id,
                stream=stream,
                record=record,
                version=version,
                key=f"{key_id}@{version or event_id}",
            )
        )
    return items


def ack() -> PushAck:
    """The ``notificationsResponse`` Salesforce needs to stop retrying the delivery."""
    return PushAck(body=ACK_BODY, media_type="text/xml; charset=utf-8")
