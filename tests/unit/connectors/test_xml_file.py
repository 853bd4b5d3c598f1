"""The XML file-drop connector: records, keys, cursors, encodings and hostile documents."""

# ruff: noqa: RUF001 - Cyrillic test data is the point, not a homoglyph mistake

from __future__ import annotations

import gc
import hashlib
from pathlib import Path
from typing import Any

import psutil
import pytest
from pydantic import ValidationError

from connectors.base import Capability, RawBatch, SourceConnector
from connectors.xml_file import XmlFileConfig, XmlFileConnector
from junction.core.errors import (
    DTDForbiddenError,
    EncodingError,
    FieldTooLargeError,
    FileTooLargeError,
    ParseError,
    UnsafeXMLError,
)

CANARY = "CANARY-91b2-do-not-leak"

ORDERS = """<?xml version="1.0" encoding="{enc}"?>
<КоммерческаяИнформация xmlns="urn:1C.ru:commerceml_2" ВерсияСхемы="2.07">
  <Документ><Ид>1</Ид><Сумма>10.50</Сумма>
    <Товары><Товар><Ид>a</Ид></Товар><Товар><Ид>b</Ид></Товар></Товары></Документ>
  <Документ><Ид>2</Ид><Сумма>7</Сумма>
    <Контрагент Роль="Покупатель">ООО «Ромашка»</Контрагент></Документ>
  <Документ><Ид>3</Ид><Сумма/></Документ>
</КоммерческаяИнформация>
"""


def connector(tmp_path: Path, **kw: Any) -> XmlFileConnector:
    kw.setdefault("path", str(tmp_path / "inbox"))
    kw.setdefault("settle_seconds", 0)
    kw.setdefault("record_tag", "Документ")
    return XmlFileConnector(XmlFileConfig(**kw))


def drop(tmp_path: Path, name: str, data: bytes) -> str:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    (inbox / name).write_bytes(data)
    return str(inbox / name)


def read_all(
    conn: XmlFileConnector, stream: str, cursor: dict[str, Any] | None = None
) -> list[RawBatch]:
    return list(conn.read(stream, cursor))


def test_class_contract() -> None:
    assert XmlFileConnector.name == "xml_file"
    assert XmlFileConnector.config_model is XmlFileConfig
    assert XmlFileConnector.capabilities == {Capability.FILES, Capability.DISCOVER}
    assert isinstance(XmlFileConnector(XmlFileConfig(path="/x", record_tag="r")), SourceConnector)
    with pytest.raises(ValidationError):
        XmlFileConfig(path="/x")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        XmlFileConfig(path="/x", record_tag="ns:r")
    schema = XmlFileConfig.model_json_schema()
    assert all(p.get("description") for p in schema["properties"].values())


@pytest.mark.parametrize(
    ("enc", "codec", "prefix"),
    [("utf-8", "utf-8", b""), ("utf-8", "utf-8", b"\xef\xbb\xbf"), ("windows-1251", "cp1251", b"")],
    ids=["utf-8", "utf-8-bom", "cp1251"],
)
def test_records_keys_cursor_and_provenance(
    tmp_path: Path, enc: str, codec: str, prefix: bytes
) -> None:
    data = prefix + ORDERS.format(enc=enc).encode(codec)
    stream = drop(tmp_path, "orders.xml", data)
    sha = hashlib.sha256(data).hexdigest()
    [batch] = read_all(connector(tmp_path), stream)
    assert batch.records == [
        {"Ид": "1", "Сумма": "10.50", "Товары": {"Товар": [{"Ид": "a"}, {"Ид": "b"}]}},
        {"Ид": "2", "Сумма": "7", "Контрагент": {"@Роль": "Покупатель", "#text": "ООО «Ромашка»"}},
        {"Ид": "3", "Сумма": ""},
    ]
    assert batch.keys == [f"{sha[:16]}:{i}" for i in (1, 2, 3)]
    assert batch.positions == [1, 2, 3]
    assert batch.cursor == {"sha256": sha, "row": 3}
    expected = "utf-8-sig" if prefix else enc
    assert batch.provenance["encoding"] == expected
    assert batch.provenance["record_tag"] == "Документ"


def test_explicit_encoding_overrides_the_declaration(tmp_path: Path) -> None:
    data = ORDERS.format(enc="utf-8").encode("cp1251")  # mislabelled file
    stream = drop(tmp_path, "orders.xml", data)
    with pytest.raises(EncodingError):
        read_all(connector(tmp_path), stream)
    [batch] = read_all(connector(tmp_path, encoding="cp1251"), stream)
    assert batch.records[1]["Контрагент"]["#text"] == "ООО «Ромашка»"
    assert batch.provenance["encoding"] == "cp1251"


def test_batches_and_resume_never_re_emit(tmp_path: Path) -> None:
    body = "".join(f"<r><n>{i}</n></r>" for i in range(1, 8))
    stream = drop(tmp_path, "r.xml", f"<root>{body}</root>".encode())
    conn = connector(tmp_path, record_tag="r", batch_size=3)
    batches = read_all(conn, stream)
    assert [b.positions for b in batches] == [[1, 2, 3], [4, 5, 6], [7]]
    again = read_all(conn, stream, batches[0].cursor)
    assert [r["n"] for b in again for r in b.records] == [str(i) for i in range(4, 8)]
    assert read_all(conn, stream, batches[-1].cursor) == []
    drop(tmp_path, "r.xml", f"<root>{body}<r><n>8</n></r></root>".encode())
    replaced = read_all(conn, stream, batches[-1].cursor)
    assert replaced[0].positions[0] == 1
    assert replaced[-1].cursor["row"] == 8


