"""The SAP IDoc file-drop connector: records, routing by control record, malformed files."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.sap_idoc import SapIdocConfig, SapIdocConnector
from connectors.sap_idoc.connector import idoc_version
from junction.core.errors import DTDForbiddenError, ParseError
from tests.contract.fixtures.sap_idoc import idoc, idoc_file


def _conn(path: Path, **options) -> SapIdocConnector:
    return SapIdocConnector(
        SapIdocConfig.model_validate({"path": str(path), "settle_seconds": 0, **options})
    )


def _write(tmp_path: Path, text: str, name: str = "drop.xml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_one_record_per_idoc_with_segments_as_lists(tmp_path):
    nested = '<E1EDKA1 SEGMENT="1"><PARVW>AG</PARVW><E1EDKA3 SEGMENT="1"/></E1EDKA1>'
    path = _write(tmp_path, idoc_file([idoc(1, body=nested), idoc(2)]))
    batches = list(_conn(path).read(str(path), None))
    records = [r for b in batches for r in b.records]
    assert len(records) == 2
    first = records[0]
    assert first["EDI_DC40"]["MESTYP"] == "ORDERS"  # the control record is one dict
    assert first["E1EDK01"] == [{"CURCY": "EUR", "BELNR": "4500000001"}]
    assert first["E1EDKA1"] == [{"PARVW": "AG", "E1EDKA3": [{}]}]
    assert "SEGMENT" not in str(first)
    assert batches[0].keys == ["SAPT01/100/0000000000000001", "SAPT01/100/0000000000000002"]
    assert batches[0].versions == [
        "20260301120001/0000000000000001",
        "20260301120002/0000000000000002",
    ]
    assert batches[0].positions == [1, 2]
    assert batches[-1].cursor["row"] == 2


def test_values_are_stripped_and_empty_fields_kept(tmp_path):
    body = '<E1EDK14 SEGMENT="1"><QUALF>014</QUALF><ORGID>  1010   </ORGID><X></X></E1EDK14>'
    path = _write(tmp_path, idoc_file([idoc(1, body=body)]))
    (record,) = next(iter(_conn(path).read(str(path), None))).records
    assert record["E1EDK14"] == [{"QUALF": "014", "ORGID": "1010", "X": ""}]


def test_routing_uses_the_control_record_not_the_root_tag(tmp_path):
    # both are ORDERS05 files; only the control record tells an order from a confirmation
    path = _write(tmp_path, idoc_file([idoc(1), idoc(2, mestyp="ORDRSP"), idoc(3)]))
    (batch,) = list(_conn(path, message_types=["orders"]).read(str(path), None))
    assert [r["EDI_DC40"]["DOCNUM"] for r in batch.records] == [
        "0000000000000001",
        "0000000000000003",
    ]
    (err,) = batch.errors
    assert err.position == 2
    assert err.error.code == "idoc_not_selected"
    assert "ORDRSP/ORDERS05" in err.error.user_message
    assert batch.cursor["row"] == 3


def test_other_types_can_be_skipped_silently(tmp_path):
    path = _write(tmp_path, idoc_file([idoc(1), idoc(2, mestyp="ORDRSP")]))
    (batch,) = list(_conn(path, message_types=["ORDRSP"], other_types="skip").read(str(path), None))
    assert [r["EDI_DC40"]["MESTYP"] for r in batch.records] == ["ORDRSP"]
    assert batch.errors == []


def test_idoc_types_match_the_basic_or_the_extension_type(tmp_path):
    ext = idoc(2, mestyp="DEBMAS", idoctyp="DEBMAS07").replace(
        "</IDOCTYP>", "</IDOCTYP><CIMTYP>ZDEBMAS07</CIMTYP>"
    )
    path = _write(tmp_path, idoc_file([idoc(1), ext], root="DEBMAS07"))
    (batch,) = list(_conn(path, idoc_types=["ZDEBMAS07"]).read(str(path), None))
    assert [r["EDI_DC40"]["CIMTYP"] for r in batch.records] == ["ZDEBMAS07"]
    assert len(batch.errors) == 1


def test_resume_after_a_batch_and_restart_for_a_replaced_file(tmp_path):
    path = _write(tmp_path, idoc_file([idoc(i) for i in range(1, 6)]))
    conn = _conn(path, batch_size=2)
    first = list(conn.read(str(path), None))
    resumed = list(conn.read(str(path), first[0].cursor))
    assert [k for b in resumed for k in b.keys] == [k for b in first[1:] for k in b.keys]
    assert list(conn.read(str(path), first[-1].cursor)) == []
    path.write_text(idoc_file([idoc(9)]), encoding="utf-8")
    again = list(conn.read(str(path), first[-1].cursor))
    assert [r["EDI_DC40"]["DOCNUM"] for b in again for r in b.records] == ["0000000000000009"]


def test_a_docnum_twice_in_one_file_keeps_keys_unique(tmp_path):
    path = _write(tmp_path, idoc_file([idoc(1), idoc(1)]))
    (batch,) = list(_conn(path).read(str(path), None))
    assert len(set(batch.keys)) == 2


def _lines(*parts: str) -> str:
    return "\n".join(parts) + "\n"


MALFORMED = {
    "no control record": (
        _lines(
            "<ORDERS05>",
            '<IDOC BEGIN="1">',
            '<E1EDK01 SEGMENT="1"><BELNR>1</BELNR></E1EDK01>',
            "</IDOC>",
            "</ORDERS05>",
        ),
        2,
        "EDI_DC40 is not its first child",
    ),
    "no message type": (
        _lines(
            "<ORDERS05>",
            idoc(1),
            '<IDOC BEGIN="1">',
            '<EDI_DC40 SEGMENT="1"><IDOCTYP>ORDERS05</IDOCTYP><MESTYP> </MESTYP></EDI_DC40>',
            "</IDOC>",
            "</ORDERS05>",
        ),
        4,
        "EDI_DC40 has no MESTYP",
    ),
    "two control records": (
        _lines(
            "<ORDERS05>",
            idoc(1).replace("<E1EDK01", "\n<EDI_DC40 SEGMENT='1'/><E1EDK01"),
            "</ORDERS05>",
        ),
        3,
        "2 EDI_DC40 records",
    ),
    "a field outside a segment": (
        _lines(
            "<ORDERS05>", idoc(1).replace("</IDOC>", "\n<BELNR>1</BELNR></IDOC>"), "</ORDERS05>"
        ),
        3,
        "<BELNR> holds a value outside any segment",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_a_malformed_idoc_rejects_the_file_before_any_batch(tmp_path, case):
    text, line, reason = MALFORMED[case]
    path = _write(tmp_path, text)
    with pytest.raises(ParseError) as info:
        _conn(path).read(str(path), None)  # raised by the call itself: no batch exists yet
    err = info.value
    assert err.code == "malformed_idoc"
    assert err.context["line"] == line
    assert reason in err.context["reason"]
    assert f"line {line}" in err.user_message
    assert err.context["file"] == str(path)


def test_broken_xml_late_in_the_file_is_rejected_with_its_line(tmp_path):
    # the ZMATMAS05 pitfall: a raw & from string concatenation, after a good IDoc
    bad = idoc(2).replace("<CURCY>EUR", "<CURCY>EUR & USD")
    path = _write(tmp_path, _lines("<ORDERS05>", idoc(1), bad, "</ORDERS05>"))
    with pytest.raises(ParseError) as info:
        _conn(path).read(str(path), None)
    assert info.value.context["line"] == 3
    assert "line 3" in info.value.user_message


def test_a_file_without_idocs_is_rejected(tmp_path):
    path = _write(tmp_path, "<ORDERS05><NOTANIDOC/></ORDERS05>")
    with pytest.raises(ParseError, match="no IDOC element"):
        _conn(path).read(str(path), None)


def test_a_doctype_is_refused(tmp_path):
    text = '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + idoc_file([idoc(1)]).split(
        "\n", 1
    )[1].replace("<CURCY>EUR", "<CURCY>&x;")
    path = _write(tmp_path, text)
    with pytest.raises(DTDForbiddenError):
        _conn(path).read(str(path), None)


def test_an_oversized_value_fails_only_its_idoc(tmp_path):
    big = idoc(2, body=f'<E1EDKT1 SEGMENT="1"><TDLINE>{"x" * 600}</TDLINE></E1EDKT1>')
    path = _write(tmp_path, idoc_file([idoc(1), big, idoc(3)]))
    (batch,) = list(_conn(path, max_field_bytes=100).read(str(path), None))
    assert len(batch.records) == 2
    (err,) = batch.errors
    assert err.error.code == "field_too_large"
    assert err.position == 2


def test_an_empty_file_yields_nothing(tmp_path):
    path = _write(tmp_path, "")
    assert list(_conn(path).read(str(path), None)) == []


@pytest.mark.parametrize(
    ("control", "expected"),
    [
        (
            {"CREDAT": "20260301", "CRETIM": "101500", "DOCNUM": "42"},
            "20260301101500/0000000000000042",
        ),
        ({"CREDAT": "00000000", "CRETIM": "101500", "DOCNUM": "42"}, None),
        ({"CREDAT": "20260301", "DOCNUM": "42"}, "20260301000000/0000000000000042"),
        ({"DOCNUM": "42"}, None),
    ],
    ids=["stamp", "empty-date", "no-time", "no-date"],
)
def test_versions_sort_by_creation_time(control, expected):
    assert idoc_version(control) == expected


def test_cp1251_declared_files_decode(tmp_path):
    text = idoc_file([idoc(1, body='<E1EDKA1 SEGMENT="1"><NAME1>Ромашка Трейд</NAME1></E1EDKA1>')])
    text = text.replace("encoding='utf-8'", "encoding='windows-1251'")
    path = tmp_path / "cp.xml"
    path.write_bytes(text.encode("cp1251"))
    (batch,) = list(_conn(path).read(str(path), None))
    assert batch.records[0]["E1EDKA1"][0]["NAME1"] == "Ромашка Трейд"
    assert batch.provenance["encoding"] == "windows-1251"
