"""Bounded totals and samples for a large store: estimates where exact counts would read it all."""

from __future__ import annotations

import pytest

from junction.api.dashboard import aggregates, counts
from junction.store.repo import Store
from tests.dashboard.test_aggregates import store  # noqa: F401  (the seeded store)


def test_small_tables_are_counted_exactly(store: Store) -> None:  # noqa: F811
    totals = counts.pipeline_totals(store, "p")
    assert totals.approx == set()
    assert totals.values == {
        "records": 4,
        "scored": 4,
        "quarantined": 5,
        "deliveries_pending": 1,
        "deliveries_delivered": 1,
        "deliveries_dead": 1,
        "attempts": 0,
    }
    assert counts.pipeline_totals(store, "other").values["records"] == 0
    by_channel = counts.channel_counts(store, ["webhook.x", "webhook.y"])
    assert by_channel["webhook.x"].values == {"delivered": 1, "dead": 1, "pending": 1}
    assert "webhook.y" not in by_channel
    assert counts.delivery_totals(store).values == {"delivered": 1, "dead": 1, "pending": 1}


def test_large_tables_are_estimated_and_small_indexed_counts_stay_exact(
    store: Store,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every table counts as large here: unindexed counts are the planner's, marked as such."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("estimates are PostgreSQL's (SQLite always counts exactly)")
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")
    monkeypatch.setattr(counts, "SMALL_TABLE", 0)
    totals = counts.pipeline_totals(store, "p")
    # records and scores have no pipeline index: estimated (from the statistics)
    assert {"records", "scored", "attempts"} <= totals.approx
    assert totals.values["records"] == 4  # ANALYZE saw every row of a small table
    # open quarantine and the outbox by status are indexed and small: exact
    assert not {"quarantined", "deliveries_dead", "deliveries_pending"} & totals.approx
    assert totals.values["quarantined"] == 5
    assert totals.values["deliveries_dead"] == 1
    assert counts.channel_counts(store, ["webhook.x"])["webhook.x"].values["dead"] == 1
    monkeypatch.setattr(counts, "EXACT_MAX", 0)
    assert "deliveries_dead" in counts.pipeline_totals(store, "p").approx
    assert "dead" in counts.delivery_totals(store).approx


def test_histogram_and_variants_read_only_the_newest_scores_of_each_version(
    store: Store,  # noqa: F811
) -> None:
    assert aggregates.model_versions(store, "m") == ["1", "2"]
    assert aggregates.model_versions(store, "none") == []
    # version 1: 0.05 and 0.55 (both 0.5 h ago); version 2: 0.95 (2.5 h) and 1.0 (30 h)
    hist = aggregates.score_histogram(store, "m", bins=10, latest=1)
    assert sum(hist) == 2
    assert hist[9] == 1  # version 2's newest score is 0.95, its older 1.0 is left out
    rows = aggregates.variants(store, "m", latest=1)
    assert [(r["variant"], r["model_version"], r["n"]) for r in rows] == [
        ("challenger", "2", 1),
        ("control", "1", 1),  # one of version 1's two newest (same time) scores
    ]
    assert float(rows[0]["mean"]) == pytest.approx(0.95)
    assert aggregates.score_histogram(store, "m", bins=10, latest=10) == [
        1,
        0,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        2,
    ]


def test_pending_by_channel_reads_the_backlog(store: Store) -> None:  # noqa: F811
    assert aggregates.pending_by_channel(store) == {"webhook.x": 1}
