"""The rules scorer: points, grades, factors, reasons; batch equals one-by-one; bad files fail."""

from __future__ import annotations

import hashlib
import math
import time
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from junction.core.errors import ConfigError, ScoringInputError
from junction.pipeline.config import ScoringConfig
from schemas import Lead
from schemas.score import Factor, Reason, Score
from scoring.base import PartialScoreColumns, Scorer
from scoring.rules import BUILTIN_RULES, RulesLeadScorer, RulesScoreColumns, parse_rules
from scoring.synthetic import generate_leads

SMALL = """
format: junction.rules.v1
base: 10
scale: {kind: linear, max: 100}
top_k: 3
rules:
  - {id: c_level, feature: seniority, op: "==", value: c_level, points: 30}
  - {id: senior, feature: seniority, op: in, value: [c_level, vp], points: 5}
  - {id: software, feature: industry, op: in, value: [Software, SaaS], points: 10}
  - {id: big, feature: employees, op: ">=", value: 200, points: 10}
  - {id: tiny, feature: employees, op: "<", value: 10, points: -5}
  - {id: active, feature: page_views, op: ">=", value: 10, points: 10}
  - {id: phone, feature: has_phone, op: is, value: false, points: -5}
  - {id: free_email, feature: free_email, op: is, value: true, points: -10}
  - {id: not_dach, feature: country, op: not_in, value: [de, at, ch], points: -3}
"""

CEO = {
    "lead_source": "Web Form",
    "industry": "Software",
    "country": "DE",
    "title": "CEO",
    "employees": 500,
    "annual_revenue": None,
    "page_views": 14,
    "visits": 2,
    "email_opens": 0,
    "phone": "+4930231250",
    "email": "anna@acme.example.com",
}


@pytest.fixture(scope="module")
def small() -> RulesLeadScorer:
    return RulesLeadScorer(parse_rules(SMALL))


@pytest.fixture(scope="module")
def builtin() -> RulesLeadScorer:
    return RulesLeadScorer()


@pytest.fixture(scope="module")
def leads() -> list[dict[str, Any]]:
    out = generate_leads(3000, seed=99)
    for lead in out:
        lead.pop("converted")
    return out


def test_the_builtin_rules_load_and_meet_the_protocol(builtin: RulesLeadScorer) -> None:
    assert isinstance(builtin, Scorer)
    assert builtin.name == "rules"
    assert builtin.version == hashlib.sha256(BUILTIN_RULES.read_bytes()).hexdigest()[:12]
    assert builtin.thresholds == (0.75, 0.5, 0.25)
    assert len(builtin.rules.rules) >= 10


def test_the_entry_point_line_loads_the_scorer() -> None:
    # the line for pyproject's [project.entry-points."junction.scorers"]
    ep = EntryPoint(
        name="rules_lead", value="scoring.rules:RulesLeadScorer", group="junction.scorers"
    )
    assert ep.load() is RulesLeadScorer


def test_points_value_grade_factors_and_reasons(small: RulesLeadScorer) -> None:
    score = small.score_one(CEO)
    # 10 + 30 (c_level) + 5 (senior) + 10 (software) + 10 (big) + 10 (active) = 75
    assert score.value == pytest.approx(0.75)
    assert score.grade == "A"
    assert score.top_factors == [
        Factor(feature="seniority=c_level", contribution=35.0),  # two rules, one term
        Factor(feature="industry=software", contribution=10.0),
        Factor(feature="employees>=200", contribution=10.0),  # ties in file order
    ]
    assert score.reasons == [
        Reason(code="SENIORITY_C_LEVEL", text="Senior decision maker (C-level)",
               direction="positive"),
        Reason(code="INDUSTRY_SOFTWARE", text="Industry: Software", direction="positive"),
        Reason(code="EMPLOYEES_HIGH", text="Large company (employees: 200 or more)",
               direction="positive"),
    ]  # fmt: skip
    assert (score.model, score.model_version, score.variant) == (
        "rules",
        small.version,
        "production",
    )
    assert score.data_sufficient is True


