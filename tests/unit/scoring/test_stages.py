"""Model stages (promote, rollback, archive, history) and the promotion gate, on real versions."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from junction.core.errors import ConfigError, ModelLoadError
from scoring import stages
from scoring.promotion import gate, promote_if_better
from tests.registry_support import add_version, make_registry

NAME = "lead-score"
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def reg(default_version_dir: Path, tmp_path: Path) -> Path:
    """Versions 1, 2, 3 (holdout AUC 0.70, 0.72, 0.75) and no stages.json yet."""
    return make_registry(default_version_dir, tmp_path / "models", NAME, (0.70, 0.72, 0.75))


def stored(reg: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((reg / NAME / stages.STAGES_FILE).read_text(encoding="utf-8"))
    return data


def test_without_stages_file_production_is_the_newest_version(reg: Path) -> None:
    assert stages.read_stages(reg, NAME) is None
    assert stages.production_version(reg, NAME) == "3"
    assert stages.staging_version(reg, NAME) is None
    assert stages.history(reg, NAME) == []
    assert stages.production_version(reg, "no-such-model") is None


def test_promote_archives_the_old_production_and_records_history(reg: Path) -> None:
    stages.promote(reg, NAME, "1", actor="cli:ana", reason="first")
    after = stages.promote(reg, NAME, "2", actor="cli:ana", reason="better")
    assert after.production == "2"
    assert stages.production_version(reg, NAME) == "2"
    assert "1" in after.archived
    data = stored(reg)
    assert data["production"] == "2"
    # the first promotion of a legacy registry records what the hub loaded until then (v3)
    actions = [(h["action"], h["version"], h["previous"]) for h in data["history"]]
    assert actions == [("promote", "3", None), ("promote", "1", "3"), ("promote", "2", "1")]
    assert data["history"][-1]["actor"] == "cli:ana"
    assert data["history"][-1]["reason"] == "better"
    assert data["history"][-1]["at"].endswith("Z")
    assert stages.stage_of(reg, NAME, "2") == "production"
    assert stages.stage_of(reg, NAME, "1") == "archived"


def test_promoting_production_again_records_nothing(reg: Path) -> None:
    stages.promote(reg, NAME, "3", actor="a", reason="r")
    before = stored(reg)
    stages.promote(reg, NAME, "3", actor="a", reason="again")
    assert stored(reg) == before


def test_promote_with_expect_refuses_when_production_moved(reg: Path) -> None:
    stages.promote(reg, NAME, "1", actor="a", reason="r", expect=None)
    with pytest.raises(ConfigError, match="production changed") as exc:
        stages.promote(reg, NAME, "2", actor="a", reason="r", expect="3")
    assert exc.value.code == "production_changed"
    assert stages.production_version(reg, NAME) == "1"
    stages.promote(reg, NAME, "2", actor="a", reason="r", expect="1")
    assert stages.production_version(reg, NAME) == "2"


def test_rollback_walks_back_one_production_at_a_time(reg: Path) -> None:
    stages.promote(reg, NAME, "1", actor="cli:ana", reason="v1")  # records the implicit v3 first
    stages.promote(reg, NAME, "2", actor="cli:ana", reason="v2")
    assert stages.rollback(reg, NAME, actor="cli:bo", reason="bad v2").production == "1"
    assert stages.stage_of(reg, NAME, "2") == "archived"
    assert stages.rollback(reg, NAME, actor="cli:bo", reason="bad v1").production == "3"
    with pytest.raises(ConfigError, match="no earlier production") as exc:
        stages.rollback(reg, NAME, actor="cli:bo", reason="again")
    assert exc.value.code == "nothing_to_roll_back"
    last = stages.history(reg, NAME)[-1]
    assert (last.action, last.version, last.previous) == ("rollback", "3", "1")
    assert last.actor == "cli:bo"
    # a promotion after rollbacks starts again from the restored version
    stages.promote(reg, NAME, "2", actor="cli:ana", reason="fixed")
    assert stages.rollback(reg, NAME, actor="cli:bo", reason="r").production == "3"
    assert sorted(stored(reg)["archived"]) == ["1", "2"]


def test_rollback_without_any_promotion_is_refused(reg: Path) -> None:
    with pytest.raises(ConfigError, match="no earlier production"):
        stages.rollback(reg, NAME, actor="a", reason="r")
    assert stages.read_stages(reg, NAME) is None  # nothing written


def test_unknown_model_or_version_is_a_typed_error(reg: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such version") as exc:
        stages.promote(reg, NAME, "9", actor="a", reason="r")
    assert exc.value.code == "model_version_unknown"
    assert exc.value.context == {"model": NAME, "version": "9"}
    with pytest.raises(ModelLoadError, match="no model has this name"):
        stages.promote(reg, "other", "1", actor="a", reason="r")
    with pytest.raises(ModelLoadError, match="no such version"):
        stages.stage(reg, NAME, "../1", "staging")
    with pytest.raises(ConfigError, match="plain folder name"):
        stages.production_version(reg, "../etc")


def test_a_version_that_fails_to_load_is_never_promoted(reg: Path) -> None:
    (reg / NAME / "2" / "model.skops").write_bytes(b"tampered")
    with pytest.raises(ModelLoadError, match="does not match its card"):
        stages.promote(reg, NAME, "2", actor="a", reason="r")
    assert stages.read_stages(reg, NAME) is None


def test_stage_and_archive(reg: Path) -> None:
    stages.promote(reg, NAME, "1", actor="a", reason="r")
    stages.stage(reg, NAME, "2", "staging", actor="a", reason="candidate")
    assert stages.staging_version(reg, NAME) == "2"
    stages.stage(reg, NAME, "3", "staging", actor="a", reason="newer candidate")
    assert stages.staging_version(reg, NAME) == "3"
    assert stages.stage_of(reg, NAME, "2") == "none"
    stages.archive(reg, NAME, "3", actor="a", reason="abandoned")
    assert stages.staging_version(reg, NAME) is None
    assert stages.stage_of(reg, NAME, "3") == "archived"
    with pytest.raises(ConfigError, match="in production") as exc:
        stages.archive(reg, NAME, "1", actor="a", reason="r")
    assert exc.value.code == "model_in_production"
    with pytest.raises(ConfigError, match="only by promote"):
        stages.stage(reg, NAME, "2", "production", actor="a", reason="r")  # type: ignore[arg-type]
    assert [h.action for h in stages.history(reg, NAME)][-3:] == ["stage", "stage", "archive"]


def test_staging_the_newest_version_of_a_legacy_registry_keeps_the_older_in_production(
    reg: Path,
) -> None:
    # e.g. training wrote v3 into a registry that predates stages: it is a candidate
    stages.stage(reg, NAME, "3", "staging", actor="train", reason="candidate")
    assert stages.production_version(reg, NAME) == "2"


def test_a_corrupt_stages_file_is_an_error_and_is_not_reset(reg: Path) -> None:
    path = reg / NAME / stages.STAGES_FILE
    bad_archived = {"stages_schema": stages.SCHEMA, "name": NAME, "archived": "1", "history": []}
    for text in ("{not json", '{"stages_schema": "other"}', "[]", json.dumps(bad_archived)):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ModelLoadError, match="stages file is corrupt") as exc:
            stages.production_version(reg, NAME)
        assert exc.value.code == "model_stages_corrupt"
        with pytest.raises(ModelLoadError, match="corrupt"):
            stages.promote(reg, NAME, "1", actor="a", reason="r")
        assert path.read_text(encoding="utf-8") == text


def test_revision_changes_with_every_write(reg: Path) -> None:
    assert stages.revision(reg, NAME) is None
    stages.promote(reg, NAME, "1", actor="a", reason="r")
    first = stages.revision(reg, NAME)
    stages.promote(reg, NAME, "1", actor="a", reason="no-op")
    assert stages.revision(reg, NAME) == first
    stages.promote(reg, NAME, "2", actor="a", reason="r")
    assert stages.revision(reg, NAME) not in (None, first)


def test_writes_leave_no_temporary_files(reg: Path) -> None:
    stages.promote(reg, NAME, "1", actor="a", reason="r")
    stages.promote(reg, NAME, "2", actor="a", reason="r")
    names = sorted(p.name for p in (reg / NAME).iterdir() if not p.name.isdigit())
    assert names == [".stages.lock", "stages.json"]


def test_list_models_and_versions(reg: Path, default_version_dir: Path) -> None:
    add_version(default_version_dir, reg, "churn", "1")
    (reg / "empty").mkdir()
    assert stages.list_models(reg) == ["churn", NAME]
    assert stages.versions(reg, NAME) == ["1", "2", "3"]


WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from scoring.stages import promote
    root, me, a, b = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    (Path(root) / f"ready-{me}").touch()
    go = Path(root) / "go"
    while not go.exists():
        time.sleep(0.0005)
    made = 0
    for i in range(60):
        st = promote(root, "lead-score", a if i % 2 else b, actor=me, reason=str(i), verify=False)
        made += (st.history[-1].actor, st.history[-1].reason) == (me, str(i))
    print(made)
    """
)


