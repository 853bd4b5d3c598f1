"""Wiring of A/B tests and outcome rules into the pipeline's scorer and batch preparer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.base import RawBatch
from junction.core.errors import ConfigError, ModelLoadError
from junction.pipeline.config import PipelineConfig, ScoringConfig
from junction.pipeline.prepare import BatchPreparer
from junction.pipeline.score import load_scorer
from junction.store.repo import SCORE_COLS
from scoring.ab import ABScorer, assign
from scoring.registry import ensure_default_model, save_model
from scoring.synthetic import generate_lead_csv_rows, generate_leads
from scoring.train import train_lead_model


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    ensure_default_model(root, name="lead-score")
    leads = generate_leads(2000, 9)
    trained = train_lead_model(leads, [lead["converted"] for lead in leads], seed=9)
    save_model(trained, root, "lead-score", training_data={"seed": 9}, version="2")
    return root


def _scoring(**kw: Any) -> ScoringConfig:
    return ScoringConfig.model_validate({"model": "lead-score", "version": "1", **kw})


def test_load_scorer_wraps_a_challenger_only_when_configured(registry: Path) -> None:
    v1 = registry / "lead-score" / "1"
    plain = load_scorer(v1, _scoring())
    assert not isinstance(plain, ABScorer)
    ab = load_scorer(v1, _scoring(challenger={"version": "2", "share": 0.25, "salt": "s"}))
    assert isinstance(ab, ABScorer)
    assert (ab.production.version, ab.challenger.version) == ("1", "2")
    assert (ab.share, ab.salt) == (0.25, "s")
    with pytest.raises(ModelLoadError):
        load_scorer(v1, _scoring(challenger={"version": "9"}))


def _pipeline(scoring: dict[str, Any]) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "source": {"connector": "csv_file", "path": "inbox/*.csv"},
            "mapping": "csv.lead",
            "scoring": {"model": "lead-score", "version": "1", **scoring},
            "routes": [{"otherwise": ["webhook.x"]}],
        }
    )


def _batch(n: int) -> RawBatch:
    rows = list(generate_lead_csv_rows(n, seed=3, messy=False))
    return RawBatch(
        stream="leads.csv",
        records=rows,
        keys=[f"leads.csv:{i}" for i in range(n)],
        positions=list(range(n)),
        cursor={},
    )


def _preparer(registry: Path, scoring: dict[str, Any]) -> BatchPreparer:
    cfg = _pipeline(scoring)
    assert cfg.scoring is not None
    scorer = load_scorer(registry / "lead-score" / "1", cfg.scoring)
    return BatchPreparer("leads", cfg, "csv_file", scorer)


def test_without_a_challenger_or_outcome_rules_nothing_changes(registry: Path) -> None:
    prep = _preparer(registry, {})
    assert not prep.keyed_scoring
    assert prep.outcomes is None
    out = prep.prepare(_batch(30), None)
    col = SCORE_COLS.index("variant")
    assert {s[col] for s in out.scores} == {"production"}
    assert out.outcomes == []


def test_a_challenger_splits_by_lead_key_and_events_carry_each_rows_variant(
    registry: Path,
) -> None:
    prep = _preparer(registry, {"challenger": {"version": "2", "share": 0.5, "salt": "x"}})
    out = prep.prepare(_batch(60), None)
    variant, version = SCORE_COLS.index("variant"), SCORE_COLS.index("model_version")
    source_key = {r[0]: r[4] for r in out.records}
    for s in out.scores:
        # csv.lead maps the CRM id as the source key: the lead id, not the positional record id
        want = assign(f"leads:{source_key[s[0]]}", 0.5, "x")
        assert s[variant] == want
        assert s[version] == ("2" if want == "challenger" else "1")
    assert {s[variant] for s in out.scores} == {"production", "challenger"}
    by_record = {s[0]: (s[variant], s[version]) for s in out.scores}
    for d in out.deliveries:
        score = orjson.loads(d[5])["score"]
        assert (score["variant"], score["model_version"]) == by_record[d[1]]


def test_outcome_rules_label_records(registry: Path) -> None:
    prep = _preparer(
        registry,
        {
            "outcome": {
                "kind": "won",
                "positive_when": 'record.lead_source == "referral"',
                "negative_when": 'lead.lead_source == "web"',
            }
        },
    )
    batch = _batch(200)
    out = prep.prepare(batch, None)
    labels = {r[0]: r[2] for r in out.outcomes}
    sources = {r[0]: orjson.loads(r[6]).get("lead_source") for r in out.records}
    keys = {r[0]: r[4] for r in out.records}
    want = {
        f"leads:{keys[rid]}": 1 if src == "referral" else 0
        for rid, src in sources.items()
        if src in ("referral", "web")
    }
    assert want
    assert labels == want
    assert {(r[1], r[4]) for r in out.outcomes} == {("won", "pipeline:leads")}


def test_an_outcome_expression_that_does_not_compile_is_a_config_error(registry: Path) -> None:
    with pytest.raises(ConfigError, match=r"outcome\.positive_when"):
        _preparer(registry, {"outcome": {"positive_when": "record.status =="}})
    with pytest.raises(ConfigError):
        _preparer(registry, {"outcome": {"positive_when": "record.no_such_field == 1"}})
