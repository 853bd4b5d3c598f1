"""Hardened XML parsing for untrusted input (file drops, inbound SOAP and webhook bodies).

libxml2 is told never to load a DTD, resolve an entity or touch the network, and keeps its
default safety limits (``huge_tree=False``: depth 256, 10,000,000-character text nodes, entity
amplification).  With ``resolve_entities=False`` an XXE document would *parse* and silently
yield empty text, so any DOCTYPE is refused outright with ``DTDForbiddenError``.  A resolver
that refuses every URL backs this up in case a future libxml2 asks for one anyway.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Final

from lxml import etree

from connectors.text_scan import sniff_bom
from junction.core.errors import (
    DTDForbiddenError,
    EncodingError,
    FieldTooLargeError,
    FileTooLargeError,
    JunctionError,
    ParseError,
    UnsafeXMLError,
)

PARSER_OPTIONS: Final[dict[str, bool]] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
}
# iterparse takes the same switches except dtd_validation, which is off by default
ITERPARSE_OPTIONS: Final[dict[str, bool]] = {
    k: v for k, v in PARSER_OPTIONS.items() if k != "dtd_validation"
}
_UNSAFE_CODES = frozenset({etree.ErrorTypes.ERR_RESOURCE_LIMIT, etree.ErrorTypes.ERR_ENTITY_LOOP})
_UNSAFE_WORDS = ("amplification", "depth", "huge", "entity loop", "too long")
_ENCODING_CODES = frozenset(
    {
        etree.ErrorTypes.ERR_INVALID_ENCODING,
        etree.ErrorTypes.ERR_UNKNOWN_ENCODING,
        etree.ErrorTypes.ERR_UNSUPPORTED_ENCODING,
    }
)


class RefuseResolver(etree.Resolver):  # type: ignore[misc]
    def resolve(self, url: str | None, pubid: str | None, context: Any) -> Any:
        raise UnsafeXMLError("the XML refers to an external resource", details=f"url={url!r}")


def hardened_iterparse(
    fileobj: IO[bytes], *, events: tuple[str, ...], tag: str | list[str], encoding: str | None
) -> Any:
    """``etree.iterparse`` with the hardened switches and a resolver that refuses every URL.

    Every streaming reader builds its parser here, so the settings live in one place
    (``tests/security/test_xml_parsers.py`` fails on any other parser construction).  Callers
    still call ``forbid_doctype`` on the first event and translate ``XMLSyntaxError``.
    """
    context = etree.iterparse(
        fileobj, events=events, tag=tag, encoding=encoding, **ITERPARSE_OPTIONS
    )
    context.resolvers.add(RefuseResolver())
    return context


def forbid_doctype(tree: Any) -> None:
    info = tree.docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise DTDForbiddenError("the XML declares a DTD (DOCTYPE); DTDs are never accepted")


def translate_syntax_error(exc: etree.XMLSyntaxError, log: Any) -> ParseError:
    """Map a libxml2 error to the taxonomy; libxml2's text goes to ``details`` only."""
    entries = [e for e in log if e.level >= etree.ErrorLevels.ERROR] if log is not None else []
    code, message = (entries[0].type, entries[0].message) if entries else (exc.code, exc.msg)
    line, column = (entries[0].line, entries[0].column) if entries else exc.position
    ctx = {"line": line, "column": column}
    if code in _UNSAFE_CODES or any(w in (message or "").lower() for w in _UNSAFE_WORDS):
        return UnsafeXMLError(
            "the XML exceeds a parser safety limit (entities, depth or text size)",
            details=message,
            context=ctx,
        )
    if code in _ENCODING_CODES:
        return EncodingError(
            f"the XML bytes do not decode in the declared encoding (line {line})",
            details=message,
            context=ctx,
        )
    return ParseError(
        f"the XML is not well-formed (line {line}, column {column})", details=message, context=ctx
    )


