"""Declared feature specs: extraction, refusals, hashing, and a linear model over one."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from junction.core.errors import ConfigError, ModelLoadError, ScoringInputError
from scoring.compiled import CompiledLinearModel
from scoring.pipelines import build_linear
from scoring.registry import load_bundle, save_model
from scoring.sklearn_model import SklearnLeadScorer
from scoring.spec import columns_from_rows, spec_from_dict, to_matrix
from scoring.tabular import TabularSpec, load_tabular_spec
from scoring.train import train_model

SPEC = {
    "name": "accounts",
    "features": [
        {"name": "age", "kind": "numeric"},
        {"name": "job", "kind": "categorical"},
        {"name": "region", "kind": "categorical", "transform": "upper"},
        {"name": "calls", "kind": "numeric", "transform": "log1p"},
        {"name": "pdays", "kind": "numeric", "missing_values": ["999"], "missing_flag": True},
        {"name": "rate", "kind": "numeric", "source": "emp.var.rate"},
        {"name": "housing", "kind": "binary"},
        {"name": "website", "kind": "binary", "transform": "present"},
    ],
    "label": {"field": "y", "positive": ["yes"], "negative": ["no"]},
    "exclude": ["duration"],
}


def _spec() -> TabularSpec:
    return TabularSpec.model_validate(SPEC)


def _rows(n: int, seed: int) -> list[dict[str, str]]:
    """CSV-like rows (all text) with a planted signal: 'admin' jobs and high rates convert."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        job = str(rng.choice(["admin.", "blue-collar", "technician", "retired"]))
        rate = float(rng.normal(0, 1))
        logit = -1.5 + 1.6 * (job == "admin.") + 1.2 * rate
        y = "yes" if rng.random() < 1 / (1 + math.exp(-logit)) else "no"
        rows.append(
            {
                "age": str(int(rng.integers(18, 90))),
                "job": job,
                "region": str(rng.choice(["north", "south", ""])),
                "calls": str(int(rng.integers(0, 20))),
                "pdays": str(rng.choice(["999", "3", "6"])),
                "emp.var.rate": f"{rate:.3f}".replace(".", ","),  # decimal comma
                "housing": str(rng.choice(["yes", "no"])),
                "website": str(rng.choice(["https://x.example", ""])),
                "duration": "300",
                "y": y,
            }
        )
    return rows


def test_layout_puts_flags_of_missing_numbers_last():
    spec = _spec()
    assert spec.categorical == ("job", "region")
    assert spec.numeric == ("age", "calls", "pdays", "rate")
    assert spec.binary == ("housing", "website", "pdays_missing")


def test_extract_normalizes_text_numbers_and_missing_values():
    row = _spec().extract(
        {
            "age": " 41 ",
            "job": "Blue-Collar",
            "region": " de ",
            "calls": "3",
            "pdays": "999",
            "emp.var.rate": "-1,8",
            "housing": "Yes",
            "website": "",
        }
    )
    assert row == ("blue_collar", "DE", 41.0, math.log1p(3), 0.0, -1.8, 1.0, 0.0, 1.0)


def test_absent_fields_are_missing_not_errors():
    assert _spec().extract({}) == ("missing", "missing", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("age", "forty"), ("housing", "maybe"), ("calls", "-2"), ("age", "inf"), ("job", 1.5)],
)
def test_a_value_that_cannot_be_its_feature_names_the_field(field, value):
    with pytest.raises(ScoringInputError) as info:
        _spec().extract({field: value})
    assert info.value.field == field


def test_batch_equals_rows_and_names_bad_records():
    spec = _spec()
    rows = _rows(50, seed=1)
    cols, errors = spec.extract_columns(rows)
    assert errors == {}
    expected = columns_from_rows(spec, [spec.extract(r) for r in rows])
    assert cols.categorical == expected.categorical
    assert np.array_equal(cols.numeric, expected.numeric)
    assert np.array_equal(cols.binary, expected.binary)
    rows[7]["age"] = "n/a"
    cols, errors = spec.extract_columns(rows)
    assert list(errors) == [7]
    assert errors[7].field == "age"
    assert cols.rows == [i for i in range(50) if i != 7]


