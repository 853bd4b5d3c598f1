"""`junction model train --grade-shares | --thresholds`: the card's grade thresholds, and the
scorer grading by them when the pipeline sets none."""

from __future__ import annotations

from pathlib import Path

import pytest

from scoring.grading import DEFAULT_THRESHOLDS, grade_shares
from scoring.sklearn_model import SklearnLeadScorer
from scoring.synthetic import generate_leads
from tests.integration.test_model_train_cli import card_of, invoke, lead_csv, saved


@pytest.fixture(scope="module")
def leads_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lead_csv(tmp_path_factory.mktemp("csv") / "leads.csv", 2000, seed=8)


def test_grade_shares_set_the_card_s_thresholds_from_the_holdout(
    tmp_path: Path, leads_file: Path
) -> None:
    result = invoke(
        "--csv", str(leads_file), "--models-dir", str(tmp_path / "m"),
        "--grade-shares", "0.1, 0.2, 0.3",
    )  # fmt: skip
    version = saved(result)
    card = card_of(version)
    cuts = tuple(card["grade_thresholds"][g] for g in "ABC")
    assert cuts != DEFAULT_THRESHOLDS
    assert 1.0 >= cuts[0] > cuts[1] > cuts[2] >= 0.0
    assert card["training_data"]["grade_shares"] == [0.1, 0.2, 0.3]
    assert "grades: A >= " in result.stdout
    assert "of the holdout" in result.stdout
    # the scorer (no thresholds configured) grades by the card: about the asked shares
    scorer = SklearnLeadScorer.load(version)
    assert scorer.thresholds == cuts
    values = [s.value for s in scorer.score(generate_leads(3000, seed=99))]
    got = grade_shares(values, cuts)
    assert got["A"] == pytest.approx(0.1, abs=0.04)
    assert got["A"] + got["B"] == pytest.approx(0.3, abs=0.06)
    assert got["D"] == pytest.approx(0.4, abs=0.08)


def test_thresholds_are_recorded_as_given(tmp_path: Path, leads_file: Path) -> None:
    result = invoke(
        "--csv", str(leads_file), "--models-dir", str(tmp_path / "m"),
        "--thresholds", "0.6,0.4,0.2",
    )  # fmt: skip
    version = saved(result)
    card = card_of(version)
    assert card["grade_thresholds"] == {"A": 0.6, "B": 0.4, "C": 0.2}
    assert "grade_shares" not in card["training_data"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grade-shares", "0.1,0.2,0.3", "--thresholds", "0.6,0.4,0.2"], "at most one"),
        (["--grade-shares", "0.5,0.4,0.3"], "at most 1"),
        (["--grade-shares", "0.1,0.2"], "three numbers"),
        (["--thresholds", "0.2,0.4,0.6"], "1 >= A > B > C >= 0"),
        (["--thresholds", "a,b,c"], "three numbers"),
    ],
    ids=["both", "sum", "two", "increasing", "text"],
)
def test_bad_grade_options_exit_2_before_training(
    tmp_path: Path, leads_file: Path, args: list[str], message: str
) -> None:
    result = invoke("--csv", str(leads_file), "--models-dir", str(tmp_path / "m"), *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert not any((tmp_path / "m").rglob("card.json"))
