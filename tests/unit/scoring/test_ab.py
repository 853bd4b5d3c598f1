"""A/B tests: stable assignment, the A/B scorer's split, and the report's statistics."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from junction.core.errors import ConfigError, ScoringInputError
from scoring.ab import ABScorer, assign, bucket
from scoring.abreport import ab_report, auc_delong, lift_at, wilson
from scoring.registry import save_model
from scoring.sklearn_model import SklearnLeadScorer
from scoring.synthetic import generate_leads
from scoring.train import train_lead_model

KEYS = [f"leads:00Q{i}" for i in range(2000)]


def test_assignment_is_stable_across_processes_and_hash_seeds() -> None:
    here = [assign(k, 0.3, "ab") for k in KEYS[:200]]
    code = (
        "import sys; from scoring.ab import assign; "
        "print(''.join('c' if assign(f'leads:00Q{i}', 0.3, 'ab') == 'challenger' else 'p' "
        "for i in range(200)))"
    )
    root = Path(__file__).resolve().parents[3]
    outs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)}
        run = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outs.add(run.stdout.strip())
    assert outs == {"".join("c" if v == "challenger" else "p" for v in here)}


def test_assignment_is_a_documented_hash() -> None:
    # BLAKE2b-64 of salt, NUL, key, big-endian over 2**64: reproducible outside Python too
    import hashlib

    digest = hashlib.blake2b(b"ab\0leads:1", digest_size=8).digest()
    assert bucket("leads:1", "ab") == int.from_bytes(digest, "big") / 2**64
    assert 0.0 <= bucket("", "s") < 1.0


@pytest.mark.parametrize("share", [0.05, 0.1, 0.5, 0.9])
def test_shares_hold_on_100k_keys(share: float) -> None:
    n = 100_000
    got = sum(assign(f"p:{i}", share, "salt-1") == "challenger" for i in range(n)) / n
    # 5 standard errors of a binomial share: a real bias fails, chance does not
    assert abs(got - share) < 5 * (share * (1 - share) / n) ** 0.5


def test_salt_redraws_and_a_larger_share_only_moves_records_to_the_challenger() -> None:
    a = [assign(k, 0.2, "one") for k in KEYS]
    b = [assign(k, 0.2, "two") for k in KEYS]
    assert a != b
    wider = [assign(k, 0.4, "one") for k in KEYS]
    assert all(w == "challenger" for v, w in zip(a, wider, strict=True) if v == "challenger")


def test_share_out_of_range_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        assign("k", 1.5, "ab")


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ab-models")
    dirs = []
    for seed in (7, 8):
        leads = generate_leads(2000, seed)
        trained = train_lead_model(leads, [lead["converted"] for lead in leads], seed=seed)
        dirs.append(save_model(trained, root, "lead-score", training_data={"seed": seed}))
    return dirs[0], dirs[1]


@pytest.fixture(scope="module")
def ab(two_models: tuple[Path, Path]) -> ABScorer:
    prod, chal = two_models
    return ABScorer(
        SklearnLeadScorer.load(prod),
        SklearnLeadScorer.load(chal, variant="challenger"),
        share=0.3,
        salt="ab",
    )


def test_ab_scorer_splits_a_batch_by_key_and_keeps_batch_order(ab: ABScorer) -> None:
    leads = generate_leads(300, seed=99)
    for lead in leads:
        lead.pop("converted")
    keys = KEYS[:300]
    cols = ab.score_columns(leads, keys)
    assert cols.variants is not None
    assert cols.model_versions is not None
    assert cols.variants == [assign(k, 0.3, "ab") for k in keys]
    assert {cols.model_version_at(i) for i in range(300) if cols.variants[i] == "challenger"} == {
        ab.challenger.version
    }
    assert {cols.model_version_at(i) for i in range(300) if cols.variants[i] == "production"} == {
        ab.production.version
    }
    # each row holds exactly what its own model says of it
    for i in (0, 1, 2, 57, 299):
        model = ab.challenger if cols.variants[i] == "challenger" else ab.production
        one = model.score_one(leads[i])
        assert cols.values[i] == pytest.approx(one.value, abs=1e-12)
        assert cols.grades[i] == one.grade
        same = ab.score_one(leads[i], key=keys[i])
        assert (same.variant, same.model_version) == (cols.variants[i], cols.model_versions[i])
    scores = ab.score(leads, keys)
    assert [s.variant for s in scores] == cols.variants


def test_ab_scorer_without_keys_scores_with_production(ab: ABScorer) -> None:
    leads = generate_leads(20, seed=5)
    cols = ab.score_columns(leads)
    assert cols.variants is None
    assert (cols.variant, cols.model_version) == ("production", ab.production.version)
    assert ab.score_one(leads[0]).variant == "production"
    with pytest.raises(ScoringInputError):
        ab.score_columns(leads, KEYS[:3])


def test_ab_scorer_keeps_failed_rows_at_their_batch_index(ab: ABScorer) -> None:
    leads = generate_leads(40, seed=6)
    bad = 17
    leads[bad] = {**leads[bad], "employees": "many"}
    cols = ab.score_columns(leads, KEYS[:40])
    assert set(cols.failed) == {bad}
    assert cols.grades[bad] == ""


# the report's statistics on synthetic scores


def _arm(rng: np.random.Generator, n: int, separation: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels at a 30 % rate and scores whose positives sit ``separation`` higher."""
    y = (rng.random(n) < 0.3).astype(np.int64)
    s = rng.normal(0.0, 1.0, n) + separation * y
    return y, 1 / (1 + np.exp(-s))


