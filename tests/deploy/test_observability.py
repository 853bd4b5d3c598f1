"""Alert rules and the Grafana dashboard query only series that Junction exports."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.deploy.support import DEPLOY, exported_metric_names

# a dev-extra tool: without it (an old venv) the module skips, naming what to install
promql_parser = pytest.importorskip("promql_parser", reason="install the dev extra (promql-parser)")

ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
DASHBOARD = DEPLOY / "grafana" / "junction-dashboard.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
# series Prometheus itself writes for every scrape target
PROMETHEUS_SERIES = {"up"}
# kafka-exporter's consumer-group series (the compose stack runs it; the stage alerts and the
# stage-lag panel read them)
KAFKA_EXPORTER_SERIES = {"kafka_consumergroup_lag", "kafka_consumergroup_current_offset_sum"}
# what the issue asks alerts for, by the series each one reads (drift has no series yet)
REQUIRED_ALERTS = {
    "outbox lag": "junction_outbox_lag_seconds",
    "quarantine growth": "junction_quarantined_total",
    "delivery failure rate": "junction_deliveries_total",
    "consumer lag": "junction_consumer_lag",
    "stage consumer lag": "kafka_consumergroup_lag",
    "drift": "junction_drift_status",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (parsed, not pattern-matched)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if type(node).__name__ == "VectorSelector":
            if node.name is None:
                raise ValueError(f"selector without a metric name in {expr!r}")
            found.add(node.name)
        for attr in ("lhs", "rhs", "expr", "vector_selector", "param"):
            child = getattr(node, attr, None)
            if child is not None:
                walk(child)
        for child in getattr(node, "args", None) or []:
            walk(child)

    walk(promql_parser.parse(expr))
    return found


def _grafana_to_promql(expr: str) -> str:
    """Grafana's variables replaced by what they expand to, so the query parses as PromQL."""
    expr = expr.replace("$__rate_interval", "5m")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def test_the_name_extraction_sees_every_selector() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (le) (rate(a_bucket{x="y"}[5m]))) / -(b) '
        "+ max_over_time(c[5m:1m]) and on() absent(d) or topk(3, e)"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c", "d", "e"}


def test_the_exported_names_include_histogram_and_counter_series() -> None:
    exported = exported_metric_names()
    for suffix in ("_bucket", "_sum", "_count"):
        assert f"junction_delivery_seconds{suffix}" in exported
    assert "junction_deliveries_total" in exported
    assert "junction_deliveries" not in exported  # counters are only exposed with _total
    assert "junction_outbox_lag_seconds" in exported  # the scrape-time collector


def test_alert_rules_are_well_formed() -> None:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert set(doc) == {"groups"}
    names = []
    for group in doc["groups"]:
        assert set(group) == {"name", "rules"}
        for rule in group["rules"]:
            assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
            assert re.fullmatch(r"Junction[A-Za-z]+", rule["alert"])
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert {"summary", "description"} <= set(rule["annotations"])
            names.append(rule["alert"])
    assert len(names) == len(set(names))


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: r["alert"])
def test_alert_expressions_use_exported_metrics(rule: dict[str, Any]) -> None:
    used = metric_names(rule["expr"])
    assert used
    assert used <= exported_metric_names() | PROMETHEUS_SERIES | KAFKA_EXPORTER_SERIES, used


def test_the_requested_alerts_exist() -> None:
    used = set().union(*(metric_names(r["expr"]) for r in _rules()))
    for what, series in REQUIRED_ALERTS.items():
        assert series in used, what


def test_dashboard_queries_use_exported_metrics() -> None:
    allowed = exported_metric_names() | PROMETHEUS_SERIES | KAFKA_EXPORTER_SERIES
    dash = _dashboard()
    exprs = [t["expr"] for panel in dash["panels"] for t in panel["targets"]]
    assert len(exprs) >= 10
    for expr in exprs:
        used = metric_names(_grafana_to_promql(expr))
        assert used, expr
        assert used <= allowed, expr
    for var in dash["templating"]["list"]:
        m = re.fullmatch(r"label_values\((\w+), *\w+\)", var["query"]["query"])
        assert m, var["name"]
        assert m.group(1) in allowed
    # together the panels show every series Junction exports
    shown = set().union(*(metric_names(_grafana_to_promql(e)) for e in exprs))
    families = {
        re.sub(r"_(total|bucket|sum|count|created)$", "", n)
        for n in allowed - KAFKA_EXPORTER_SERIES
    }
    shown_families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in shown}
    assert families - shown_families <= PROMETHEUS_SERIES - shown


def test_dashboard_layout_and_datasource() -> None:
    dash = _dashboard()
    uid = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"][0]["uid"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert dash["uid"] == "junction-overview"
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == uid
        assert all(t["datasource"]["uid"] == uid for t in panel["targets"])
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24
    used_vars = set(re.findall(r"\$(\w+)", json.dumps(dash["panels"]))) - {"__rate_interval"}
    assert used_vars == {v["name"] for v in dash["templating"]["list"]}