def test_two_processes_promoting_at_once_lose_no_transition(reg: Path) -> None:
    stages.promote(reg, NAME, "1", actor="setup", reason="start")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(reg), me, a, b],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for me, a, b in (("p1", "1", "2"), ("p2", "2", "3"))
    ]
    deadline = time.monotonic() + 60
    while not all((reg / f"ready-{me}").exists() for me in ("p1", "p2")):
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.01)
    (reg / "go").touch()  # both are imported and waiting: they start together
    made = [int(p.communicate(timeout=120)[0]) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    data = stored(reg)  # parses: never half a file
    entries = data["history"]
    # every transition saw the production the one before it left: no lost update
    production = None
    for entry in entries:
        assert entry["previous"] == production
        production = entry["version"]
    assert production == data["production"]
    # every promotion a worker saw succeed is in the file: no writer overwrote another's
    assert len(entries) == 1 + 1 + sum(made)  # the implicit v3 and the setup promotion
    assert {e["actor"] for e in entries} >= {"p1", "p2"}
    assert sorted(data["archived"] + [data["production"]]) == ["1", "2", "3"]


def card(version: str, **holdout: float) -> dict[str, Any]:
    return {"version": version, "metrics": {"holdout": holdout}}


@pytest.mark.parametrize(
    ("cand", "prod", "metric", "passed"),
    [
        pytest.param(0.80, 0.79, "roc_auc", True, id="auc-beats-by-margin"),
        pytest.param(0.794, 0.79, "roc_auc", False, id="auc-below-margin"),
        pytest.param(0.795, 0.79, "roc_auc", True, id="auc-exactly-margin"),
        pytest.param(0.70, 0.79, "roc_auc", False, id="auc-worse"),
        pytest.param(0.10, 0.12, "brier", True, id="brier-lower-is-better"),
        pytest.param(0.118, 0.12, "brier", False, id="brier-not-lower-enough"),
        pytest.param(0.13, 0.12, "brier", False, id="brier-worse"),
    ],
)
def test_gate(cand: float, prod: float, metric: str, passed: bool) -> None:
    result = gate(card("2", **{metric: cand}), card("1", **{metric: prod}), metric=metric)
    assert result.passed is passed
    assert (result.candidate, result.production) == (cand, prod)
    assert metric in result.reason
    assert ("passes" if passed else "fails") in result.reason


def test_gate_edges() -> None:
    assert gate(card("1", roc_auc=0.6), None).passed
    assert "no production" in gate(card("1"), None).reason
    missing = gate(card("2"), card("1", roc_auc=0.7))
    assert not missing.passed
    assert "no holdout roc_auc" in missing.reason
    assert not gate(card("2", roc_auc=0.9), {"version": "1"}).passed
    assert gate(card("2", roc_auc=0.71), card("1", roc_auc=0.7), margin=0.0).passed
    with pytest.raises(ConfigError, match="gate metric"):
        gate(card("2"), None, metric="base_rate")
    with pytest.raises(ConfigError, match="margin"):
        gate(card("2"), None, margin=-0.1)


def test_promote_if_better_promotes_a_better_candidate(reg: Path) -> None:
    stages.promote(reg, NAME, "1", actor="a", reason="r")
    result = promote_if_better(reg, NAME, "2", actor="train", reason="retrained")
    assert result.passed
    assert result.promoted
    assert stages.production_version(reg, NAME) == "2"
    assert "gate:" in stages.history(reg, NAME)[-1].reason


def test_promote_if_better_leaves_a_weaker_candidate_in_staging(reg: Path) -> None:
    stages.promote(reg, NAME, "3", actor="a", reason="r")
    result = promote_if_better(reg, NAME, "2", actor="train")
    assert not result.passed
    assert not result.promoted
    assert "fails" in result.reason
    assert stages.production_version(reg, NAME) == "3"
    assert stages.staging_version(reg, NAME) == "2"


def test_promote_if_better_judges_a_legacy_candidate_against_the_older_version(
    reg: Path,
) -> None:
    # no stages.json: v3 is the newest, but as a candidate it must beat v2 (0.75 vs 0.72)
    result = promote_if_better(reg, NAME, "3", actor="train", margin=0.05)
    assert not result.promoted
    assert result.production == 0.72
    assert stages.production_version(reg, NAME) == "2"
