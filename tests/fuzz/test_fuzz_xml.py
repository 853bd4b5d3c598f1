"""Fuzz the XML file connector: any bytes, read through ``XmlFileConnector.read``.

Generated documents mix records, attributes, namespaces, CDATA, comments, processing
instructions, character and entity references, DOCTYPEs, encoding declarations, damage and
truncation.  A file reads or fails as a whole with a Junction error (``UnsafeXMLError`` for a
DOCTYPE); oversized values become ``RowError``s; nothing else may escape.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.base import RowError
from connectors.xml_file import XmlFileConfig, XmlFileConnector
from junction.core.errors import JunctionError
from tests.fuzz.support import fuzz_settings

pytestmark = pytest.mark.fuzz

NAMES = st.sampled_from(["r", "a", "b", "ns:r", "Ид", "x-y", "_z", "p:q"])
TEXT = st.one_of(
    st.text(st.sampled_from([*"ab <>&;'\"\x00\t\n\r", "ж", "€", "\ufffe"]), max_size=10),
    st.sampled_from(
        [
            "&amp;",
            "&lt;",
            "&#x41;",
            "&#0;",
            "&#xD800;",
            "&x;",
            "<![CDATA[<r>]]>",
            "<!-- c -->",
            "<?pi x?>",
            "]]>",
            "&#1114112;",
        ]
    ),
)


@st.composite
def element(draw: st.DrawFn, depth: int = 0) -> str:
    name = draw(NAMES)
    attrs = "".join(
        f' {draw(st.sampled_from(["id", "x:id", "xmlns", "xmlns:ns", "a"]))}="{draw(TEXT)}"'
        for _ in range(draw(st.integers(0, 2)))
    )
    if depth >= 3 or draw(st.booleans()):
        body = draw(TEXT)
    else:
        body = "".join(draw(st.lists(element(depth + 1), max_size=3)))
    close = name if draw(st.integers(0, 20)) else draw(NAMES)  # sometimes mismatched
    return f"<{name}{attrs}>{body}</{close}>"


@st.composite
def xml_bytes(draw: st.DrawFn) -> bytes:
    encoding = draw(st.sampled_from(["utf-8", "windows-1251", "utf-16", "latin-1", "koi8-r"]))
    decl = draw(
        st.sampled_from(
            [
                "",
                f'<?xml version="1.0" encoding="{encoding}"?>',
                '<?xml version="1.0"?>',
                '<?xml version="1.1" encoding="nope"?>',
            ]
        )
    )
    doctype = draw(
        st.sampled_from(
            ["", "<!DOCTYPE root>", '<!DOCTYPE root [<!ENTITY x "y">]>', "<!DOCTYPE root ["]
        )
    )
    records = draw(st.lists(element(), max_size=5))
    text = f'{decl}{doctype}<root xmlns:ns="urn:x">{"".join(records)}</root>'
    data = text.encode(encoding if "encoding" in decl else "utf-8", errors="replace")
    cut = draw(st.integers(0, 3))
    if cut == 0 and data:
        data = data[: draw(st.integers(0, len(data)))]
    elif cut == 1 and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    return data


CONFIGS = st.fixed_dictionaries(
    {
        "record_tag": st.sampled_from(["r", "a", "Ид"]),
        "batch_size": st.integers(1, 3),
        "max_field_bytes": st.sampled_from([4, 1024]),
        "encoding": st.sampled_from(["auto", "utf-8", "cp1251"]),
    }
)


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def read_file(folder: Path, data: bytes, options: dict[str, Any]) -> None:
    path = folder / "drop.xml"
    path.write_bytes(data)
    connector = XmlFileConnector(
        XmlFileConfig(path=str(folder), settle_seconds=0, **options)  # type: ignore[arg-type]
    )
    try:
        for batch in connector.read(str(path), None):
            assert len(batch.records) == len(batch.keys)
            assert all(isinstance(r, dict) for r in batch.records)
            for error in batch.errors:
                assert isinstance(error, RowError)
                assert isinstance(error.error, JunctionError)
    except JunctionError:
        return
    finally:
        connector.close()


@fuzz_settings(max_examples=100)
@given(data=st.one_of(xml_bytes(), st.binary(max_size=300)), options=CONFIGS)
def test_xml_reader_raises_only_documented_errors(
    folder: Path, data: bytes, options: dict[str, Any]
) -> None:
    read_file(folder, data, options)
