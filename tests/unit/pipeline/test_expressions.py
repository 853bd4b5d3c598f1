from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from junction.core.errors import ConfigError, RuleError
from junction.pipeline.config import DeliveryConfig, Route
from junction.pipeline.expressions import Expression
from junction.pipeline.route import (
    Router,
    check_rules_compile,
    delivery_id,
    failed_rule,
    next_delay,
)
from schemas import Lead

VARS = {"lead": "record", "record": "record", "score": "score"}


def test_projection_passes_only_used_fields() -> None:
    e = Expression("lead.email != null && lead.employees > 10", name="r", variables=VARS)
    lead = Lead(email="a@example.com", employees=50, first_name="Ann")
    assert e.evaluate({"lead": lead}) is True
    assert e.evaluate({"lead": Lead(email=None, employees=50)}) is False


def test_decimals_and_datetimes_are_usable() -> None:
    e = Expression(
        'lead.annual_revenue > 1000.0 && lead.created_at < timestamp("2030-01-01T00:00:00Z")',
        name="r",
        variables=VARS,
    )
    lead = Lead(annual_revenue=Decimal("2500.50"), created_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert e.evaluate({"lead": lead}) is True


def test_compile_errors_and_unknown_variables() -> None:
    with pytest.raises(ConfigError, match="does not compile"):
        Expression("lead.email != ", name="broken", variables=VARS)
    with pytest.raises(ConfigError, match="unknown variable"):
        Expression("account.name != null", name="wrong", variables=VARS)


def test_runtime_errors_and_non_boolean_are_rule_errors() -> None:
    e = Expression("lead.employees > 10", name="size", variables=VARS)
    with pytest.raises(RuleError) as info:
        e.evaluate({"lead": Lead(employees=None)})
    assert info.value.context["rule"] == "size"
    with pytest.raises(RuleError, match="not a boolean"):
        Expression("lead.employees", name="n", variables=VARS).evaluate({"lead": Lead(employees=3)})


def test_rules_report_the_failing_rule_by_name() -> None:
    rules = check_rules_compile(
        [("has_email", "lead.email != null"), ("big", "lead.employees >= 10")], "lead"
    )
    assert failed_rule(rules, Lead(email="a@b.co", employees=20), "lead") is None
    err = failed_rule(rules, Lead(email="a@b.co", employees=2), "lead")
    assert err is not None
    assert err.context["rule"] == "big"


def test_router_matches_all_when_routes_else_otherwise() -> None:
    routes = [
        Route(when="score.value >= 0.7", to=["webhook.sales", "slack.hot"]),
        Route(when='lead.country == "DE"', to=["webhook.sales", "webhook.de"]),
        Route(otherwise=["webhook.nurture"]),
    ]
    r = Router(routes, "lead")
    assert r.targets(Lead(country="DE"), {"value": 0.9}) == [
        ("webhook.sales", "route0"),
        ("slack.hot", "route0"),
        ("webhook.de", "route1"),
    ]
    assert r.targets(Lead(country="US"), {"value": 0.2}) == [("webhook.nurture", "route2")]


@settings(max_examples=150, deadline=None)
@given(
    leads=st.lists(
        st.builds(
            Lead,
            country=st.one_of(st.none(), st.sampled_from(["DE", "US", "AT"])),
            employees=st.one_of(st.none(), st.integers(min_value=0, max_value=50)),
        ),
        max_size=8,
    ),
    data=st.data(),
    with_scores=st.booleans(),
)
def test_targets_batch_is_targets_per_record(
    leads: list[Lead], data: st.DataObject, with_scores: bool
) -> None:
    routes = [
        Route(when="score.value >= 0.7", to=["webhook.sales", "slack.hot"]),
        Route(when='lead.country == "DE"', to=["webhook.de", "webhook.sales"]),
        Route(when="lead.employees > 10", to=["webhook.big"]),  # null employees: an error
        Route(otherwise=["webhook.nurture"]),
    ]
    r = Router(routes, "lead")
    scores = None
    if with_scores:
        values = st.floats(min_value=0, max_value=1) | st.just(float("nan"))
        scores = [{"value": data.draw(values), "grade": "B"} for _ in leads]
    got = r.targets_batch(leads, scores)
    assert len(got) == len(leads)
    for k, lead in enumerate(leads):
        score = None if scores is None else scores[k]
        found = got[k]
        if isinstance(found, RuleError):
            with pytest.raises(RuleError) as info:
                r.targets(lead, score)
            assert found.to_dict() == info.value.to_dict()
        else:
            assert found == r.targets(lead, score)


def test_delivery_ids_have_no_dots_and_delays_follow_schedule() -> None:
    assert delivery_id("p:abc:1", "webhook.sales") == "p:abc:1:webhook_sales"
    policy = DeliveryConfig(schedule_s=[10, 100])
    d1 = next_delay(1, policy, None)
    assert d1 is not None
    assert 9 <= d1 <= 11
    assert next_delay(1, policy, retry_after=120) == 120
    assert next_delay(3, policy, None) is None


@pytest.mark.parametrize(
    "expr", ["lead.email != null", "lead.employees > 10", "lead.country in ['DE', 'US']"]
)
def test_one_rule_batch_matches_failed_rule(expr: str) -> None:
    from junction.pipeline.normalize import Normalizer

    norm = Normalizer("csv.lead", [("r", expr)])
    records = [
        {"lead_id": "L1", "email": "a@b.co", "employees": "20", "country": "DE"},
        {"lead_id": "L2", "email": "", "employees": "", "country": "FR"},
        {"lead_id": "L3", "email": "c@d.org", "employees": "3", "country": "US"},
        {"lead_id": "", "email": "x@y.io"},  # a mapping error, before the rules
    ]
    good, bad = norm.apply(records)
    mapped, mapping_bad = norm.mapping.apply_batch(records)
    expected_good, expected_bad = [], [(i, e.to_dict()) for i, e in mapping_bad]
    for i, model in mapped:
        err = failed_rule(norm.rules, model, "lead")
        if err is None:
            expected_good.append((i, model))
        else:
            expected_bad.append((i, err.to_dict()))
    assert good == expected_good
    assert [(i, e.to_dict()) for i, e in bad] == expected_bad


def test_the_runtime_loads_without_the_cel_shell():
    """``cel``'s REPL (prompt_toolkit, typer) stays out of a process that compiles rules (RSS),
    and is still there for whoever imports it afterwards."""
    code = (
        "import sys\n"
        "from junction.pipeline.expressions import Expression\n"
        "e = Expression('lead.email != null', name='r', variables={'lead': 'record'})\n"
        "assert e.evaluate({'lead': {'email': 'a@b.c'}}) is True\n"
        "assert e.program.execute({'lead': {'email': None}}) is False\n"
        "assert not {'prompt_toolkit', 'typer'} & set(sys.modules), sorted(sys.modules)\n"
        "assert 'cel.cli' not in sys.modules\n"
        "import cel.cli\n"
        "assert cel.cli.__file__.endswith('cli.py')  # the real one, not the placeholder\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"
