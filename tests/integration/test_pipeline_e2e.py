"""File drop → canonical → rules → score → route → outbox → webhook, SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from junction.pipeline.hub import Hub
from junction.pipeline.replay import replay
from outbound.webhook.config import generate_secret
from outbound.webhook.sink import WebhookSink, read_sink_file
from scoring.synthetic import write_lead_csv
from tests.integration.helpers import rows_of, run_once_and_quarantine, scalar, write_config


@pytest.fixture
def secret() -> str:
    return generate_secret()


def test_file_drop_end_to_end(
    tmp_path: Path, store_url: str, models_dir: Path, secret: str
) -> None:
    with WebhookSink(secret, tmp_path / "sink.jsonl") as sink:
        cfg = write_config(
            tmp_path, store=store_url, url=sink.url, secret=secret, models=models_dir
        )
        n = write_lead_csv(tmp_path / "inbox" / "leads.csv", 3000, seed=11, messy=True)
        hub = Hub.from_file(cfg)
        try:
            [summary] = hub.run_once()
            stats = hub.deliver(drain_wait_s=5)
            counts = hub.store.counts()
        finally:
            hub.close()
        sink_stats = sink.stats()

    assert summary.read == n == 3000
    # nothing lost: every row is either a canonical record or in quarantine
    assert counts["records"] + counts["quarantined"] == n
    assert 0 < counts["quarantined"] < n * 0.05
    assert counts["scored"] == counts["records"]
    # every record is routed to exactly one of the two channels
    assert counts["deliveries_delivered"] == counts["records"] == stats.delivered
    assert counts["deliveries_pending"] == counts["deliveries_dead"] == 0
    assert sink_stats["verified"] == sink_stats["unique"] == counts["records"]
    assert sink_stats["rejected"] == 0
    # the file was archived only after it was committed
    assert not (tmp_path / "inbox" / "leads.csv").exists()
    assert (tmp_path / "processed" / "leads.csv").exists()
    # grade and routing agree with the score
    bad = scalar(
        store_url,
        "SELECT count(*) FROM deliveries d JOIN scores s ON s.record_id = d.record_id "
        "WHERE (s.value >= 0.5 AND d.channel <> 'webhook.sales') "
        "OR (s.value < 0.5 AND d.channel <> 'webhook.nurture')",
    )
    assert bad == 0
    # records carry the source system's own key (the CRM's lead id), ids stay positional
    keys = rows_of(store_url, "SELECT id, source_key, payload FROM records")
    assert all(json.loads(p)["external_id"] == k for _, k, p in keys)
    bodies = read_sink_file(tmp_path / "sink.jsonl")
    event = (
        json.loads(bodies[0]["body"]) if isinstance(bodies[0]["body"], str) else bodies[0]["body"]
    )
    assert event["source_key"] == event["record"]["external_id"]
    assert event["score"]["grade"] in "ABCD"
    assert {b["webhook_id"] for b in bodies} == {
        r[0] for r in rows_of(store_url, "SELECT id FROM deliveries")
    }


def test_rerun_and_redrop_are_idempotent(
    tmp_path: Path, store_url: str, models_dir: Path, secret: str
) -> None:
    with WebhookSink(secret, tmp_path / "sink.jsonl") as sink:
        cfg = write_config(
            tmp_path, store=store_url, url=sink.url, secret=secret, models=models_dir
        )
        write_lead_csv(tmp_path / "inbox" / "a.csv", 500, seed=3, messy=False)
        hub = Hub.from_file(cfg)
        try:
            hub.run_once()
            hub.deliver(drain_wait_s=5)
            first = hub.store.counts()
            # the same content dropped again under another name
            write_lead_csv(tmp_path / "inbox" / "b.csv", 500, seed=3, messy=False)
            [again] = hub.run_once()
            hub.deliver(drain_wait_s=5)
            second = hub.store.counts()
        finally:
            hub.close()
        assert sink.stats()["unique"] == first["deliveries_delivered"]
    assert again.stored == 0
    assert second == first
    assert (tmp_path / "processed" / "b.csv").exists()


def test_bad_rows_are_quarantined_with_field_and_original_bytes(
    tmp_path: Path, store_url: str, models_dir: Path, secret: str
) -> None:
    cfg = write_config(
        tmp_path, store=store_url, url="http://127.0.0.1:9", secret=secret, models=models_dir
    )
    path = tmp_path / "inbox" / "mixed.csv"
    write_lead_csv(path, 20, seed=5, messy=False)
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    rows[5][3] = "not-an-email"  # data row 5: email
    rows[9][0:1] = []  # data row 9: one field short (ragged)
    rows[12][3] = ""  # data row 12: no email → fails the has_email rule
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    hub = Hub.from_file(cfg)
    try:
        [s] = hub.run_once()
        items = {q["record_key"].rsplit(":", 1)[1]: q for q in hub.store.list_quarantine()}
    finally:
        hub.close()
    assert s.read == 20
    assert s.stored == 17
    assert s.quarantined == 3
    assert items["5"]["stage"] == "normalize"
    assert items["5"]["error_code"] == "mapping_error"
    assert '"field":"email"' in items["5"]["context"]
    assert "not-an-email" not in items["5"]["message"]  # personal data never in messages
    assert b"not-an-email" in items["5"]["payload"]  # ...but the original is kept for replay
    assert items["9"]["stage"] == "extract"
    assert items["12"]["stage"] == "validate"
    assert '"rule":"has_email"' in items["12"]["context"]


def test_undecodable_file_is_quarantined_whole(
    tmp_path: Path, store_url: str, models_dir: Path, secret: str
) -> None:
    cfg = write_config(
        tmp_path, store=store_url, url="http://127.0.0.1:9", secret=secret, models=models_dir
    )
    text = "lead_id,first_name,last_name,email\n1,Иван,Петров,ivan@example.com\n"
    (tmp_path / "inbox" / "bad.csv").write_bytes(
        text.encode("utf-8") + b"2,\xff\xfe,x,y@example.com\n"
    )
    (tmp_path / "cfg-override.yaml").write_text(
        cfg.read_text().replace("settle_seconds: 0", "settle_seconds: 0\n      encoding: utf-8")
    )
    s, [q], records = run_once_and_quarantine(Hub.from_file(tmp_path / "cfg-override.yaml"))
    assert s.files_failed == 1
    assert records == 0
    assert q["stage"] == "extract"
    assert q["error_code"] == "encoding_error"
    assert q["payload"].endswith(b"\xff\xfe,x,y@example.com\n")
    assert (tmp_path / "rejected" / "bad.csv").exists()


@pytest.mark.parametrize(
    ("limit", "code", "error"),
    [
        ("max_rows: 5", "too_many_rows", "TooManyRowsError"),  # RELIABILITY case 28
        ("max_file_bytes: 1000", "file_too_large", "FileTooLargeError"),  # case 19
    ],
)
def test_a_file_over_a_limit_is_quarantined_whole_with_its_reason(
    tmp_path: Path, store_url: str, models_dir: Path, secret: str, limit: str, code: str, error: str
) -> None:
    cfg = write_config(
        tmp_path, store=store_url, url="http://127.0.0.1:9", secret=secret, models=models_dir
    )
    rows = "".join(f"{i},Ada,Lovelace,ada{i}@example.com\n" for i in range(40))  # ~1.2 kB
    (tmp_path / "inbox" / "big.csv").write_text("lead_id,first_name,last_name,email\n" + rows)
    (tmp_path / "cfg-override.yaml").write_text(
        cfg.read_text().replace("settle_seconds: 0", f"settle_seconds: 0\n      {limit}")
    )
    s, [q], records = run_once_and_quarantine(Hub.from_file(tmp_path / "cfg-override.yaml"))
    assert (s.files_failed, records) == (1, 0)  # refused whole: not even the first rows
    assert (q["stage"], q["error_code"]) == ("extract", code)
    assert q["payload"].startswith(b"lead_id,first_name")
    assert (tmp_path / "rejected" / "big.csv").exists()
    [reason] = (tmp_path / "rejected").glob("big.csv*reason*")
    assert error in reason.read_text()


def test_route_errors_quarantine_the_record_and_write_nothing_else(
    tmp_path: Path, models_dir: Path, secret: str
) -> None:
    store = f"sqlite:///{tmp_path / 'j.db'}"
    cfg = write_config(
        tmp_path, store=store, url="http://127.0.0.1:9", secret=secret, models=models_dir
    )
    # employees is missing on some leads: `null > 100` has no CEL overload, so routing fails
    cfg.write_text(cfg.read_text().replace('"score.value >= 0.5"', '"lead.employees > 100"'))
    path = tmp_path / "inbox" / "l.csv"
    write_lead_csv(path, 30, seed=8, messy=False)
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    rows[4][11] = ""  # data row 4 has no employee count
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    hub = Hub.from_file(cfg)
    try:
        [s] = hub.run_once()
        items = hub.store.list_quarantine()
    finally:
        hub.close()
    assert {q["stage"] for q in items} == {"route"}
    assert any(q["record_key"].endswith(":4") for q in items)
    assert s.stored == 30 - len(items)
    assert scalar(store, "SELECT count(*) FROM scores") == s.stored
    assert scalar(store, "SELECT count(*) FROM deliveries") == s.stored
    scored = {r[0] for r in rows_of(store, "SELECT record_id FROM scores")}
    assert scored == {r[0] for r in rows_of(store, "SELECT id FROM records")}


def test_replaying_a_quarantined_record_after_the_fix_stores_it_once(
    tmp_path: Path, models_dir: Path, secret: str
) -> None:
    store = f"sqlite:///{tmp_path / 'j.db'}"
    cfg = write_config(
        tmp_path, store=store, url="http://127.0.0.1:9", secret=secret, models=models_dir
    )
    path = tmp_path / "inbox" / "l.csv"
    write_lead_csv(path, 5, seed=6, messy=False)
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    rows[2][3] = ""  # data row 2 has no email: the has_email rule quarantines it
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    hub = Hub.from_file(cfg)
    try:
        hub.run_once()
        [q] = hub.store.list_quarantine()
        assert replay(hub, q["id"]) == "record failed again; it has a new open quarantine entry"
        [again] = hub.store.list_quarantine()
        assert again["id"] != q["id"]
        assert again["record_key"] == q["record_key"]
    finally:
        hub.close()
    # the fix: the rule is dropped from the pipeline
    cfg.write_text(
        cfg.read_text().replace(
            '    rules:\n      - {name: has_email, expr: "lead.email != null"}\n', ""
        )
    )
    hub = Hub.from_file(cfg)
    try:
        assert replay(hub, again["id"]) == "record stored"
        assert replay(hub, again["id"]) == "already replayed"
        assert hub.store.list_quarantine() == []
        assert hub.store.counts()["records"] == 5
    finally:
        hub.close()
