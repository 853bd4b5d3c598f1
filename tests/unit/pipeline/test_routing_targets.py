"""Routing targets: (channel, route) pairs, `otherwise`, several targets, templates, held rows."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.base import RawBatch
from junction.core.errors import ConfigError
from junction.pipeline.config import PipelineConfig, Route
from junction.pipeline.hygiene import RouteTable
from junction.pipeline.prepare import BatchPreparer
from junction.pipeline.route import Router
from junction.store.repo import DELIVERY_COLS
from schemas import Lead
from scoring.synthetic import generate_lead_csv_rows


def test_route_keys_are_names_or_positions() -> None:
    routes = [
        Route(name="hot", when="score.value >= 0.7", to=["slack.ops"]),
        Route(when='lead.country == "DE"', to=["webhook.de"]),
        Route(otherwise=["webhook.nurture"]),
    ]
    r = Router(routes, "lead")
    assert r.targets(Lead(country="DE"), {"value": 0.9}) == [
        ("slack.ops", "hot"),
        ("webhook.de", "route1"),
    ]
    assert r.targets(Lead(country="US"), {"value": 0.9}) == [("slack.ops", "hot")]
    assert r.targets(Lead(country="US"), {"value": 0.1}) == [("webhook.nurture", "route2")]


def test_several_targets_and_the_first_route_wins_a_channel() -> None:
    routes = [
        Route(name="a", when="score.value >= 0.5", to=["webhook.x", "slack.y", "webhook.x"]),
        Route(name="b", when="score.value >= 0.2", to=["slack.y", "email.z"]),
    ]
    r = Router(routes, "lead")
    want = [("webhook.x", "a"), ("slack.y", "a"), ("email.z", "b")]
    assert r.targets(Lead(), {"value": 0.9}) == want
    assert r.targets_batch([Lead(), Lead()], [{"value": 0.9}, {"value": 0.3}]) == [
        want,
        [("slack.y", "b"), ("email.z", "b")],
    ]
    # nothing matched and no `otherwise`: no targets
    assert r.targets(Lead(), {"value": 0.1}) == []


def test_several_otherwise_routes_keep_their_keys() -> None:
    routes = [
        Route(when="score.value >= 0.5", to=["webhook.x"]),
        Route(name="fallback", otherwise=["webhook.n", "slack.n"]),
        Route(otherwise=["slack.n", "email.n"]),
    ]
    r = Router(routes, "lead")
    assert r.targets_batch([Lead()], [{"value": 0.1}]) == [
        [("webhook.n", "fallback"), ("slack.n", "fallback"), ("email.n", "route2")]
    ]


def _pipeline(routes: list[dict[str, Any]]) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "source": {"connector": "csv_file", "path": "inbox/*.csv"},
            "mapping": "csv.lead",
            "routes": routes,
        }
    )


def test_route_table_picks_route_and_digest_templates() -> None:
    p = _pipeline(
        [
            {"name": "hot", "when": "true", "to": ["slack.ops"], "template": "hot_lead"},
            {
                "when": "true",
                "to": ["email.team"],
                "digest": {"window_s": 60, "template": "hot_digest"},
            },
            {"otherwise": ["webhook.n"]},
        ]
    )
    table = RouteTable({"leads": p})
    assert table.template("leads", "hot", "leads:1:slack_ops") == "hot_lead"
    assert table.template("leads", "route1", "leads:1:email_team") is None
    assert table.template("leads", "route1", "digest:leads:route1:email_team:ab") == "hot_digest"
    assert table.template("leads", "route2", "leads:1:webhook_n") is None
    assert table.template("other", "hot", "x") is None
    assert table.template("leads", None, "x") is None
    assert table.hygienic_keys == {"route1"}


def test_a_bad_dedupe_key_is_a_config_error() -> None:
    p = _pipeline([{"when": "true", "to": ["slack.ops"], "dedupe": {"key": "record.[["}}])
    with pytest.raises(ConfigError, match=r"dedupe\.key"):
        RouteTable({"leads": p})


def test_prepared_deliveries_carry_their_route_and_digest_routes_are_held() -> None:
    p = _pipeline(
        [
            {"name": "hot", "when": 'lead.country == "DE"', "to": ["slack.ops", "webhook.crm"]},
            {"name": "daily", "when": "true", "to": ["email.team"], "digest": {"window_s": 60}},
            {"otherwise": ["webhook.nurture"]},
        ]
    )
    rows = list(generate_lead_csv_rows(40, seed=3, messy=False))
    batch = RawBatch(
        stream="leads.csv",
        records=rows,
        keys=[str(i) for i in range(len(rows))],
        positions=list(range(len(rows))),
        cursor={},
    )
    prepared = BatchPreparer("leads", p, "csv_file", None).prepare(batch, None)
    assert len(prepared.records) == 40
    col = {name: i for i, name in enumerate(DELIVERY_COLS)}
    by_record: dict[str, dict[str, tuple[str, str]]] = {}
    for d in prepared.deliveries:
        assert len(d) == len(DELIVERY_COLS)
        by_record.setdefault(d[col["record_id"]], {})[d[col["channel"]]] = (
            d[col["route"]],
            d[col["status"]],
        )
        assert "." not in d[col["id"]]
    # every record matches `daily` (held for its digest); German ones also go to `hot`
    assert len(by_record) == 40
    for targets in by_record.values():
        assert targets["email.team"] == ("daily", "held")
        if "slack.ops" in targets:
            assert targets["slack.ops"] == targets["webhook.crm"] == ("hot", "pending")
        assert "webhook.nurture" not in targets
    assert any("slack.ops" in targets for targets in by_record.values())
