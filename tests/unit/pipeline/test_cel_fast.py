"""The CEL fast path agrees with the CEL runtime, or defers to it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import cel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from junction.core.errors import ConfigError, RuleError
from junction.pipeline.cel_fast import Defer, compile_fast
from junction.pipeline.expressions import Expression
from schemas import Lead

EXPRESSIONS = [
    "lead.email != null",
    "lead.email == null",
    "score.value >= 0.5",
    "score.value >= 0.5 && lead.country == 'DE'",
    'lead.country in ["DE", "AT", "CH"] || score.grade == "A"',
    "!(lead.employees > 100) && lead.page_views <= 20",
    "lead.employees > 10 || lead.page_views > 5",
    "size(lead.email) > 5 && lead.email.endsWith('.com')",
    "lead.title.contains('Head') ? score.value > 0.2 : score.value > 0.8",
    "lead.employees == 3.0",
    "lead.flag == true",
    "lead.flag",
    "lead.employees > -1",
    "lead.email.startsWith(\"a\") && (lead.country != 'US' || lead.employees >= 50)",
]

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-1000, max_value=1000),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.sampled_from(["DE", "US", "a@b.com", "Head of IT", "", "ann@x.org"]),
    st.just(datetime(2026, 1, 1, tzinfo=UTC)),
)
leads = st.fixed_dictionaries(
    dict.fromkeys(("email", "country", "employees", "page_views", "title", "flag"), values)
)
scores = st.fixed_dictionaries(
    {"value": st.floats(min_value=0, max_value=1), "grade": st.sampled_from(["A", "B", "C", "D"])}
)


def _runtime(src: str, env: dict) -> object:
    try:
        return ("ok", cel.compile(src).execute(env))
    except Exception:
        return ("error", None)


@pytest.mark.parametrize("src", EXPRESSIONS)
def test_subset_compiles(src: str) -> None:
    assert compile_fast(src, {"lead", "score"}) is not None


@pytest.mark.parametrize(
    "src",
    [
        "lead.x + 1 > 2",
        'lead.email.matches("a.*")',
        "has(lead.email)",
        'timestamp("2020-01-01T00:00:00Z") < lead.t',
        "lead.email == 'a\\'b'",
        "other.x == 1",
    ],
)
def test_outside_the_subset_is_not_compiled(src: str) -> None:
    assert compile_fast(src, {"lead", "score"}) is None


@settings(max_examples=300, deadline=None)
@given(lead=leads, score=scores, src=st.sampled_from(EXPRESSIONS))
def test_fast_path_agrees_with_runtime(lead: dict, score: dict, src: str) -> None:
    env = {"lead": lead, "score": score}
    fast = compile_fast(src, {"lead", "score"})
    assert fast is not None
    try:
        got = ("ok", fast(env))
    except Defer:
        return  # the caller asks the runtime: nothing to compare
    assert got == _runtime(src, env), (src, env)


@settings(max_examples=200, deadline=None)
@given(lead=leads, score=scores, src=st.sampled_from(EXPRESSIONS))
def test_expression_matches_runtime_including_errors(lead: dict, score: dict, src: str) -> None:
    expr = Expression(src, name="r", variables={"lead": "record", "score": "score"})
    env = {"lead": lead, "score": score}
    kind, value = _runtime(src, env)
    if kind == "ok" and isinstance(value, bool):
        assert expr.evaluate(env) is value
    else:
        with pytest.raises(RuleError):
            expr.evaluate(env)


def test_misspelled_fields_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="lead has no field"):
        Expression(
            "lead.emial != null", name="r", variables={"lead": "record"}, fields={"lead": {"email"}}
        )


lead_models = st.builds(
    Lead,
    email=st.one_of(st.none(), st.sampled_from(["a@b.com", "ann@x.org"])),
    country=st.one_of(st.none(), st.sampled_from(["DE", "US", "AT"])),
    employees=st.one_of(st.none(), st.integers(min_value=0, max_value=500)),
    page_views=st.one_of(st.none(), st.integers(min_value=0, max_value=50)),
    title=st.one_of(st.none(), st.sampled_from(["Head of IT", "CEO"])),
    annual_revenue=st.one_of(st.none(), st.decimals(min_value=0, max_value=10**6, places=2)),
)
MODEL_EXPRESSIONS = [e for e in EXPRESSIONS if "flag" not in e] + ["lead.annual_revenue > 1000.0"]


@settings(max_examples=200, deadline=None)
@given(lead=lead_models, score=scores, src=st.sampled_from(MODEL_EXPRESSIONS))
def test_models_evaluate_like_the_runtime_on_their_projection(
    lead: Lead, score: dict, src: str
) -> None:
    expr = Expression(src, name="r", variables={"lead": "record", "score": "score"})
    projected = {k: float(v) if isinstance(v, Decimal) else v for k, v in lead.model_dump().items()}
    kind, value = _runtime(src, {"lead": projected, "score": score})
    if kind == "ok" and isinstance(value, bool):
        assert expr.evaluate({"lead": lead, "score": score}) is value
    else:
        with pytest.raises(RuleError):
            expr.evaluate({"lead": lead, "score": score})


# --- the generated checker (compile_checker) on generated expressions -------------------------

_LEAD_FIELDS = ("email", "country", "employees", "page_views", "title", "flag")
_constants = st.one_of(
    st.sampled_from(["null", "true", "false", "0", "3", "-1", "100", "0.5", "3.0", "-2.5"]),
    st.sampled_from(["'DE'", '"US"', "'a@b.com'", "''", "'Head of IT'", "'a'", "'.com'"]),
)
_fields = st.one_of(
    st.sampled_from([f"lead.{f}" for f in _LEAD_FIELDS]),
    st.sampled_from(["record.country", "score.value", "score.grade"]),
)
_atoms = st.one_of(_fields, _constants)


def _compound(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
    const_list = st.lists(_constants, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]")
    return st.one_of(
        st.tuples(_atoms, ops, _atoms).map(" ".join),
        st.tuples(_atoms, const_list).map(lambda t: f"{t[0]} in {t[1]}"),
        st.tuples(_atoms, st.lists(_atoms, max_size=3)).map(
            lambda t: f"{t[0]} in [{', '.join(t[1])}]"
        ),
        st.tuples(_fields, st.sampled_from(["startsWith", "endsWith", "contains"]), _atoms).map(
            lambda t: f"{t[0]}.{t[1]}({t[2]})"
        ),
        st.tuples(_fields, ops, st.sampled_from(["0", "3", "1.5"])).map(
            lambda t: f"size({t[0]}) {t[1]} {t[2]}"
        ),
        children.map(lambda c: f"!({c})"),
        st.tuples(children, st.sampled_from(["&&", "||"]), children).map(
            lambda t: f"({t[0]}) {t[1]} ({t[2]})"
        ),
        st.tuples(children, children, children).map(lambda t: f"({t[0]}) ? ({t[1]}) : ({t[2]})"),
    )


generated_expressions = st.recursive(
    st.one_of(_fields, _compound(_fields)), _compound, max_leaves=6
)
_VARS = {"lead": "record", "record": "record", "score": "score"}
_DEFERRED = object()


def _checker(src: str) -> object:
    from junction.pipeline.cel_fast import compile_checker

    return compile_checker(src, _VARS, ("record", "score"), lambda *_: _DEFERRED)


def _compare_with_runtime(src: str, lead: object, projected: dict, score: dict | None) -> None:
    check = _checker(src)
    assert check is not None, src  # every generated expression lies in the subset
    kind, value = _runtime(src, {"lead": projected, "record": projected, "score": score})
    got = check(lead, score)  # type: ignore[operator]
    if got is not _DEFERRED:
        # the generated code answered: it must be the runtime's boolean
        assert kind == "ok", (src, projected, score)
        assert got is value, (src, projected, score)
    expr = Expression(src, name="r", variables=_VARS)
    if kind == "ok" and isinstance(value, bool):
        assert expr.check(lead, score) is value, (src, projected)
    else:
        with pytest.raises(RuleError):
            expr.check(lead, score)


@settings(max_examples=600, deadline=None)
@given(src=generated_expressions, lead=leads, score=scores)
def test_generated_checker_agrees_with_runtime_on_dicts(src: str, lead: dict, score: dict) -> None:
    _compare_with_runtime(src, lead, lead, score)


_model_leads = st.builds(
    Lead,
    email=st.one_of(st.none(), st.sampled_from(["a@b.com", "ann@x.org", "a.com"])),
    country=st.one_of(st.none(), st.sampled_from(["DE", "US", "AT"])),
    employees=st.one_of(st.none(), st.integers(min_value=0, max_value=500)),
    page_views=st.one_of(st.none(), st.integers(min_value=0, max_value=50)),
    title=st.one_of(st.none(), st.sampled_from(["Head of IT", "CEO", ""])),
)
_model_expressions = generated_expressions.filter(lambda s: "flag" not in s)


@settings(max_examples=400, deadline=None)
@given(src=_model_expressions, lead=_model_leads, score=st.one_of(st.none(), scores))
def test_generated_checker_agrees_with_runtime_on_models(
    src: str, lead: Lead, score: dict | None
) -> None:
    projected = {k: float(v) if isinstance(v, Decimal) else v for k, v in lead.model_dump().items()}
    _compare_with_runtime(src, lead, projected, score)


@pytest.mark.parametrize(
    ("src", "lead", "score", "answered"),
    [
        ("lead.email != null", {"email": "a@b.co"}, None, True),
        ("lead.email != null", {"email": None}, None, False),
        ("score.value >= 0.5", {}, {"value": 0.7, "grade": "B"}, True),
        ("score.value >= 0.5", {}, {"value": 1, "grade": "B"}, True),
        ("score.value >= 0.5", {}, {"value": True, "grade": "B"}, None),  # bool: runtime
        ("score.value >= 0.5", {}, {"value": "x", "grade": "B"}, None),
        ("score.value >= 0.5", {}, None, None),  # no score: runtime (an error there)
        ("lead.country in ['DE', 'AT']", {"country": "AT"}, None, True),
        ("lead.country in ['DE', 'AT']", {"country": 1}, None, None),
        ("lead.employees in [1, 2.0]", {"employees": 2}, None, True),
        ("lead.email == 'x'", {"email": 3}, None, None),
        ("lead.missing == 'x'", {"email": 3}, None, None),  # absent key: runtime
    ],
)
def test_checker_specialised_branches(
    src: str, lead: dict, score: dict | None, answered: bool | None
) -> None:
    check = _checker(src)
    assert check is not None
    got = check(lead, score)  # type: ignore[operator]
    if answered is None:
        assert got is _DEFERRED
    else:
        assert got is answered


def test_checker_does_not_compile_outside_the_subset() -> None:
    assert _checker("lead.x + 1 > 2") is None
    assert _checker('lead.email.matches("a.*")') is None
