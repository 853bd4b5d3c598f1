"""The one module of ``sap_idoc`` that touches lxml: the two passes over an IDoc XML file.

IDoc XML (``<ORDERS05><IDOC BEGIN="1"><EDI_DC40 SEGMENT="1">…``) has no namespace; a file holds
one or many ``IDOC`` elements under a root named after the basic type.  :func:`validate_idocs`
walks the whole file once and raises on the first malformed IDoc, so a bad file is rejected
before any of its records is emitted; :func:`iter_idocs` then streams the records.  Both use
the hardened parser settings of :mod:`connectors.safe_xml` (no DTD, no entities, no network).

A record is the IDoc as nested dicts: ``EDI_DC40`` (the control record) is a dict of its
fields; every other segment name maps to a **list** of segment dicts, even when it occurs once
(so ``E1EDK03[?IDDAT=='012']`` works on every IDoc), and fields are stripped strings.  The
``SEGMENT``/``BEGIN`` attributes are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from lxml import etree

from connectors.safe_xml import (
    RecordProblem,
    ValueTooLarge,
    forbid_doctype,  # the hardened checks are shared with xml_file on purpose
    hardened_iterparse,
    release_parsed,
    translate_syntax_error,
)
from junction.core.errors import FieldTooLargeError, ParseError

CONTROL = "EDI_DC40"
IDOC = "IDOC"
# control-record fields an IDoc cannot be routed without
REQUIRED_CONTROL = ("IDOCTYP", "MESTYP")


def _local(tag: Any) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _is_segment(elem: Any) -> bool:
    return len(elem) > 0 or elem.get("SEGMENT") is not None


def _malformed(n: int, line: int | None, reason: str) -> ParseError:
    where = f"line {line}" if line else "unknown line"
    return ParseError(
        f"IDoc {n} ({where}) is malformed: {reason}",
        context={"line": line, "idoc": n, "reason": reason},
        code="malformed_idoc",
    )


def check_idoc(elem: Any, n: int) -> None:
    """Raise ``ParseError`` (code ``malformed_idoc``, with line and reason) for a bad IDoc.

    An IDoc needs exactly one control record ``EDI_DC40``, first, with ``IDOCTYP`` and
    ``MESTYP``; every other child of ``IDOC`` must be a segment (a text value directly under
    ``IDOC`` is a field without its segment, the mark of a broken generator).
    """
    children = [c for c in elem if isinstance(c.tag, str)]
    if not children or _local(children[0].tag) != CONTROL:
        raise _malformed(n, elem.sourceline, f"the control record {CONTROL} is not its first child")
    controls = [c for c in children if _local(c.tag) == CONTROL]
    if len(controls) > 1:
        raise _malformed(n, controls[1].sourceline, f"it has {len(controls)} {CONTROL} records")
    control = children[0]
    for name in REQUIRED_CONTROL:
        found = [c for c in control if _local(c.tag) == name]
        if not found or not (found[0].text or "").strip():
            raise _malformed(n, control.sourceline, f"{CONTROL} has no {name}")
    for child in control:
        if isinstance(child.tag, str) and len(child):
            raise _malformed(n, child.sourceline, f"{CONTROL} holds a nested element")
    for child in children[1:]:
        if not _is_segment(child) and (child.text or "").strip():
            raise _malformed(
                n, child.sourceline, f"<{_local(child.tag)}> holds a value outside any segment"
            )


def _parse(fileobj: IO[bytes], encoding: str | None) -> Any:
    return hardened_iterparse(fileobj, events=("end",), tag="{*}" + IDOC, encoding=encoding)


def validate_idocs(fileobj: IO[bytes], *, encoding: str | None = None) -> int:
    """Walk the whole file and return its number of IDocs; raise on the first problem.

    Raises:
        DTDForbiddenError, UnsafeXMLError, EncodingError, ParseError: the file is not safe,
            well-formed XML (with its line), or an IDoc is malformed (``malformed_idoc``), or
            there is no ``IDOC`` element at all.
    """
    context = _parse(fileobj, encoding)
    n = 0
    try:
        for _event, elem in context:
            if n == 0:
                forbid_doctype(elem.getroottree())
            n += 1
            check_idoc(elem, n)
            release_parsed(elem)
        if context.root is not None:
            forbid_doctype(context.root.getroottree())
    except etree.XMLSyntaxError as exc:
        raise translate_syntax_error(exc, context.error_log) from None
    if n == 0:
        root = _local(context.root.tag) if context.root is not None else "nothing"
        raise ParseError(
            f"the file holds no IDOC element (its root is <{root}>): not IDoc XML",
            context={"line": 1, "reason": "no IDOC element"},
            code="malformed_idoc",
        )
    return n


def _segment(elem: Any, limit: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for child in elem:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        name = _local(tag)
        if _is_segment(child):
            out.setdefault(name, []).append(_segment(child, limit))
            continue
        value = (child.text or "").strip()
        if limit is not None and len(value) > limit // 4 and len(value.encode()) > limit:
            raise ValueTooLarge(name, len(value.encode()))
        prev = out.get(name)
        if prev is None:
            out[name] = value
        elif isinstance(prev, list):
            prev.append(value)
        else:
            out[name] = [prev, value]
    return out


def idoc_record(elem: Any, *, max_field_bytes: int | None = None) -> dict[str, Any]:
    """Convert one checked ``IDOC`` element into its record (see the module docstring)."""
    record = _segment(elem, max_field_bytes)
    control = record.get(CONTROL)
    if isinstance(control, list):
        record[CONTROL] = control[0]  # the control record is one dict, never a list
    return record


def iter_idocs(
    fileobj: IO[bytes],
    *,
    skip: int = 0,
    encoding: str | None = None,
    max_field_bytes: int | None = None,
) -> Iterator[dict[str, Any] | RecordProblem]:
    """Stream the IDocs of a validated file as records, after the first ``skip``.

    Yields:
        One record per IDoc, or an ``RecordProblem`` for an IDoc with an oversized value.
    """
    context = _parse(fileobj, encoding)
    n = 0
    try:
        for _event, elem in context:
            n += 1
            item: dict[str, Any] | RecordProblem | None = None
            if n > skip:
                check_idoc(elem, n)  # the file may have changed since validate_idocs
                try:
                    item = idoc_record(elem, max_field_bytes=max_field_bytes)
                except ValueTooLarge as big:
                    err = FieldTooLargeError(
                        f"a value of IDoc {n} is larger than max_field_bytes",
                        field=big.name,
                        context={"idoc": n, "bytes": big.size, "limit": max_field_bytes},
                    )
                    item = RecordProblem(err, etree.tostring(elem, encoding="utf-8"))
            release_parsed(elem)
            if item is not None:
                yield item
    except etree.XMLSyntaxError as exc:
        raise translate_syntax_error(exc, context.error_log) from None
