"""The scorer contract suite, generated from the registry (no hand-kept list).

Every scorer registered under ``junction.scorers`` must have a fixture module
``tests/contract/scorers/<name>.py`` (see ``scorer_support.py``) and pass every check here,
unless the fixture waives a check with a reason and an issue id:

* ``protocol``: the scorer is a :class:`~scoring.base.Scorer` of the registered class, with a
  name and a version;
* ``columns``: ``score_columns`` gives one aligned entry per record: a value in [0, 1], a grade
  A-D, factors as ``(name, contribution)`` pairs, non-zero, largest magnitude first;
* ``one_by_one``: ``score_one`` agrees with the batch for every record (value to 1e-9, grade,
  factor names);
* ``score_objects``: ``score`` returns the same scores as Score objects;
* ``bad_record``: a record that cannot be scored fails alone, as a ScoringInputError at its
  index, NaN / "" / [] in its place, the others unchanged; ``score`` and ``score_one`` raise it;
* ``empty``: an empty batch gives empty columns and no scores;
* ``reasons``: every top factor of a Score has its reason, direction matching the sign;
* ``sufficiency``: a record with too little data is scored with ``data_sufficient=False``,
  the fixture's varied records mostly with True.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from junction.core.errors import ScoringInputError
from junction.core.registry import default_registry
from schemas.score import Score
from scoring.base import Scorer
from tests.contract.scorer_support import ScorerContract
from tests.contract.suite_support import fixture_module, skip_if_waived

REGISTRY = default_registry
NAMES = REGISTRY.names("scorers")
GRADES = {"A", "B", "C", "D"}


@pytest.fixture(scope="session", params=NAMES)
def contract(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, ScorerContract]:
    c = fixture_module("scorer", "scorers", request.param).contract(tmp_path_factory)
    assert isinstance(c, ScorerContract)
    assert len(c.records) >= 50, "the fixture must give at least 50 records"
    return request.param, c


def _waived(c: ScorerContract, check: str) -> None:
    skip_if_waived(c.waivers, check)


def _columns(c: ScorerContract) -> Any:
    return c.scorer.score_columns(c.records)


def test_registry_has_scorers() -> None:
    assert "sklearn_lead" in NAMES


def test_protocol(contract: tuple[str, ScorerContract]) -> None:
    name, c = contract
    _waived(c, "protocol")
    assert isinstance(c.scorer, Scorer)
    assert isinstance(c.scorer, REGISTRY.get("scorers", name))
    assert isinstance(c.scorer.name, str)
    assert c.scorer.name
    assert isinstance(c.scorer.version, str)
    assert c.scorer.version


def test_columns(contract: tuple[str, ScorerContract]) -> None:
    _, c = contract
    _waived(c, "columns")
    cols = _columns(c)
    n = len(c.records)
    assert len(cols) == n
    assert len(cols.grades) == n
    assert len(cols.factors) == n
    assert not getattr(cols, "failed", {})
    assert isinstance(cols.model, str)
    assert isinstance(cols.model_version, str)
    assert all(0.0 <= v <= 1.0 for v in cols.values)
    assert set(cols.grades) <= GRADES
    assert len(set(cols.grades)) > 1, "the records should reach more than one grade"
    for factors in cols.factors:
        assert all(isinstance(f, str) and isinstance(x, float) and x for f, x in factors)
        sizes = [abs(x) for _, x in factors]
        assert sizes == sorted(sizes, reverse=True)


def test_one_by_one(contract: tuple[str, ScorerContract]) -> None:
    _, c = contract
    _waived(c, "one_by_one")
    cols = _columns(c)
    for i, record in enumerate(c.records):
        one = c.scorer.score_one(record)
        assert one.value == pytest.approx(cols.values[i], abs=1e-9)
        assert one.grade == cols.grades[i]
        assert [f.feature for f in one.top_factors] == [f for f, _ in cols.factors[i]]


def test_score_objects(contract: tuple[str, ScorerContract]) -> None:
    _, c = contract
    _waived(c, "score_objects")
    cols = _columns(c)
    scores = c.scorer.score(c.records)
    assert len(scores) == len(c.records)
    assert all(isinstance(s, Score) for s in scores)
    assert [s.value for s in scores] == pytest.approx(cols.values, abs=1e-12)
    assert [s.grade for s in scores] == cols.grades
    assert {(s.model, s.model_version) for s in scores} == {(cols.model, cols.model_version)}


def test_bad_record(contract: tuple[str, ScorerContract]) -> None:
    _, c = contract
    _waived(c, "bad_record")
    assert c.bad_record is not None, "give a bad_record or waive the check"
    batch = [*c.records[:3], c.bad_record, *c.records[3:6]]
    cols = c.scorer.score_columns(batch)
    failed = getattr(cols, "failed", None)
    assert failed is not None, "score_columns must return PartialScoreColumns"
    assert list(failed) == [3]
    assert isinstance(failed[3], ScoringInputError)
    assert math.isnan(cols.values[3])
    assert (cols.grades[3], cols.factors[3]) == ("", [])
    clean = c.scorer.score_columns([*c.records[:3], *c.records[3:6]])
    kept = [0, 1, 2, 4, 5, 6]
    assert [cols.values[i] for i in kept] == pytest.approx(clean.values, abs=1e-12)
    assert [cols.factors[i] for i in kept] == clean.factors
    with pytest.raises(ScoringInputError):
        c.scorer.score(batch)
    with pytest.raises(ScoringInputError):
        c.scorer.score_one(c.bad_record)


def test_empty(contract: tuple[str, ScorerContract]) -> None:
    _, c = contract
    _waived(c, "empty")
    cols = c.scorer.score_columns([])
    assert len(cols) == 0
    assert cols.factors == []
    assert c.scorer.score([]) == []


def test_reasons(contract: tuple[str, ScorerContract]) -> None:
    _, c = contract
    _waived(c, "reasons")
    with_factors = 0
    for record in c.records[:50]:
        score = c.scorer.score_one(record)
        assert len(score.reasons) == len(score.top_factors)
        for factor, reason in zip(score.top_factors, score.reasons, strict=True):
            assert reason.direction == ("positive" if factor.contribution > 0 else "negative")
            assert reason.text
        with_factors += bool(score.top_factors)
    assert with_factors, "no record had a top factor"


def test_sufficiency(contract: tuple[str, ScorerContract]) -> None:
    _, c = contract
    _waived(c, "sufficiency")
    assert c.sparse_record is not None, "give a sparse_record or waive the check"
    assert c.scorer.score_one(c.sparse_record).data_sufficient is False
    flags = [c.scorer.score_one(r).data_sufficient for r in c.records[:50]]
    assert sum(flags) > len(flags) // 2