def test_oversized_value_is_a_row_error_and_others_survive(tmp_path: Path) -> None:
    data = f"<root><r><v>ok</v></r><r><v>{'z' * 500}</v></r><r><v>ok2</v></r></root>".encode()
    stream = drop(tmp_path, "big.xml", data)
    [batch] = read_all(connector(tmp_path, record_tag="r", max_field_bytes=100), stream)
    assert batch.records == [{"v": "ok"}, {"v": "ok2"}]
    assert batch.positions == [1, 3]
    [err] = batch.errors
    assert err.position == 2
    assert err.key.endswith(":2")
    assert isinstance(err.error, FieldTooLargeError)
    assert err.error.field == "v"
    assert err.error.context["file"] == stream
    assert b"z" * 500 in err.raw


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    stream = drop(tmp_path, "big.xml", b"<root>" + b"<r/>" * 500 + b"</root>")
    with pytest.raises(FileTooLargeError):
        connector(tmp_path, record_tag="r", max_file_bytes=100).read(stream, None)


def test_empty_file_yields_nothing(tmp_path: Path) -> None:
    assert read_all(connector(tmp_path), drop(tmp_path, "e.xml", b"")) == []


def test_xxe_file_fails_and_the_canary_never_appears(tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_text(CANARY)
    data = f'<!DOCTYPE root [<!ENTITY x SYSTEM "file://{canary}">]><root><r><v>&x;</v></r></root>'
    stream = drop(tmp_path, "xxe.xml", data.encode())
    seen: list[RawBatch] = []
    with pytest.raises(DTDForbiddenError) as info:
        seen.extend(connector(tmp_path, record_tag="r").read(stream, None))
    assert seen == []  # no silent success with empty text
    assert CANARY not in repr(info.value.__dict__)


def test_billion_laughs_fails_as_unsafe(tmp_path: Path) -> None:
    ents = "".join(f'<!ENTITY l{i} "' + f"&l{i - 1};" * 10 + '">' for i in range(1, 10)).replace(
        "&l0;", "lol"
    )
    data = f"<!DOCTYPE root [{ents}]><root><r>&l9;</r></root>".encode()
    with pytest.raises(UnsafeXMLError):
        read_all(connector(tmp_path, record_tag="r"), drop(tmp_path, "bomb.xml", data))


def test_malformed_document_fails_after_earlier_batches(tmp_path: Path) -> None:
    # ~56 KB of good records before the error: lxml reads 32 KB at a time, and lxml 6.x raises
    # a syntax error before the events of the block holding it (5 records in one block gave
    # none), so the records of earlier blocks stream out first
    n = 3000
    good = "".join(f"<r><n>{i}</n></r>\n" for i in range(n))
    stream = drop(tmp_path, "bad.xml", f"<root>\n{good}<r><n>{n}</x></r></root>".encode())
    it = connector(tmp_path, record_tag="r", batch_size=2).read(stream, None)
    first = next(it)
    assert first.positions == [1, 2]
    with pytest.raises(ParseError) as info:
        list(it)
    assert type(info.value) is ParseError
    assert info.value.context["line"] == n + 2
    assert info.value.context["file"] == stream


def test_discover_and_check(tmp_path: Path) -> None:
    drop(tmp_path, "b.xml", b"<root/>")
    drop(tmp_path, "a.xml", b"<root/>")
    conn = connector(tmp_path, path=str(tmp_path / "inbox" / "*.xml"))
    assert [s.name for s in conn.discover()] == [
        str(tmp_path / "inbox" / "a.xml"),
        str(tmp_path / "inbox" / "b.xml"),
    ]
    assert conn.check().ok
    assert not connector(tmp_path, path=str(tmp_path / "missing")).check().ok


def test_200k_records_stream_in_constant_memory(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = inbox / "big.xml"
    with path.open("w", encoding="utf-8") as f:
        f.write(
            '<?xml version="1.0" encoding="utf-8"?>\n<root xmlns="urn:x"><header><v>1</v></header>'
        )
        for i in range(200_000):
            f.write(f'<r id="{i}"><name>Иван Петров</name><email>u{i}@example.com</email></r>\n')
        f.write("</root>\n")
    conn = connector(tmp_path, record_tag="r")
    proc = psutil.Process()
    gc.collect()
    baseline = proc.memory_info().rss
    peak = baseline
    count = 0
    for batch in conn.read(str(path), None):
        count += len(batch.records)
        if batch.positions[0] % 20_000 == 1:
            peak = max(peak, proc.memory_info().rss)
    assert count == 200_000
    assert batch.records[-1] == {
        "@id": "199999",
        "name": "Иван Петров",
        "email": "u199999@example.com",
    }
    assert peak - baseline < 50 * 1024 * 1024
