"""Pushed records go through the pipeline and are stored once per event, on both stores."""

from __future__ import annotations

from pathlib import Path

from junction.pipeline.hub import Hub
from junction.pipeline.push import PushIngestor
from junction.store.inbound import seen
from tests.integration.helpers import write_config

LEAD = {
    "lead_id": "L-1",
    "email": "Ada.Lovelace@Example.com",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "company": "Analytical Engines Ltd",
    "country": "GB",
    "phone": "+44 20 7946 0018",
}


def _hub(tmp_path: Path, store_url: str, models_dir: Path) -> Hub:
    cfg = write_config(
        tmp_path,
        store=store_url,
        url="http://127.0.0.1:9",
        secret="whsec_" + "A" * 32,
        models=models_dir,
    )
    return Hub.from_file(cfg)


def test_push_stores_scores_and_dedupes_by_event(
    tmp_path: Path, store_url: str, models_dir: Path
) -> None:
    hub = _hub(tmp_path, store_url, models_dir)
    try:
        push = PushIngestor(hub.runner("leads"))
        bad = {**LEAD, "email": ""}
        out = push.ingest([LEAD, bad], source="partner", event_id="evt-1")
        assert not out.duplicate
        assert [r["index"] for r in out.stored] == [0]
        assert out.stored[0]["record_id"] == "leads:partner:evt-1:0"
        assert 0.0 <= out.stored[0]["score"]["value"] <= 1.0
        assert [(q["index"], q["stage"]) for q in out.quarantined] == [(1, "validate")]
        assert out.routed in (0, 1)
        assert seen(hub.store, "partner", "evt-1")

        again = push.ingest([LEAD, bad], source="partner", event_id="evt-1")
        assert again.duplicate
        assert again.stored == []
        counts = hub.store.counts("leads")
        assert counts["records"] == 1
        assert counts["quarantined"] == 1
        assert hub.store.fetch_record("leads:partner:evt-1:0") is not None
    finally:
        hub.close()