def test_negative_rules_and_normalized_values(small: RulesLeadScorer) -> None:
    lead = CEO | {
        "title": "Analyst",
        "industry": "saas",
        "country": "fr",
        "employees": 3,
        "page_views": 2,
        "phone": None,
        "email": "anna@gmail.com",
    }
    score = small.score_one(lead)
    # 10 + 10 (SaaS matches "saas") - 5 (tiny) - 5 (no phone) - 10 (free email) - 3 (not DACH)
    assert score.value == 0.0  # -3 points clamp to 0
    assert score.grade == "D"
    assert [(f.feature, f.contribution) for f in score.top_factors] == [
        ("industry=saas", 10.0),
        ("free_email", -10.0),
        ("employees<10", -5.0),
    ]
    assert [r.code for r in score.reasons] == ["INDUSTRY_SAAS", "FREE_EMAIL", "EMPLOYEES_LOW"]
    assert [r.direction for r in score.reasons] == ["positive", "negative", "negative"]
    everything = RulesLeadScorer(parse_rules(SMALL.replace("top_k: 3", "top_k: 10")))
    factors = {f.feature: f.contribution for f in everything.score_one(lead).top_factors}
    assert factors == {
        "industry=saas": 10.0,
        "free_email": -10.0,
        "employees<10": -5.0,
        "has_phone=0": -5.0,
        "country=FR": -3.0,
    }


def test_a_rule_on_company_size_does_not_fire_when_the_size_is_unknown(
    small: RulesLeadScorer,
) -> None:
    unknown = small.score_one(CEO | {"employees": None})
    zero = small.score_one(CEO | {"employees": 0})
    assert "employees>=200" not in [f.feature for f in unknown.top_factors]
    assert unknown.value == pytest.approx(0.65)
    assert zero.value == pytest.approx(0.60)  # known to be tiny: -5 instead of +10


def test_thresholds_grade_like_the_ml_scorer() -> None:
    rules = parse_rules(SMALL)
    strict = RulesLeadScorer(rules, thresholds=(0.9, 0.8, 0.7))
    assert strict.score_one(CEO).grade == "C"
    assert strict.grade(0.9) == "A"
    assert strict.grade(0.8) == "B"
    assert strict.grade(0.7) == "C"
    assert strict.grade(0.6999) == "D"
    for bad in [(0.5, 0.6, 0.1), (1.1, 0.5, 0.2), (0.7, 0.5), (0.7, 0.5, -0.1)]:
        with pytest.raises(ConfigError, match="thresholds"):
            RulesLeadScorer(rules, thresholds=bad)


def test_the_linear_scale_clamps_and_the_logistic_scale_bends() -> None:
    high = parse_rules(SMALL.replace("base: 10", "base: 200"))
    assert RulesLeadScorer(high).score_one(CEO).value == 1.0
    logistic = parse_rules(
        SMALL.replace("{kind: linear, max: 100}", "{kind: logistic, midpoint: 50, width: 10}")
    )
    score = RulesLeadScorer(logistic).score_one(CEO)
    assert score.value == pytest.approx(1 / (1 + math.exp(-(75 - 50) / 10)))
    assert RulesLeadScorer(logistic).score_one(CEO | {"title": ""}).value == pytest.approx(
        1 / (1 + math.exp(-(40 - 50) / 10))
    )


def test_rules_on_one_term_that_cancel_leave_no_factor() -> None:
    rules = parse_rules(
        """
base: 50
rules:
  - {id: up, feature: visits, op: ">=", value: 3, points: 5}
  - {id: down, feature: visits, op: ">=", value: 3, points: -5}
  - {id: phone, feature: has_phone, op: is, value: true, points: 1}
"""
    )
    scorer = RulesLeadScorer(rules)
    score = scorer.score_one(CEO | {"visits": 4})
    assert score.value == pytest.approx(0.51)
    assert score.top_factors == [Factor(feature="has_phone", contribution=1.0)]
    assert scorer.score_columns([CEO | {"visits": 4}]).factors == [[("has_phone", 1.0)]]