def test_hash_covers_derivation_not_the_label():
    a = _spec()
    relabelled = TabularSpec.model_validate(SPEC | {"label": {"field": "won", "positive": ["1"]}})
    changed = json.loads(json.dumps(SPEC))
    changed["features"][3]["transform"] = "number"
    assert a.schema_hash == relabelled.schema_hash
    assert a.schema_hash != TabularSpec.model_validate(changed).schema_hash
    assert spec_from_dict(a.to_dict()).schema_hash == a.schema_hash


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["features"].append({"name": "duration", "kind": "numeric"}),
        lambda d: d["features"].append({"name": "age", "kind": "numeric"}),
        lambda d: d["features"].append({"name": "y", "kind": "binary"}),
        lambda d: d["features"].append({"name": "x", "kind": "binary", "transform": "log1p"}),
        lambda d: d["features"].append({"name": "Bad Name", "kind": "numeric"}),
        lambda d: d["features"][1].update({"missing_flag": True}),
    ],
)
def test_invalid_specs_are_refused(tmp_path, mutate):
    d = json.loads(json.dumps(SPEC))
    mutate(d)
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match="feature spec is invalid"):
        load_tabular_spec(path)


def test_unknown_spec_kind_is_a_load_error():
    with pytest.raises(ModelLoadError, match="unknown kind"):
        spec_from_dict({"spec": "pickle.v0"})


def test_labels():
    spec = _spec()
    assert [spec.label_of({"y": v}) for v in ("yes", " no ", "", None, "later")] == [
        1, 0, None, None, None,
    ]  # fmt: skip


def test_compiled_linear_model_over_a_tabular_spec_matches_sklearn():
    spec = _spec()
    rows = _rows(2000, seed=2)
    feats = [spec.extract(r) for r in rows]
    y = np.array([spec.label_of(r) for r in rows])
    pipeline = build_linear(spec, seed=1).fit(to_matrix(spec, feats), y)
    compiled = CompiledLinearModel.from_dict(
        json.loads(json.dumps(CompiledLinearModel(pipeline, spec).to_dict()))
    )
    expected = pipeline.predict_proba(to_matrix(spec, feats))[:, 1]
    z, _, _ = compiled.explain_columns(spec.extract_columns(rows)[0])
    assert np.allclose(1 / (1 + np.exp(-z)), expected, rtol=0, atol=1e-12)
    z_one, terms = compiled.explain_row(feats[0])
    assert math.isclose(z_one, z[0], abs_tol=1e-12)
    assert [t for t, _ in terms][:2] == [f"job={feats[0][0]}", f"region={feats[0][1]}"]


def test_trained_tabular_model_learns_the_signal_and_round_trips(tmp_path):
    spec = _spec()
    rows = _rows(3000, seed=3)
    trained = train_model(
        rows, [spec.label_of(r) for r in rows], seed=5, spec=spec, calibration="sigmoid"
    )
    assert trained.split == "random"
    assert trained.n_calibration > 0
    assert trained.metrics["roc_auc"] > 0.75
    vdir = save_model(trained, tmp_path, "accounts", training_data={"source": "test"})
    _model, calibration, card = load_bundle(vdir)
    assert card["feature_spec"]["name"] == "accounts"
    assert calibration is not None
    scorer = SklearnLeadScorer.load(vdir)
    test_rows = _rows(200, seed=4)
    expected = trained.artifact.predict_proba(to_matrix(spec, [spec.extract(r) for r in test_rows]))
    got = scorer.score_columns(test_rows).values
    assert np.allclose(got, expected[:, 1], rtol=0, atol=1e-9)
    assert scorer.score_one(test_rows[0]).value == pytest.approx(got[0], abs=1e-12)


def test_a_card_whose_spec_was_edited_is_refused(tmp_path):
    spec = _spec()
    rows = _rows(500, seed=6)
    trained = train_model(rows, [spec.label_of(r) for r in rows], seed=1, spec=spec)
    vdir = save_model(trained, tmp_path, "accounts", training_data={})
    card = json.loads((vdir / "card.json").read_text())
    card["feature_spec"]["features"][0]["transform"] = "log1p"
    (vdir / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="other features"):
        SklearnLeadScorer.load(vdir)