def test_delong_matches_the_rank_auc_and_a_known_variance() -> None:
    rng = np.random.default_rng(1)
    y, s = _arm(rng, 2000, 1.0)
    auc, var = auc_delong(y, s)
    pos, neg = s[y == 1], s[y == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auc == pytest.approx(pairs, abs=1e-12)
    # binormal with unit variances and separation 1: AUC = Phi(1 / sqrt 2) = 0.760
    assert auc == pytest.approx(0.760, abs=0.03)
    # Hanley-McNeil's approximation of the same variance agrees to within 20 %
    m, n = len(pos), len(neg)
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    hm = (auc * (1 - auc) + (m - 1) * (q1 - auc**2) + (n - 1) * (q2 - auc**2)) / (m * n)
    assert var == pytest.approx(hm, rel=0.2)


def test_lift_and_wilson() -> None:
    y = np.array([1] * 10 + [0] * 90)
    s = np.arange(100, 0, -1, dtype=float)  # the ten positives score highest
    assert lift_at(y, s) == pytest.approx(10.0)
    assert lift_at(np.zeros(5), np.ones(5)) is None
    lo, hi = wilson(30, 100) or (0, 0)
    assert lo < 0.3 < hi
    assert (lo, hi) == pytest.approx((0.2189, 0.3958), abs=1e-3)


def test_a_better_challenger_is_significant() -> None:
    rng = np.random.default_rng(2)
    report = ab_report(
        {"production": _arm(rng, 3000, 0.6), "challenger": _arm(rng, 3000, 1.4)}, n_boot=300
    )
    assert report.enough
    assert report.auc.diff is not None
    assert report.auc.diff > 0.1
    assert report.auc.p_value is not None
    assert report.auc.p_value < 1e-6
    assert report.auc.ci is not None
    assert report.auc.ci[0] > 0
    assert report.verdict.startswith("challenger better")
    assert report.lift.diff is not None
    assert report.lift.diff > 0
    prod, chal = report.variants
    assert prod.auc_ci is not None
    assert prod.auc is not None
    assert prod.auc_ci[0] < prod.auc < prod.auc_ci[1]
    assert chal.lift_ci is not None
    assert chal.lift is not None
    assert chal.lift_ci[0] <= chal.lift <= chal.lift_ci[1]
    # a worse challenger is called worse
    flipped = ab_report(
        {"production": _arm(rng, 3000, 1.4), "challenger": _arm(rng, 3000, 0.6)}, n_boot=200
    )
    assert flipped.verdict.startswith("challenger worse")


def test_equal_models_are_not_significantly_different() -> None:
    rng = np.random.default_rng(3)
    report = ab_report(
        {"production": _arm(rng, 3000, 1.0), "challenger": _arm(rng, 3000, 1.0)}, n_boot=300
    )
    assert report.auc.p_value is not None
    assert report.auc.p_value > 0.05
    assert report.verdict == "no significant difference at 95 %"
    assert report.auc.ci is not None
    assert report.auc.ci[0] < 0 < report.auc.ci[1]
    assert report.lift.p_value is not None
    assert report.lift.p_value > 0.05


def test_too_few_outcomes_says_so_and_the_bootstrap_is_seeded() -> None:
    rng = np.random.default_rng(4)
    small = {"production": _arm(rng, 80, 1.0), "challenger": _arm(rng, 3000, 1.0)}
    report = ab_report(small, n_boot=100)
    assert not report.enough
    assert report.verdict.startswith("not enough outcomes")
    assert ab_report(small, n_boot=100).to_dict() == report.to_dict()
    empty = ab_report({}, n_boot=10)
    assert empty.variants[0].n == 0
    assert empty.verdict.startswith("not enough outcomes")
