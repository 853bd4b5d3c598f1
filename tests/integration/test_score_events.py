"""Delivered events explain their score: reason codes in words and the data-sufficiency flag."""

from __future__ import annotations

import json
from pathlib import Path

from scoring.synthetic import write_lead_csv
from tests.integration.helpers import rows_of, run_once, write_config


def _events(store_url: str) -> list[dict]:
    return [json.loads(p) for (p,) in rows_of(store_url, "SELECT payload FROM deliveries")]


def test_events_carry_reasons_matching_their_top_factors(
    tmp_path: Path, store_url: str, models_dir: Path
) -> None:
    cfg = write_config(
        tmp_path, store=store_url, url="http://127.0.0.1:9", secret="s" * 32, models=models_dir
    )
    inbox = tmp_path / "inbox" / "a.csv"
    write_lead_csv(inbox, 120, seed=8)
    with inbox.open("a", encoding="utf-8") as f:  # two leads with almost nothing known
        f.write("L90000001,,,thin.one@example.org,,,,,,,,,,,,,,2025-05-01T10:00:00Z\n")
        f.write("L90000002,,,thin.two@example.org,,,,,,,,,,,,,,2025-05-01T10:00:00Z\n")
    run_once(cfg)
    events = _events(store_url)
    assert len(events) > 100
    flags = set()
    for event in events:
        score = event["score"]
        factors, reasons = score["top_factors"], score["reasons"]
        assert len(reasons) == len(factors)
        for (_, contribution), reason in zip(factors, reasons, strict=True):
            assert reason["direction"] == ("positive" if contribution > 0 else "negative")
            assert reason["code"].isupper()
            assert reason["text"]
            assert event["record"].get("email", "\0") not in reason["text"]
        flags.add(score["data_sufficient"])
    assert flags == {True, False}


def test_rules_scorer_events_carry_its_reasons(tmp_path: Path, store_url: str) -> None:
    cfg = write_config(
        tmp_path, store=store_url, url="http://127.0.0.1:9", secret="s" * 32, models=tmp_path
    )
    cfg.write_text(
        cfg.read_text().replace(
            "scoring: {model: lead-score}", "scoring: {model: lead-score, scorer: rules_lead}"
        )
    )
    write_lead_csv(tmp_path / "inbox" / "a.csv", 60, seed=9)
    run_once(cfg)
    events = _events(store_url)
    assert events
    assert all(e["score"]["model"] == "rules" for e in events)
    assert any(e["score"]["reasons"] for e in events)
    assert all(isinstance(e["score"]["data_sufficient"], bool) for e in events)
