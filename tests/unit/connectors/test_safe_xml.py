"""Hardened XML parsing: DTDs refused, bombs and depth stopped fast, errors typed."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from connectors.safe_xml import (
    ITERPARSE_OPTIONS,
    PARSER_OPTIONS,
    ElementConverter,
    RecordProblem,
    iter_records,
    parse_untrusted_xml,
)
from junction.core.errors import (
    DTDForbiddenError,
    EncodingError,
    FieldTooLargeError,
    FileTooLargeError,
    ParseError,
    UnsafeXMLError,
)

CANARY = "CANARY-7f3a9c-do-not-leak"

BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "' + f"&lol{i - 1 if i > 1 else ''};" * 10 + '">' for i in range(1, 10)
    )
    + "]><lolz><r>&lol9;</r></lolz>"
).encode()
QUADRATIC = (
    '<!DOCTYPE r [<!ENTITY a "' + "x" * 100_000 + '">]><root><r>' + "&a;" * 20_000 + "</r></root>"
).encode()


def deep(levels: int) -> bytes:
    return ("<root>" + "<a>" * levels + "</a>" * levels + "<r>1</r></root>").encode()


def xxe(canary: Path) -> bytes:
    return f'<!DOCTYPE r [<!ENTITY x SYSTEM "file://{canary}">]><root><r>&x;</r></root>'.encode()


def xxe_parameter(canary: Path) -> bytes:
    return (
        f'<!DOCTYPE r [<!ENTITY % p SYSTEM "file://{canary}"> %p;]><root><r>x</r></root>'
    ).encode()


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    path = tmp_path / "canary.txt"
    path.write_text(CANARY)
    return path


def _atime_is_tracked(path: Path) -> bool:
    st = path.stat()
    os.utime(path, (0, st.st_mtime))
    path.read_bytes()
    tracked = path.stat().st_atime != 0
    os.utime(path, (0, st.st_mtime))
    return tracked


def test_parser_settings_are_hardened() -> None:
    assert PARSER_OPTIONS["huge_tree"] is False
    assert PARSER_OPTIONS["resolve_entities"] is False
    assert PARSER_OPTIONS["load_dtd"] is False
    assert PARSER_OPTIONS["no_network"] is True
    assert ITERPARSE_OPTIONS["huge_tree"] is False
    assert ITERPARSE_OPTIONS["resolve_entities"] is False


def test_minimum_lxml_and_libxml2_versions() -> None:
    # entity-amplification limits and the resolve_entities semantics we rely on
    assert etree.LXML_VERSION >= (6, 0, 0, 0)
    assert etree.LIBXML_VERSION >= (2, 12, 0)


def test_parses_a_plain_document() -> None:
    root = parse_untrusted_xml(b'<?xml version="1.0"?><a x="1"><b>text</b><!-- c --></a>')
    assert root.tag == "a"
    assert root.find("b").text == "text"
    assert len(root) == 1  # the comment was dropped


def test_declared_windows_1251_is_honoured() -> None:
    data = '<?xml version="1.0" encoding="windows-1251"?><a>Привет</a>'.encode("cp1251")
    assert parse_untrusted_xml(data).text == "Привет"


@pytest.mark.parametrize("make", [xxe, xxe_parameter], ids=["general-entity", "parameter-entity"])
def test_xxe_is_refused_and_the_canary_never_leaks(
    canary: Path, make: Callable[[Path], bytes]
) -> None:
    with pytest.raises(DTDForbiddenError) as info:
        parse_untrusted_xml(make(canary))
    assert isinstance(info.value, UnsafeXMLError)
    assert CANARY not in repr(info.value.__dict__)


@pytest.mark.parametrize("make", [xxe, xxe_parameter], ids=["general-entity", "parameter-entity"])
def test_xxe_never_reads_the_canary_file(canary: Path, make: Callable[[Path], bytes]) -> None:
    if not _atime_is_tracked(canary):
        pytest.skip("this filesystem does not update access times")
    with pytest.raises(DTDForbiddenError):
        parse_untrusted_xml(make(canary))
    with pytest.raises(DTDForbiddenError):
        list(iter_records(io.BytesIO(make(canary)), "r"))
    assert canary.stat().st_atime == 0


def test_plain_doctype_is_refused() -> None:
    with pytest.raises(DTDForbiddenError):
        parse_untrusted_xml(b"<!DOCTYPE root><root/>")


@pytest.mark.parametrize("data", [BILLION_LAUGHS, QUADRATIC], ids=["billion-laughs", "quadratic"])
def test_entity_bombs_fail_fast(data: bytes) -> None:
    started = time.perf_counter()
    with pytest.raises(UnsafeXMLError):
        parse_untrusted_xml(data)
    with pytest.raises(UnsafeXMLError):
        list(iter_records(io.BytesIO(data), "r"))
    assert time.perf_counter() - started < 1.0


def test_excessive_depth_is_unsafe_but_moderate_depth_is_fine() -> None:
    with pytest.raises(UnsafeXMLError) as info:
        parse_untrusted_xml(deep(300))
    assert type(info.value) is UnsafeXMLError
    with pytest.raises(UnsafeXMLError):
        list(iter_records(io.BytesIO(deep(300)), "r"))
    assert parse_untrusted_xml(deep(200)).tag == "root"


def test_huge_text_node_is_unsafe() -> None:
    data = b"<root><r>" + b"x" * 10_000_001 + b"</r></root>"
    with pytest.raises(UnsafeXMLError):
        parse_untrusted_xml(data)


def test_malformed_xml_is_a_parse_error_with_position() -> None:
    with pytest.raises(ParseError) as info:
        parse_untrusted_xml(b"<root>\n<r>1</r>\n<r>2</x></root>")
    assert type(info.value) is ParseError
    assert info.value.context == {"line": 3, "column": 9}
    assert "line 3" in info.value.user_message


def test_undefined_entity_is_reported_precisely() -> None:
    with pytest.raises(ParseError) as info:
        list(iter_records(io.BytesIO(b"<root><r>1</r>\n<r>&foo;</r></root>"), "r"))
    assert type(info.value) is ParseError
    assert info.value.context["line"] == 2
    assert "foo" in (info.value.details or "")


def test_bytes_not_in_the_declared_encoding_are_an_encoding_error() -> None:
    data = '<?xml version="1.0" encoding="utf-8"?><a>Привет</a>'.encode("cp1251")
    with pytest.raises(EncodingError):
        parse_untrusted_xml(data)


def test_too_large_input_is_refused_before_parsing() -> None:
    with pytest.raises(FileTooLargeError):
        parse_untrusted_xml(b"<a>" + b"x" * 100 + b"</a>", max_bytes=50)


def test_element_converter_shapes() -> None:
    root = parse_untrusted_xml(
        b'<r xmlns="urn:x" xmlns:p="urn:p" id="7" p:kind="k">'
        b"<name> Ann </name><tag>a</tag><tag>b</tag><empty/>"
        b'<addr><city>Tver</city><zip code="1">170000</zip></addr>'
        b"<p:note>n</p:note></r>"
    )
    assert ElementConverter().convert(root) == {
        "@id": "7",
        "@kind": "k",
        "name": "Ann",
        "tag": ["a", "b"],
        "empty": "",
        "addr": {"city": "Tver", "zip": {"@code": "1", "#text": "170000"}},
        "note": "n",
    }


def test_iter_records_matches_any_namespace_skips_and_flags_oversized_values() -> None:
    data = (
        b'<root xmlns="urn:x"><r><v>1</v></r><p:r xmlns:p="urn:p"><v>2</v></p:r>'
        b"<r><v>" + b"y" * 50 + b"</v></r><other><v>9</v></other><r><v>4</v></r></root>"
    )
    items = list(iter_records(io.BytesIO(data), "r", max_field_bytes=40))
    assert items[:2] == [{"v": "1"}, {"v": "2"}]
    problem = items[2]
    assert isinstance(problem, RecordProblem)
    assert isinstance(problem.error, FieldTooLargeError)
    assert problem.error.field == "v"
    assert b"y" * 50 in problem.raw
    assert items[3] == {"v": "4"}
    assert list(iter_records(io.BytesIO(data), "r", skip=3)) == [{"v": "4"}]


def test_doctype_is_refused_even_when_no_record_matches() -> None:
    with pytest.raises(DTDForbiddenError):
        list(iter_records(io.BytesIO(b"<!DOCTYPE root><root><x/></root>"), "r"))