def assert_same(cols: PartialScoreColumns, scores: list[Score]) -> None:
    assert isinstance(cols, RulesScoreColumns)
    for i, one in enumerate(scores):
        assert cols.values[i] == one.value
        assert cols.grades[i] == one.grade
        assert cols.factors[i] == [(f.feature, f.contribution) for f in one.top_factors]
        assert cols.data_sufficient[i] == one.data_sufficient
        assert orjson.loads(cols.reasons_json[i]) == [r.model_dump() for r in one.reasons]


@pytest.mark.parametrize("scale", ["{kind: linear, max: 80}", "{kind: logistic, width: 12}"])
def test_the_batch_equals_one_by_one(scale: str, leads: list[dict[str, Any]]) -> None:
    text = BUILTIN_RULES.read_text().replace("{kind: linear, max: 100}", scale)
    scorer = RulesLeadScorer(parse_rules(text))
    sparse = [lead | {"employees": None, "title": None} for lead in leads[:300]]
    batch = leads + sparse
    cols = scorer.score_columns(batch)
    assert cols.failed == {}
    assert len(cols) == len(batch)
    assert_same(cols, [scorer.score_one(r) for r in batch])
    assert scorer.score(batch) == [scorer.score_one(r) for r in batch]
    assert set(cols.grades) == {"A", "B", "C", "D"}
    assert not all(cols.data_sufficient)


def test_pydantic_leads_score_like_dicts(
    builtin: RulesLeadScorer, leads: list[dict[str, Any]]
) -> None:
    models = [Lead(**r) for r in leads[:200]]
    by_dict = builtin.score_columns(leads[:200])
    by_model = builtin.score_columns(models)
    assert by_model.values == by_dict.values
    assert by_model.factors == by_dict.factors
    assert builtin.score_one(models[0]) == builtin.score_one(leads[0])


def test_records_that_cannot_be_scored_fail_alone(
    builtin: RulesLeadScorer, leads: list[dict[str, Any]]
) -> None:
    batch = [*leads[:5], CEO | {"page_views": -1}, leads[5], CEO | {"employees": "many"}]
    cols = builtin.score_columns(batch)
    assert sorted(cols.failed) == [5, 7]
    assert all(isinstance(e, ScoringInputError) for e in cols.failed.values())
    assert cols.failed[7].context["field"] == "employees"
    for i in (5, 7):
        assert math.isnan(cols.values[i])
        assert (cols.grades[i], cols.factors[i]) == ("", [])
        assert (cols.data_sufficient[i], cols.reasons_json[i]) == (False, "[]")
    good = [0, 1, 2, 3, 4, 6]
    assert_same(
        RulesScoreColumns(
            values=[cols.values[i] for i in good],
            grades=[cols.grades[i] for i in good],
            factors=[cols.factors[i] for i in good],
            model=cols.model,
            model_version=cols.model_version,
            data_sufficient=[cols.data_sufficient[i] for i in good],
            reasons_json=[cols.reasons_json[i] for i in good],
        ),
        [builtin.score_one(batch[i]) for i in good],
    )
    with pytest.raises(ScoringInputError):
        builtin.score(batch)
    with pytest.raises(ScoringInputError):
        builtin.score_one(batch[5])


def test_an_empty_batch(builtin: RulesLeadScorer) -> None:
    cols = builtin.score_columns([])
    assert (cols.values, cols.factors, cols.failed, cols.data_sufficient) == ([], [], {}, [])


def test_a_lead_with_no_data_is_scored_and_flagged(builtin: RulesLeadScorer) -> None:
    score = builtin.score_one({})
    assert score.data_sufficient is False
    assert 0.0 <= score.value <= 1.0
    assert {r.code for r in score.reasons} <= {"SENIORITY_MISSING", "EMPLOYEES_UNKNOWN"}


