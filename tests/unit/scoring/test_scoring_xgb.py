"""The xgboost algorithm: the compiled model scores bit for bit like XGBoost, its contributions
are XGBoost's approx_contribs, its dict refuses tampering, the registry saves the booster in
XGBoost's own format (no pickle) with every integrity check, and a folder scores without
XGBoost installed."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

xgboost = pytest.importorskip("xgboost")

from junction.core.errors import ConfigError, ModelLoadError  # noqa: E402
from scoring._xgb_sklearn import build_xgboost, split_artifact  # noqa: E402
from scoring.calibration import Calibration  # noqa: E402
from scoring.lead_spec import LEAD_SPEC  # noqa: E402
from scoring.pipelines import calibrate  # noqa: E402
from scoring.registry import load_bundle, load_model, save_model  # noqa: E402
from scoring.spec import columns_from_rows, to_matrix  # noqa: E402
from scoring.synthetic import generate_leads  # noqa: E402
from scoring.train import train_model  # noqa: E402
from scoring.xgb import CompiledXgbModel, f32  # noqa: E402
from tests.tree_support import COLOURS, TOY_SPEC, toy_labels, toy_rows  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def toy() -> dict[str, Any]:
    """XGBoost on TOY_SPEC (NaN numerics in training), uncalibrated and calibrated."""
    rows = toy_rows(3000, seed=1)
    y = toy_labels(rows, seed=1)
    x = to_matrix(TOY_SPEC, rows)
    pipe = build_xgboost(TOY_SPEC, 3, n_estimators=60).fit(x[:2200], y[:2200])
    cals = {m: calibrate(pipe, x[2200:], y[2200:], m) for m in ("sigmoid", "isotonic")}
    test = toy_rows(800, seed=2, colours=[*COLOURS, "unseen-a", "unseen-b"])
    return {"pipe": pipe, "cals": cals, "test": test}


def _compiled(toy: dict[str, Any], method: str | None = None) -> CompiledXgbModel:
    cal = None if method is None else Calibration.from_calibrated(toy["cals"][method])
    return CompiledXgbModel.from_pipeline(toy["pipe"], TOY_SPEC, calibration=cal)


def test_margins_are_xgboost_s_bit_for_bit_with_nan_and_unseen_categories(
    toy: dict[str, Any],
) -> None:
    model = _compiled(toy)
    rows = toy["test"]
    assert any(r[2] != r[2] for r in rows)
    assert any(r[0].startswith("unseen") for r in rows)
    ref = toy["pipe"].decision_function(to_matrix(TOY_SPEC, rows))
    z, _, _ = model.explain_columns(columns_from_rows(TOY_SPEC, rows))
    assert np.array_equal(z, ref)
    assert [model.margin_row(r) for r in rows] == ref.tolist()


@pytest.mark.parametrize("method", [None, "sigmoid", "isotonic"])
def test_probabilities_match_the_calibrated_model(toy: dict[str, Any], method: str | None) -> None:
    model = _compiled(toy, method)
    rows = toy["test"]
    est = toy["pipe"] if method is None else toy["cals"][method]
    ref = est.predict_proba(to_matrix(TOY_SPEC, rows))[:, 1]
    got = model.predict_columns(columns_from_rows(TOY_SPEC, rows))
    assert np.abs(got - ref).max() < 1e-6
    assert max(abs(model.predict_one(r) - p) for r, p in zip(rows, ref, strict=True)) < 1e-6


def test_inputs_are_compared_as_float32_like_xgboost(toy: dict[str, Any]) -> None:
    """A double just below a threshold that rounds up to it goes right, as in XGBoost."""
    model = _compiled(toy)
    thresholds = sorted({t for t in model._thr[2] if t == t})  # feature "weight"
    assert thresholds
    base = toy["test"][0]
    rows = []
    for t in thresholds:
        below = float(np.nextafter(t, -np.inf))  # a double < t with float32(below) == t
        assert below < t
        assert f32(below) == t
        rows.append((base[0], base[1], below, base[3], base[4]))
    ref = toy["pipe"].decision_function(to_matrix(TOY_SPEC, rows))
    assert [model.margin_row(r) for r in rows] == ref.tolist()
    z, _, _ = model.explain_columns(columns_from_rows(TOY_SPEC, rows))
    assert np.array_equal(z, ref)
    # comparing as doubles would have sent these rows left at their threshold's split
    as_double = [sum(1 for t in thresholds if r[2] < t) for r in rows]
    as_float32 = [sum(1 for t in thresholds if f32(r[2]) < t) for r in rows]
    assert as_double != as_float32


def test_contributions_are_xgboost_approx_contribs_and_sum_to_the_margin(
    toy: dict[str, Any],
) -> None:
    model = _compiled(toy)
    rows = toy["test"][:300]
    z, contrib, terms = model.explain_columns(columns_from_rows(TOY_SPEC, rows))
    encoded = toy["pipe"].named_steps["pre"].transform(to_matrix(TOY_SPEC, rows))
    booster = toy["pipe"].named_steps["clf"].get_booster()
    approx = booster.predict(
        xgboost.DMatrix(np.asarray(encoded, dtype=np.float32)),
        pred_contribs=True,
        approx_contribs=True,
    )
    assert np.abs(approx[:, :-1] - contrib).max() < 1e-5
    assert np.abs(approx[:, -1] - model.bias).max() < 1e-5
    assert np.abs(model.bias + contrib.sum(axis=1) - z).max() < 1e-5
    for i in (0, 7, 42):
        zr, pairs = model.explain_row(rows[i])
        assert zr == z[i]
        assert [c for _, c in pairs] == pytest.approx(contrib[i].tolist(), abs=1e-12)
        assert [name for name, _ in pairs] == [model.term_names[t] for t in terms[i]]
    unseen = next(i for i, r in enumerate(rows) if r[0].startswith("unseen"))
    assert model.explain_row(rows[unseen])[1][0][0] == "colour=other"


def test_dict_round_trips_through_json_bit_for_bit(toy: dict[str, Any]) -> None:
    model = _compiled(toy, "sigmoid")
    d = json.loads(json.dumps(model.to_dict(), allow_nan=False))
    again = CompiledXgbModel.from_dict(d, TOY_SPEC, calibration=model.calibration)
    assert again.to_dict() == model.to_dict()
    cols = columns_from_rows(TOY_SPEC, toy["test"])
    assert np.array_equal(again.predict_columns(cols), model.predict_columns(cols))


def _set(path: str, value: Any) -> Any:
    def mutate(d: dict[str, Any]) -> None:
        *head, last = path.split(".")
        node: Any = d
        for part in head:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _first_split(d: dict[str, Any]) -> int:
    return next(i for i, f in enumerate(d["trees"][0]["feature"]) if f >= 0)


def _node(key: str, i: int, value: Any) -> Any:
    """Set entry ``i`` of tree 0's ``key`` (``i`` negative: the first split's)."""

    def mutate(d: dict[str, Any]) -> None:
        d["trees"][0][key][_first_split(d) if i < 0 else i] = value

    return mutate


TAMPERS: list[tuple[str, Any, str]] = [
    ("extra key", lambda d: d.update(extra=1), "extra"),
    ("missing key", lambda d: d.pop("base_margin"), "base_margin"),
    ("format", _set("format", "junction.compiled-xgb-model.v0"), "format"),
    ("kind", _set("kind", "trees"), "kind"),
    ("base margin not float32", _set("base_margin", 0.1), "base_margin"),
    ("base margin a bool", _set("base_margin", True), "base_margin"),
    ("no trees", _set("trees", []), "trees"),
    ("categories", _set("categories", [["a", "a"], []]), "categories[0]"),
    ("threshold not float32", _node("threshold", -1, 0.1), "trees[0].threshold"),
    ("value infinite", _node("value", 0, float("inf")), "trees[0].value"),
    ("cover zero", _node("cover", 0, 0.0), "trees[0].cover"),
    ("feature out of range", _node("feature", 0, 99), "trees[0].feature"),
    ("cycle", _node("left", -1, 0), "trees[0].left"),
    ("default_left not bool", _node("default_left", 0, 1), "trees[0].default_left"),
    ("short column", lambda d: d["trees"][0]["cover"].pop(), "trees[0].cover"),
    ("tree key", lambda d: d["trees"][0].pop("default_left"), "trees[0]"),
]


@pytest.mark.parametrize(("name", "tamper", "key"), TAMPERS, ids=[t[0] for t in TAMPERS])
def test_tampered_dicts_are_refused_naming_the_key(
    toy: dict[str, Any], name: str, tamper: Any, key: str
) -> None:
    d = copy.deepcopy(_compiled(toy).to_dict())
    tamper(d)
    with pytest.raises(ModelLoadError) as err:
        CompiledXgbModel.from_dict(d, TOY_SPEC)
    assert err.value.context["key"] == key


def test_a_dict_for_another_spec_is_refused(toy: dict[str, Any]) -> None:
    d = _compiled(toy).to_dict()
    with pytest.raises(ModelLoadError):
        CompiledXgbModel.from_dict(d, LEAD_SPEC)


def test_unknown_or_fixed_parameters_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        build_xgboost(TOY_SPEC, 1, objective="reg:squarederror")
    with pytest.raises(ConfigError):
        build_xgboost(TOY_SPEC, 1, no_such_param=3)


# ---- training and the registry -------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    leads = generate_leads(3000, seed=77)
    labels = [lead["converted"] for lead in leads]
    trained = train_model(
        leads,
        labels,
        seed=5,
        algorithm="xgboost",
        calibration="sigmoid",
        params={"n_estimators": 80},
    )
    vdir = save_model(trained, tmp_path_factory.mktemp("models"), training_data={"n": 3000})
    return {"trained": trained, "vdir": vdir, "leads": generate_leads(400, seed=78)}


def _copy(saved: dict[str, Any], tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "lead-score" / "1"
    shutil.copytree(saved["vdir"], target)
    return target


def test_training_learns_and_records_the_booster_in_the_card(saved: dict[str, Any]) -> None:
    trained = saved["trained"]
    assert trained.algorithm == "xgboost"
    assert trained.metrics["roc_auc"] > 0.7
    card = json.loads((saved["vdir"] / "card.json").read_text())
    assert card["booster"]["file"] == "booster.ubj"
    assert card["booster"]["format"] == "xgboost.ubj"
    assert card["xgboost_version"] == xgboost.__version__
    assert (saved["vdir"] / "booster.ubj").is_file()


def test_the_skops_artifact_holds_no_xgboost_type(saved: dict[str, Any]) -> None:
    from scoring.integrity import declared_types

    types = declared_types((saved["vdir"] / "model.skops").read_bytes())
    assert not any("xgboost" in t for t in types)


def test_load_model_rebuilds_an_equal_estimator_and_the_bundle_scores_the_same(
    saved: dict[str, Any],
) -> None:
    loaded = load_model(saved["vdir"])
    rows = [LEAD_SPEC.extract(lead) for lead in saved["leads"]]
    x = to_matrix(LEAD_SPEC, rows)
    ref = saved["trained"].artifact.predict_proba(x)[:, 1]
    assert np.array_equal(loaded.pipeline.predict_proba(x)[:, 1], ref)
    model, calibration, _ = load_bundle(saved["vdir"])
    assert model.kind == "xgb_trees"
    assert calibration is not None
    z, _, _ = model.explain_columns(columns_from_rows(LEAD_SPEC, rows))
    assert np.abs(calibration.apply(z) - ref).max() < 1e-6


def test_split_artifact_leaves_the_trained_model_intact(saved: dict[str, Any]) -> None:
    artifact = saved["trained"].artifact
    stripped, raw = split_artifact(artifact)
    inner = artifact.estimator.estimator
    assert not isinstance(inner.steps[1][1], str)
    assert stripped.estimator.estimator.steps[1][1] == "passthrough"
    assert raw[:1] == b"{"  # UBJSON opens an object


@pytest.mark.parametrize("loader", [load_model, load_bundle])
def test_a_tampered_booster_is_refused(saved: dict[str, Any], tmp_path: Path, loader: Any) -> None:
    vdir = _copy(saved, tmp_path)
    raw = bytearray((vdir / "booster.ubj").read_bytes())
    raw[len(raw) // 2] ^= 1
    (vdir / "booster.ubj").write_bytes(bytes(raw))
    with pytest.raises(ModelLoadError, match="booster does not match"):
        loader(vdir)


@pytest.mark.parametrize("loader", [load_model, load_bundle])
def test_a_missing_booster_is_refused(saved: dict[str, Any], tmp_path: Path, loader: Any) -> None:
    vdir = _copy(saved, tmp_path)
    (vdir / "booster.ubj").unlink()
    with pytest.raises(ModelLoadError, match="booster is missing"):
        loader(vdir)


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c["booster"].update(file="compiled.json"),
        lambda c: c.pop("booster"),
        lambda c: c.update(algorithm="hist_gradient_boosting"),
        lambda c: c.pop("xgboost_version"),
    ],
    ids=["other file", "no entry", "other algorithm", "no version"],
)
def test_a_card_with_a_bad_booster_entry_is_refused(
    saved: dict[str, Any], tmp_path: Path, change: Any
) -> None:
    vdir = _copy(saved, tmp_path)
    card = json.loads((vdir / "card.json").read_text())
    change(card)
    (vdir / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError):
        load_bundle(vdir)
    with pytest.raises(ModelLoadError):
        load_model(vdir)


def test_another_xgboost_major_minor_is_refused(saved: dict[str, Any], tmp_path: Path) -> None:
    vdir = _copy(saved, tmp_path)
    card = json.loads((vdir / "card.json").read_text())
    card["xgboost_version"] = "2.0.3"
    (vdir / "card.json").write_text(json.dumps(card))
    for loader in (load_model, load_bundle):
        with pytest.raises(ModelLoadError, match="another XGBoost version") as err:
            loader(vdir)
        assert err.value.context["trained_with"] == "2.0.3"


def _run(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where ``import xgboost`` fails (not installed)."""
    prelude = textwrap.dedent(
        """
        import sys
        class _NoXgboost:
            def find_spec(self, name, path=None, target=None):
                if name == "xgboost" or name.startswith("xgboost."):
                    raise ImportError("No module named 'xgboost'")
                return None
        sys.meta_path.insert(0, _NoXgboost())
        """
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_folder_scores_without_xgboost_installed(saved: dict[str, Any]) -> None:
    result = _run(
        f"""
        import json
        from scoring.sklearn_model import SklearnLeadScorer
        from scoring.synthetic import generate_leads
        scorer = SklearnLeadScorer.load({str(saved["vdir"])!r})
        scores = scorer.score(generate_leads(50, seed=78))
        one = scorer.score_one(generate_leads(1, seed=78)[0])
        print(json.dumps({{
            "n": len(scores),
            "first": scores[0].value,
            "one": one.value,
            "xgboost": "xgboost" in sys.modules,
            "sklearn": "sklearn" in sys.modules,
        }}))
        """
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["n"] == 50
    assert not out["xgboost"]
    assert not out["sklearn"]
    rows = [LEAD_SPEC.extract(lead) for lead in generate_leads(50, seed=78)]
    ref = saved["trained"].artifact.predict_proba(to_matrix(LEAD_SPEC, rows))[:, 1]
    assert out["first"] == pytest.approx(float(ref[0]), abs=1e-6)
    assert out["one"] == pytest.approx(float(ref[0]), abs=1e-6)


def test_without_xgboost_training_and_load_model_say_to_install_the_extra(
    saved: dict[str, Any],
) -> None:
    result = _run(
        f"""
        from junction.core.errors import ConfigError, ModelLoadError
        from scoring.registry import load_model
        from scoring.synthetic import generate_leads
        from scoring.train import train_model
        leads = generate_leads(200, seed=1)
        try:
            train_model(leads, [l["converted"] for l in leads], seed=1, algorithm="xgboost")
        except ConfigError as exc:
            print("train:", exc.user_message)
        try:
            load_model({str(saved["vdir"])!r})
        except ModelLoadError as exc:
            print("load:", exc.user_message)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "train: " in result.stdout
    assert "load: " in result.stdout
    for line in result.stdout.splitlines():
        assert "junction-hub[xgboost]" in line