_DECLARED = re.compile(rb"""^<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")


def declared_encoding(head: bytes) -> str:
    """Return the encoding a document announces (BOM, then XML declaration, else UTF-8)."""
    bom = sniff_bom(head)
    if bom is not None:
        return bom.name
    found = _DECLARED.match(head.lstrip())
    return found.group(1).decode("ascii").lower() if found else "utf-8"


def parse_untrusted_xml(data: bytes, *, max_bytes: int = 50_000_000) -> etree._Element:
    """Parse a whole, small untrusted document (an inbound body) with the hardened settings.

    Args:
        data: the raw bytes; the XML declaration's encoding is honoured.
        max_bytes: refuse larger inputs before parsing.

    Returns:
        The root ``lxml.etree._Element``.

    Raises:
        FileTooLargeError: ``data`` is larger than ``max_bytes``.
        DTDForbiddenError: the document has a DOCTYPE.
        UnsafeXMLError: a parser safety limit was hit.
        EncodingError: the bytes do not decode in the declared encoding.
        ParseError: the document is not well-formed.
    """
    if len(data) > max_bytes:
        raise FileTooLargeError(
            "the XML document is too large", context={"size": len(data), "limit": max_bytes}
        )
    parser = etree.XMLParser(**PARSER_OPTIONS)
    parser.resolvers.add(RefuseResolver())
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise translate_syntax_error(exc, parser.error_log) from None
    forbid_doctype(root.getroottree())
    return root


@dataclass(frozen=True, slots=True)
class RecordProblem:
    """A record element that parsed but cannot be emitted (a value over the size limit)."""

    error: JunctionError
    raw: bytes


class ValueTooLarge(Exception):
    """Raised by an element reader for a value over ``max_field_bytes`` (field name, size)."""

    def __init__(self, name: str, size: int) -> None:
        super().__init__(name)
        self.name = name
        self.size = size


class ElementConverter:
    """Turns an element into a dict: children by local name, ``@attr``, repeats as lists.

    Leaf children become their stripped text; children with children or attributes become
    nested dicts (their own text, if any, under ``#text``).  Namespaces are dropped.
    """

    def __init__(self, max_value_bytes: int | None = None) -> None:
        self._local: dict[str, str] = {}
        self._limit = max_value_bytes
        # a value of at most limit // 4 characters cannot exceed limit bytes in UTF-8
        self._quick = max_value_bytes // 4 if max_value_bytes is not None else -1

    def local(self, tag: str) -> str:
        """Return the local name of a ``{namespace}name`` tag (cached: tags repeat)."""
        name = self._local.get(tag)
        if name is None:
            name = self._local[tag] = tag.rpartition("}")[2]
        return name

    def convert(self, elem: Any) -> dict[str, Any]:
        """Convert one element (usually a record) into a dict."""
        # the per-child loop is the hot path of XML ingestion: locals only, no helper calls
        names, quick = self._local, self._quick
        out: dict[str, Any] = {}
        if elem.keys():
            for key, attr in elem.items():
                out["@" + self.local(key)] = self._checked("@" + self.local(key), attr)
        for child in elem:
            tag = child.tag
            if type(tag) is not str:
                continue  # comments, processing instructions
            name = names.get(tag) or self.local(tag)
            if len(child) or child.keys():
                value: Any = self.convert(child)
            else:
                text = child.text
                value = text.strip() if text else ""
                if quick >= 0 and len(value) > quick:
                    self._checked(name, value)
            prev = out.get(name)
            if prev is None:
                out[name] = value
            elif type(prev) is list:
                prev.append(value)
            else:
                out[name] = [prev, value]
        text = elem.text
        if text and (text := text.strip()):
            out["#text"] = self._checked("#text", text)
        return out

    def _checked(self, name: str, value: str) -> str:
        if 0 <= self._quick < len(value):
            size = len(value.encode("utf-8"))
            if self._limit is not None and size > self._limit:
                raise ValueTooLarge(name, size)
        return value


def release_parsed(elem: Any) -> None:
    # free the record and every fully parsed node before it, so memory stays flat
    elem.clear(keep_tail=True)
    node = elem
    while (parent := node.getparent()) is not None:
        while node.getprevious() is not None:
            del parent[0]
        node = parent


def iter_records(
    fileobj: IO[bytes],
    record_tag: str,
    *,
    skip: int = 0,
    encoding: str | None = None,
    max_field_bytes: int | None = None,
) -> Iterator[dict[str, Any] | RecordProblem]:
    """Stream the elements named ``record_tag`` (any namespace) as dicts, in constant memory.

    Args:
        fileobj: a binary file; the XML declaration's encoding is honoured.
        record_tag: local name of the record element.
        skip: records to pass over without converting them (resuming).
        encoding: override the declared encoding.
        max_field_bytes: a value larger than this makes its record a ``RecordProblem``.

    Yields:
        One dict per record after ``skip``, or a ``RecordProblem`` for an oversized value.

    Raises:
        DTDForbiddenError, UnsafeXMLError, EncodingError, ParseError: file-level failures;
        they may come after records have been yielded.
    """
    context = hardened_iterparse(
        fileobj, events=("end",), tag="{*}" + record_tag, encoding=encoding
    )
    convert = ElementConverter(max_field_bytes).convert
    n = 0
    try:
        for _event, elem in context:
            if n == 0:
                # the DOCTYPE, if any, precedes the root, so it is known by the first record
                forbid_doctype(elem.getroottree())
            n += 1
            item: dict[str, Any] | RecordProblem | None = None
            if n > skip:
                try:
                    item = convert(elem)
                except ValueTooLarge as big:
                    err = FieldTooLargeError(
                        f"a value of record {n} is larger than max_field_bytes",
                        field=big.name,
                        context={"record": n, "bytes": big.size, "limit": max_field_bytes},
                    )
                    item = RecordProblem(err, etree.tostring(elem, encoding="utf-8"))
            release_parsed(elem)
            if item is not None:
                yield item
        if context.root is not None:
            forbid_doctype(context.root.getroottree())
    except etree.XMLSyntaxError as exc:
        raise translate_syntax_error(exc, context.error_log) from None