def test_the_builtin_rules_find_the_synthetic_signal(builtin: RulesLeadScorer) -> None:
    leads = generate_leads(4000, seed=123)
    labels = np.array([lead.pop("converted") for lead in leads], dtype=bool)
    values = np.array(builtin.score_columns(leads).values)
    # ROC AUC as the Mann-Whitney statistic (average ranks for ties)
    order = values.argsort(kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for v in np.unique(values):
        tie = values == v
        ranks[tie] = ranks[tie].mean()
    n_pos, n_neg = labels.sum(), (~labels).sum()
    auc = (ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    print(f"built-in rules: ROC AUC {auc:.3f} on 4,000 synthetic leads")
    assert auc > 0.7


def test_ten_thousand_records_score_fast(builtin: RulesLeadScorer) -> None:
    leads = generate_leads(10_000, seed=5)
    builtin.score_columns(leads[:100])  # warm the caches
    times = []
    for _ in range(3):
        start = time.perf_counter()
        cols = builtin.score_columns(leads)
        times.append(time.perf_counter() - start)
    print(f"rules_lead: 10,000 records in {min(times) * 1000:.0f} ms (best of 3, with reasons)")
    assert len(cols) == 10_000
    assert cols.failed == {}


def test_from_config(tmp_path: Path) -> None:
    default = RulesLeadScorer.from_config(ScoringConfig(scorer="rules_lead"))
    assert default.version == RulesLeadScorer().version
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "mine.yaml").write_text(SMALL)
    cfg = ScoringConfig(scorer="rules_lead", rules="rules/mine.yaml", thresholds=(0.9, 0.6, 0.3))
    scorer = RulesLeadScorer.from_config(cfg, base_dir=tmp_path, variant="challenger")
    assert scorer.version == hashlib.sha256(SMALL.encode()).hexdigest()[:12]
    assert scorer.thresholds == (0.9, 0.6, 0.3)
    assert scorer.score_one(CEO).grade == "B"
    assert scorer.score_one(CEO).variant == "challenger"
    absolute = ScoringConfig(scorer="rules_lead", rules=str(tmp_path / "rules" / "mine.yaml"))
    assert RulesLeadScorer.from_config(absolute).version == scorer.version
    with pytest.raises(ConfigError, match="cannot be read"):
        RulesLeadScorer.from_config(ScoringConfig(rules=str(tmp_path / "absent.yaml")))


def test_the_version_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(SMALL)
    first = RulesLeadScorer(path).version
    path.write_text(SMALL.replace("points: 30", "points: 31"))
    assert RulesLeadScorer(path).version != first


def test_file_overrides_change_the_reason_text() -> None:
    text = SMALL + "reasons:\n  SENIORITY_C_LEVEL: Talks to the boss directly\n"
    score = RulesLeadScorer(parse_rules(text)).score_one(CEO)
    assert score.reasons[0] == Reason(
        code="SENIORITY_C_LEVEL", text="Talks to the boss directly", direction="positive"
    )


RULE = "{id: r1, feature: page_views, op: '>=', value: 10, points: 5}"


@pytest.mark.parametrize(
    ("text", "rule", "field"),
    [
        ("rules: [{id: r1, feature: salary, op: '>=', value: 1, points: 5}]", "r1", "feature"),
        ("rules: [{id: r1, feature: industry, op: '>=', value: 1, points: 5}]", "r1", "op"),
        ("rules: [{id: r1, feature: page_views, op: in, value: [1], points: 5}]", "r1", "op"),
        ("rules: [{id: r1, feature: has_phone, op: '==', value: true, points: 5}]", "r1", "op"),
        ("rules: [{id: r1, feature: seniority, op: '==', value: boss, points: 5}]", "r1", "value"),
        ("rules: [{id: r1, feature: industry, op: in, value: software, points: 5}]", "r1", "value"),
        ("rules: [{id: r1, feature: industry, op: in, value: [], points: 5}]", "r1", "value"),
        ("rules: [{id: r1, feature: industry, op: '==', value: 3, points: 5}]", "r1", "value"),
        ("rules: [{id: r1, feature: has_phone, op: is, value: 'yes', points: 5}]", "r1", "value"),
        ("rules: [{id: r1, feature: employees, op: '<', value: -1, points: 5}]", "r1", "value"),
        ("rules: [{id: r1, feature: visits, op: '<', value: ten, points: 5}]", "r1", "value"),
        ("rules: [{id: r1, feature: visits, op: '<', value: .nan, points: 5}]", "r1", "value"),
        ("rules: [{id: r1, feature: visits, op: '<', value: 3, points: lots}]", "r1", "points"),
        ("rules: [{id: r1, feature: visits, op: '<', value: 3, points: true}]", "r1", "points"),
        ("rules: [{id: r1, feature: visits, op: '<', value: 3, points: 1e300}]", "r1", "points"),
        (f"rules: [{RULE}]\nbase: -2e6", None, "base"),
        ("rules: [{id: r1, feature: visits, op: '<', value: 3}]", "r1", "points"),
        ("rules: [{id: r1, op: '<', value: 3, points: 1}]", "r1", "feature"),
        ("rules: [{id: r1, feature: visits, op: '<', value: 3, points: 1, weight: 2}]", "r1",
         "weight"),
        (f"rules: [{RULE}, {RULE}]", "r1", "id"),
        ("rules: [{id: R 1, feature: visits, op: '<', value: 3, points: 1}]", "#1", "id"),
        (f"rules: [{RULE}, {{feature: visits, op: '<', value: 3, points: 1}}]", "#2", "id"),
        (f"rules: [{RULE}, just text]", "#2", None),
        ("rules: []", None, "rules"),
        ("rules: {r1: 3}", None, "rules"),
        ("{}", None, "rules"),
        (f"rules: [{RULE}]\nbase: high", None, "base"),
        (f"rules: [{RULE}]\nscale: {{kind: cubic}}", None, "scale.kind"),
        (f"rules: [{RULE}]\nscale: {{kind: linear, max: 0}}", None, "scale.max"),
        (f"rules: [{RULE}]\nscale: {{kind: linear, midpoint: 3}}", None, "scale.midpoint"),
        (f"rules: [{RULE}]\nscale: {{kind: logistic, width: -2}}", None, "scale.width"),
        (f"rules: [{RULE}]\nscale: linear", None, "scale"),
        (f"rules: [{RULE}]\ntop_k: -1", None, "top_k"),
        (f"rules: [{RULE}]\ntop_k: 2.5", None, "top_k"),
        (f"rules: [{RULE}]\nmin_share: 2", None, "min_share"),
        (f"rules: [{RULE}]\nformat: junction.rules.v9", None, "format"),
        (f"rules: [{RULE}]\nweights: {{}}", None, "weights"),
        (f"rules: [{RULE}]\nreasons: {{free_email: x}}", None, "reasons.free_email"),
        (f"rules: [{RULE}]\ndescription: [a]", None, "description"),
    ],
)  # fmt: skip
def test_a_malformed_rules_file_names_the_rule_and_the_field(
    text: str, rule: str | None, field: str | None
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_rules(text)
    err = info.value
    assert err.context.get("rule") == rule
    assert err.context.get("field") == field
    if rule is not None:
        assert repr(rule) in err.user_message
    if field is not None:
        assert repr(field) in err.user_message


@pytest.mark.parametrize("text", ["rules: [unclosed", "- a\n- b", "just text", "rules: [{id: r1"])
def test_text_that_is_not_a_rules_mapping_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="rules file"):
        parse_rules(text)


def test_invalid_yaml_reports_the_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_rules("base: 1\nrules: [\n  {id: r1,\n")
    assert info.value.context["line"] >= 2
