"""The dashboard's own store aggregates, on SQLite and PostgreSQL, against rows with known times."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from junction.api.dashboard import aggregates
from junction.store import tables as t
from junction.store.repo import Store

NOW = 1_800_000_000.0
HOUR = 3600.0


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store.open(store_url)
    records = [
        # id, source key, received (hours ago), score
        ("p:a:1", "K-1", 0.5, 0.05),
        ("p:a:2", "K-2", 0.5, 0.55),
        ("p:a:3", "K-3", 2.5, 0.95),
        ("p:a:4", "K-1", 30.0, 1.0),  # a later version of K-1, outside a 24 h window
    ]
    with s.begin() as conn:
        for rid, key, ago, value in records:
            at = NOW - ago * HOUR
            conn.execute(
                t.records.insert().values(
                    id=rid,
                    pipeline="p",
                    entity="lead",
                    source_system="csv_file",
                    source_key=key,
                    schema_version="lead.v1",
                    payload="{}",
                    provenance="{}",
                    received_at=at,
                )
            )
            conn.execute(
                t.scores.insert().values(
                    record_id=rid,
                    model_version="1" if value < 0.9 else "2",
                    model="m",
                    value=value,
                    grade="A" if value >= 0.9 else "C",
                    factors="[]",
                    variant="control" if value < 0.9 else "challenger",
                    scored_at=at,
                )
            )
        for did, status, ago in (
            ("d1", "delivered", 0.5),
            ("d2", "dead", 0.5),
            ("d3", "pending", 3),
        ):
            at = NOW - ago * HOUR
            conn.execute(
                t.deliveries.insert().values(
                    id=did,
                    record_id="p:a:1",
                    pipeline="p",
                    channel="webhook.x",
                    event_type="lead.scored",
                    payload="{}",
                    status=status,
                    attempts=1,
                    next_attempt_at=at,
                    created_at=at,
                    delivered_at=at if status == "delivered" else None,
                )
            )
        for key, code, status in (
            ("p:a:9", "rule_failed", "open"),
            ("p:a:8", "rule_failed", "open"),
            ("p:a:7", "mapping_error", "open"),
            ("p:a:1#1", "mapping_error", "replayed"),  # p:a:1's earlier failure
            ("p:a:10", "mapping_error", "open"),  # not p:a:1's: a longer key
            ("p_a_1#1", "mapping_error", "open"),  # `_` is no LIKE wildcard here
        ):
            conn.execute(
                t.quarantine.insert().values(
                    pipeline="p",
                    stage="validate" if code == "rule_failed" else "normalize",
                    record_key=key,
                    error_type="RuleError",
                    error_code=code,
                    message=f"{code} {key}",
                    context="{}",
                    provenance="{}",
                    status=status,
                    created_at=NOW - HOUR,
                )
            )
    yield s
    s.close()


def test_timeline_counts_each_stage_in_its_hour(store: Store) -> None:
    tl = aggregates.timeline(store, hours=24, buckets=24, now=NOW)
    assert tl.bucket_s == 3600
    assert sum(tl.series["received"]) == 3  # the 30 h old record is outside
    assert tl.series["received"][-1] == 2  # half an hour ago: the last bucket
    assert tl.series["received"][-3] == 1  # 2.5 h ago
    assert tl.series["scored"][-1] == 2
    assert tl.series["delivered"][-1] == 1
    assert tl.series["dead"][-1] == 1
    assert sum(tl.series["quarantined"]) == 6
    assert tl.series["quarantined"][-1] == 6  # exactly one hour ago: the last bucket's start
    only = aggregates.timeline(store, hours=24, buckets=24, pipeline="other", now=NOW)
    assert sum(sum(v) for v in only.series.values()) == 0


def test_outbox_lag_and_delivery_totals(store: Store) -> None:
    lag = aggregates.outbox_lag(store, now=NOW)
    assert lag == {"pending": 1, "due": 1, "oldest_age_s": pytest.approx(3 * HOUR)}
    assert aggregates.delivery_totals(store) == {"delivered": 1, "dead": 1, "pending": 1}


def test_quarantine_groups_count_open_entries_by_error(store: Store) -> None:
    groups = aggregates.quarantine_groups(store)
    assert [(g["stage"], g["error_code"], g["n"]) for g in groups] == [
        ("normalize", "mapping_error", 3),
        ("validate", "rule_failed", 2),
    ]


def test_records_by_source_key_and_a_records_quarantine_history(store: Store) -> None:
    found = aggregates.find_records(store, "K-1")
    assert [r["id"] for r in found] == ["p:a:1", "p:a:4"]  # newest first
    assert aggregates.find_records(store, "K-1", pipeline="other") == []
    history = aggregates.quarantine_history(store, "p:a:1")
    assert [h["status"] for h in history] == ["replayed"]


def test_score_histogram_and_variants(store: Store) -> None:
    hist = aggregates.score_histogram(store, "m", bins=10)
    assert hist == [1, 0, 0, 0, 0, 1, 0, 0, 0, 2]  # 1.0 falls in the last bin
    rows = aggregates.variants(store, "m")
    assert [(r["variant"], r["model_version"], r["n"], r["a"]) for r in rows] == [
        ("challenger", "2", 2, 2),
        ("control", "1", 2, 0),
    ]
    assert float(rows[1]["mean"]) == pytest.approx(0.30)
