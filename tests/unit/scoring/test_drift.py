"""Drift math: reference profiles, PSI and KS, and the verdicts on shifted and resampled data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from junction.core.errors import InternalError, ModelLoadError
from scoring.drift import (
    EPS,
    OTHER,
    DriftReport,
    build_reference,
    categorical_profile,
    compare,
    ks_pvalue,
    ks_statistic,
    numeric_profile,
    pooled,
    psi,
    psi_noise,
)
from scoring.drift_reference import (
    load_reference,
    reference_bytes,
    write_reference,
)
from scoring.lead_spec import LEAD_SPEC
from scoring.spec import FeatureColumns
from scoring.synthetic import generate_leads
from tests.drift_support import (
    predict,
    reference_of,
    shift_page_views,
    shift_source_mix,
    train,
)

RESAMPLE_SEEDS = {200: range(100, 140), 1500: range(100, 106)}


@pytest.fixture(scope="module")
def model():
    return train()


@pytest.fixture(scope="module")
def reference(model):
    trained, leads = model
    return reference_of(trained, leads)


def window(model, leads):
    trained, _ = model
    cols, errors = LEAD_SPEC.extract_columns(leads)
    assert not errors
    return cols, predict(trained, leads)


# the reference profile


def test_numeric_profile_has_deduplicated_decile_edges_and_a_sorted_sample() -> None:
    rng = np.random.default_rng(1)
    # mostly zeros, as engagement counts are: the low deciles coincide and merge
    x = np.where(rng.random(10_000) < 0.5, 0.0, rng.exponential(3.0, 10_000).round())
    prof = numeric_profile(x, seed=3)
    edges = prof["edges"]
    assert edges == sorted(set(edges))
    assert len(edges) < 9
    assert edges[0] == 0.0
    assert sum(prof["proportions"]) == pytest.approx(1.0)
    assert len(prof["proportions"]) == len(edges) + 1
    assert prof["proportions"][0] == pytest.approx(np.mean(x <= 0.0))
    assert len(prof["sample"]) == 2000
    assert prof["sample"] == sorted(prof["sample"])
    assert set(prof["sample"]) <= set(x.tolist())
    assert numeric_profile(x, seed=3) == prof  # seeded: the same data gives the same profile


def test_continuous_edges_are_the_nine_inner_deciles_and_the_ends_are_open() -> None:
    x = np.random.default_rng(2).normal(size=20_000)
    prof = numeric_profile(x)
    assert len(prof["edges"]) == 9
    assert prof["proportions"] == pytest.approx([0.1] * 10, abs=1e-3)
    # values far outside the training range still land in the outer bins: no drift for them
    # beyond their share, no crash
    cols = FeatureColumns((), np.array([[-1e9, 1e9]]), np.empty((0, 2)), None)
    ref = {
        "format": "junction.drift-reference.v1",
        "spec": {},
        "n": 20_000,
        "numeric": [{"name": "x", **prof}],
        "categorical": [],
        "binary": [],
        "prediction": prof,
    }
    report = compare(ref, cols, [0.5, 0.5], min_records=1)
    assert report.features[0].psi > 0.5


def test_categorical_profile_keeps_the_top_50_and_pools_the_rest() -> None:
    values = [f"c{i:02d}" for i in range(80) for _ in range(100 - i)]
    prof = categorical_profile(values)
    shares = prof["proportions"]
    assert len(shares) == 51
    assert "c00" in shares
    assert "c49" in shares
    assert "c50" not in shares
    assert shares[OTHER] == pytest.approx(sum(100 - i for i in range(50, 80)) / len(values))
    assert sum(shares.values()) == pytest.approx(1.0)


def test_lead_reference_covers_every_feature_and_is_json(model, reference) -> None:
    _, leads = model
    assert [p["name"] for p in reference["numeric"]] == list(LEAD_SPEC.numeric)
    assert [p["name"] for p in reference["categorical"]] == list(LEAD_SPEC.categorical)
    assert [p["name"] for p in reference["binary"]] == list(LEAD_SPEC.binary)
    assert reference["n"] == len(leads)
    assert reference["schema_hash"] == LEAD_SPEC.schema_hash
    rate = np.mean([1.0 if lead["phone"] else 0.0 for lead in leads])
    assert reference["binary"][0]["rate"] == pytest.approx(rate)
    pred = reference["prediction"]
    assert pred["edges"][0] >= 0.0
    assert pred["edges"][-1] <= 1.0
    assert json.loads(reference_bytes(reference)) == reference
    assert reference_of(*model) == reference  # deterministic


# statistics


def test_psi_is_zero_for_equal_shares_and_finite_for_empty_bins() -> None:
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    # an empty bin counts as EPS: large, finite, and by the formula
    value = psi([0.5, 0.5, 0.0], [0.5, 0.0, 0.5])
    expected = (EPS - 0.5) * np.log(EPS / 0.5) + (0.5 - EPS) * np.log(0.5 / EPS)
    assert value == pytest.approx(expected)
    assert np.isfinite(value)
    # a textbook case
    assert psi([0.25, 0.25, 0.5], [0.5, 0.25, 0.25]) == pytest.approx(
        0.25 * np.log(2) + 0.25 * np.log(2)
    )


def test_ks_matches_scipy() -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(size=2000)
    for b in (rng.normal(size=500), rng.normal(0.3, 1.0, size=700), rng.integers(0, 5, 300)):
        ref = stats.ks_2samp(a, b)
        assert ks_statistic(a, b) == pytest.approx(ref.statistic, abs=1e-12)
    ties_a, ties_b = rng.integers(0, 4, 1000).astype(float), rng.integers(0, 4, 400).astype(float)
    assert ks_statistic(ties_a, ties_b) == pytest.approx(
        stats.ks_2samp(ties_a, ties_b).statistic, abs=1e-12
    )


def test_ks_pvalue_is_close_to_scipy_asymptotic() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(size=2000)
    for shift in (0.0, 0.1, 0.2):
        b = rng.normal(shift, 1.0, size=500)
        d = ks_statistic(a, b)
        ref = stats.ks_2samp(a, b, method="asymp").pvalue
        assert ks_pvalue(d, 2000, 500) == pytest.approx(ref, abs=0.02)


def test_psi_noise_bounds_resampling_noise() -> None:
    # the chi-squared quantile at 0.999 with 9 degrees of freedom is 27.88
    assert psi_noise(10, 1000, 10**9) == pytest.approx(27.88 / 1000, rel=0.03)
    assert psi_noise(10, 200, 200) > psi_noise(10, 200, 10**6)
    rng = np.random.default_rng(6)
    e = np.full(10, 0.1)
    over = sum(
        psi(e, np.bincount(rng.integers(0, 10, 200), minlength=10) / 200) > psi_noise(10, 200, 0)
        for _ in range(2000)
    )
    assert over <= 10  # ~0.1 % of 2,000 by design


# verdicts


@pytest.mark.parametrize("n", [200, 1500])
@pytest.mark.parametrize("source", ["training", "profile"])
def test_a_resampled_copy_is_not_flagged(model, reference, n, source) -> None:
    # training: the reference train_lead_model makes (per-row features of the fit slice, whose
    # log1p differs from the batch path's in the last bit); profile: build_reference on them all
    ref = model[0].reference if source == "training" else reference
    for seed in RESAMPLE_SEEDS[n]:
        cols, proba = window(model, generate_leads(n, seed))
        report = compare(ref, cols, proba)
        assert report.status == "ok", (seed, [(f.name, f.psi, f.ks) for f in report.features])
        assert report.n == n
        assert len(report.features) == 13
        assert report.prediction is not None
        assert report.prediction.status == "ok"


def test_a_numeric_mean_shift_alerts_on_that_feature(model, reference) -> None:
    for seed in (200, 201, 202):
        cols, proba = window(model, shift_page_views(generate_leads(400, seed)))
        report = compare(reference, cols, proba)
        assert report.status == "alert"
        assert report.worst[0] == "page_views"
        page_views = next(f for f in report.features if f.name == "page_views")
        assert page_views.status == "alert"
        assert page_views.psi >= 0.25
        assert page_views.ks is not None
        assert page_views.ks >= 0.15
        assert page_views.mean_now > page_views.mean_ref
        # the model's predictions moved with it
        assert report.prediction is not None
        assert report.prediction.psi > 0.1


def test_a_category_mix_change_alerts_on_that_feature(model, reference) -> None:
    cols, proba = window(model, shift_source_mix(generate_leads(600, 300)))
    report = compare(reference, cols, proba)
    assert report.status == "alert"
    assert report.worst[0] == "lead_source"
    source = next(f for f in report.features if f.name == "lead_source")
    assert source.kind == "categorical"
    assert source.ks is None
    assert source.psi >= 0.25
    assert report.max_psi == pytest.approx(max(f.psi for f in report.all_features()))


def test_a_moderate_shift_warns(model, reference) -> None:
    leads = generate_leads(3000, 400)
    for lead in leads[:400]:
        lead["phone"] = None  # has_phone 0.70 -> ~0.61
    cols, proba = window(model, leads)
    report = compare(reference, cols, proba)
    phone = next(f for f in report.features if f.name == "has_phone")
    assert phone.kind == "binary"
    assert 0.01 < phone.psi < 0.1
    assert phone.status == "ok"
    report = compare(reference, cols, proba, psi_warn=0.01)
    assert report.status == "warn"
    assert "has_phone" in report.worst


def test_a_small_window_is_insufficient(model, reference) -> None:
    cols, proba = window(model, shift_page_views(generate_leads(50, 500)))
    report = compare(reference, cols, proba, min_records=200)
    assert report.status == "insufficient"
    assert report.n == 50
    assert report.features == []
    assert report.prediction is None
    empty = FeatureColumns(
        tuple([] for _ in LEAD_SPEC.categorical), np.empty((5, 0)), np.empty((4, 0)), None
    )
    assert compare(reference, empty, []).status == "insufficient"


def test_a_reference_for_other_features_is_refused(model, reference) -> None:
    cols, proba = window(model, generate_leads(300, 600))
    other = dict(reference, numeric=reference["numeric"][:2])
    with pytest.raises(ModelLoadError, match="other features"):
        compare(other, cols, proba)
    with pytest.raises(ModelLoadError, match="malformed"):
        compare(dict(reference, prediction={"edges": "x"}), cols, proba)


def test_the_report_round_trips_through_json(model, reference) -> None:
    cols, proba = window(model, shift_page_views(generate_leads(300, 700)))
    report = compare(reference, cols, proba)
    again = DriftReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report


# the reference file


def _version_dir(tmp_path: Path, reference: dict, **card) -> Path:
    vdir = tmp_path / "lead-score" / "1"
    vdir.mkdir(parents=True)
    entry = write_reference(vdir, reference)
    body = {"name": "lead-score", "version": "1", "reference": entry, **card}
    (vdir / "card.json").write_text(json.dumps(body))
    return vdir


def test_load_reference_verifies_the_sha256_of_the_card(tmp_path, reference) -> None:
    vdir = _version_dir(tmp_path, reference, feature_schema_hash=LEAD_SPEC.schema_hash)
    assert load_reference(vdir) == reference
    raw = (vdir / "reference.json").read_bytes()
    (vdir / "reference.json").write_bytes(raw.replace(b'"n":4000', b'"n":4001', 1))
    with pytest.raises(ModelLoadError, match="does not match its card") as exc:
        load_reference(vdir)
    assert exc.value.context["model"] == "lead-score"
    (vdir / "reference.json").unlink()
    with pytest.raises(ModelLoadError, match="missing or unreadable"):
        load_reference(vdir)


def test_a_version_without_a_reference_says_so(tmp_path, reference) -> None:
    vdir = _version_dir(tmp_path, reference)
    card = json.loads((vdir / "card.json").read_text())
    del card["reference"]
    (vdir / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="no drift reference") as exc:
        load_reference(vdir)
    assert exc.value.context["reason"] == "missing"
    with pytest.raises(ModelLoadError, match="card is missing"):
        load_reference(tmp_path / "nowhere")


def test_the_card_cannot_point_at_another_file(tmp_path, reference) -> None:
    vdir = _version_dir(tmp_path, reference)
    other = vdir / "other.json"
    other.write_bytes(reference_bytes(reference))
    card = json.loads((vdir / "card.json").read_text())
    card["reference"] = {
        "file": "other.json",
        "sha256": hashlib.sha256(other.read_bytes()).hexdigest(),
    }
    (vdir / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="reference entry is malformed"):
        load_reference(vdir)


def test_a_malformed_or_foreign_reference_is_refused(tmp_path, reference) -> None:
    vdir = _version_dir(tmp_path, {"format": "junction.drift-reference.v1", "n": "many"})
    with pytest.raises(ModelLoadError, match="malformed"):
        load_reference(vdir)
    other = tmp_path / "b"
    other.mkdir()
    vdir = _version_dir(other, reference, feature_schema_hash="0" * 64)
    with pytest.raises(ModelLoadError, match="other features"):
        load_reference(vdir)


def test_build_reference_is_seeded(model) -> None:
    trained, leads = model
    cols, _ = LEAD_SPEC.extract_columns(leads)
    proba = predict(trained, leads)
    a = build_reference(LEAD_SPEC, cols, proba, seed=1)
    b = build_reference(LEAD_SPEC, cols, proba, seed=2)
    assert a["numeric"][0]["edges"] == b["numeric"][0]["edges"]
    assert a["numeric"][0]["sample"] != b["numeric"][0]["sample"]


def test_one_prediction_per_record_is_required(model, reference) -> None:
    cols, proba = window(model, generate_leads(300, 800))
    with pytest.raises(InternalError, match="one prediction per feature column"):
        compare(reference, cols, proba[:-1])


def test_values_equal_but_for_the_last_bit_are_ties() -> None:
    import math

    rng = np.random.default_rng(8)
    employees = np.minimum(np.exp(3.5 + 1.7 * rng.normal(size=5000)).astype(int) + 1, 250_000)
    by_row = np.array([math.log1p(int(e)) for e in employees])  # how training computes them
    # a scoring batch computes them with numpy, whose SIMD log1p may differ in the last bit on
    # some CPUs and numpy builds; make that difference certain: every other value one ulp up
    by_batch = np.log1p(employees.astype(np.float64))
    by_batch[::2] = np.nextafter(by_row[::2], np.inf)
    assert (by_row != by_batch).any()
    prof = numeric_profile(by_row)
    ref = {
        "format": "junction.drift-reference.v1",
        "spec": {},
        "n": len(by_row),
        "numeric": [{"name": "log_employees", **prof}],
        "categorical": [],
        "binary": [],
        "prediction": prof,
    }
    cols = FeatureColumns((), by_batch[None, :], np.empty((0, len(by_batch))), None)
    report = compare(ref, cols, by_batch)
    assert report.features[0].psi == pytest.approx(0.0, abs=1e-12)
    assert ks_statistic(by_row, by_batch) == 0.0


def test_rare_bins_are_pooled_until_they_count() -> None:
    expected = np.array([0.6, 0.3, 0.08, 0.015, 0.005, 0.0])
    actual = np.array([0.6, 0.3, 0.1, 0.0, 0.0, 0.0])
    # 200 records: 0.015, 0.005 and 0.0 expect 3, 1 and 0 records: pooled, then with 0.08
    e, a = pooled(expected, actual, 200)
    assert e.tolist() == pytest.approx([0.6, 0.3, 0.1])
    assert a.tolist() == pytest.approx([0.6, 0.3, 0.1])
    # 20,000 records: only the empty bin is rare; it joins the smallest other bin
    e, a = pooled(expected, actual, 20_000)
    assert e.tolist() == pytest.approx([0.6, 0.3, 0.08, 0.015, 0.005])
    # two bins always stay two (a binary feature)
    e, _ = pooled(np.array([0.99, 0.01]), np.array([0.9, 0.1]), 200)
    assert len(e) == 2
    # an absent rare category of a small window no longer reads as drift
    shares = {
        "US": 0.39,
        "GB": 0.15,
        "DE": 0.15,
        "CA": 0.12,
        "AU": 0.1,
        "FR": 0.07,
        "missing": 0.02,
    }
    values = ["US"] * 80 + ["GB"] * 30 + ["DE"] * 30 + ["CA"] * 24 + ["AU"] * 20 + ["FR"] * 16
    ref = {
        "format": "junction.drift-reference.v1",
        "spec": {},
        "n": 100_000,
        "numeric": [],
        "categorical": [{"name": "country", "n": 100_000, "proportions": shares}],
        "binary": [],
        "prediction": numeric_profile(np.linspace(0, 1, 1000)),
    }
    cols = FeatureColumns((values,), np.empty((0, 200)), np.empty((0, 200)), None)
    report = compare(ref, cols, np.linspace(0, 1, 200), min_records=1)
    assert report.features[0].psi < 0.05
    assert report.status == "ok"
