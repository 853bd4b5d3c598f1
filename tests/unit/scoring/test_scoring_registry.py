"""The model registry: skops artifacts with cards, verified on load; first-run default model."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import sklearn
import skops.io as sio
from sklearn.preprocessing import FunctionTransformer
from skops.io.exceptions import UntrustedTypesFoundException

from junction.core.errors import ModelLoadError
from scoring.batch_features import to_matrix
from scoring.features import FEATURE_SCHEMA_HASH, extract
from scoring.registry import (
    CARD_FILE,
    MODEL_FILE,
    TRUSTED_TYPES,
    ensure_default_model,
    latest_version,
    list_versions,
    load_model,
    save_model,
)
from scoring.synthetic import generate_leads
from scoring.train import train_lead_model


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _edit_card(version_dir: Path, **changes) -> None:
    card = json.loads((version_dir / CARD_FILE).read_text())
    card.update(changes)
    (version_dir / CARD_FILE).write_text(json.dumps(card))


def _replace_artifact(version_dir: Path, data: bytes) -> None:
    """Write a new artifact AND record its sha256 in the card, as a careful forger would."""
    (version_dir / MODEL_FILE).write_bytes(data)
    card = json.loads((version_dir / CARD_FILE).read_text())
    card["artifact"]["sha256"] = hashlib.sha256(data).hexdigest()
    (version_dir / CARD_FILE).write_text(json.dumps(card))


def test_card_describes_the_model(default_version_dir):
    card = json.loads((default_version_dir / CARD_FILE).read_text())
    assert card["name"] == "lead-score"
    assert card["version"] == "1"
    assert card["training_data"]["generator"] == "scoring.synthetic.generate_leads"
    assert card["training_data"]["n"] == 20_000
    assert isinstance(card["training_data"]["seed"], int)
    assert card["feature_schema_hash"] == FEATURE_SCHEMA_HASH
    assert card["sklearn_version"] == sklearn.__version__
    assert card["metrics"]["holdout"]["roc_auc"] >= 0.75
    assert card["grade_thresholds"] == {"A": 0.75, "B": 0.5, "C": 0.25}
    assert card["intended_use"]
    assert card["limitations"]
    assert card["artifact"]["sha256"] == _sha(default_version_dir / MODEL_FILE)


def test_skops_round_trip_predicts_the_same(tmp_path, holdout_leads):
    leads = generate_leads(3_000, seed=12)
    trained = train_lead_model(leads, [x["converted"] for x in leads], seed=12)
    vdir = save_model(trained, tmp_path, "m", training_data={"generator": "test", "n": 3000})
    loaded = load_model(vdir)
    x = to_matrix([extract(r) for r in holdout_leads])
    np.testing.assert_array_equal(
        loaded.pipeline.predict_proba(x), trained.pipeline.predict_proba(x)
    )
    assert (loaded.name, loaded.version, loaded.sha256) == ("m", "1", _sha(vdir / MODEL_FILE))
    # the next save gets the next version; no staging directory is left behind
    save_model(trained, tmp_path, "m", training_data={})
    assert list_versions(tmp_path, "m") == ["1", "2"]
    assert latest_version(tmp_path, "m") == "2"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1", "2"]
    with pytest.raises(FileExistsError):
        save_model(trained, tmp_path, "m", training_data={}, version="1")


def test_artifact_with_an_untrusted_type_is_refused(version_copy):
    pipeline = load_model(version_copy).pipeline
    # a forged artifact that would hand os.system to the loader
    pipeline.named_steps["pre"].transformers_[2] = (
        "bin",
        FunctionTransformer(func=os.system),
        [9, 10, 11, 12],
    )
    forged = sio.dumps(pipeline)
    _replace_artifact(version_copy, forged)
    with pytest.raises(ModelLoadError) as info:
        load_model(version_copy)
    assert "untrusted" in info.value.user_message
    assert (
        "posix.system" in info.value.context["untrusted"]
        or "nt.system" in info.value.context["untrusted"]
    )
    assert info.value.context["artifact_sha256"] == hashlib.sha256(forged).hexdigest()
    # and skops itself refuses it with the same explicit trusted list
    with pytest.raises(UntrustedTypesFoundException):
        sio.loads(forged, trusted=list(TRUSTED_TYPES))


def test_a_type_skops_trusts_but_we_do_not_is_refused(version_copy):
    from sklearn.ensemble import RandomForestClassifier

    pipeline = load_model(version_copy).pipeline
    pipeline.steps[1] = ("clf", RandomForestClassifier(n_estimators=1))
    _replace_artifact(version_copy, sio.dumps(pipeline))
    with pytest.raises(ModelLoadError, match="untrusted"):
        load_model(version_copy)


def test_truncated_artifact_is_refused_even_with_a_matching_card(version_copy):
    data = (version_copy / MODEL_FILE).read_bytes()
    (version_copy / MODEL_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="does not match its card") as info:
        load_model(version_copy)
    assert info.value.context["artifact_sha256"] == _sha(version_copy / MODEL_FILE)
    _replace_artifact(version_copy, data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_model(version_copy)


def test_garbage_artifact_is_refused(version_copy):
    _replace_artifact(version_copy, b"PK\x03\x04 this is not a zip file")
    with pytest.raises(ModelLoadError) as info:
        load_model(version_copy)
    assert info.value.context["artifact_sha256"] == _sha(version_copy / MODEL_FILE)


@pytest.mark.parametrize("missing", [MODEL_FILE, CARD_FILE])
def test_missing_file_is_refused(version_copy, missing):
    (version_copy / missing).unlink()
    with pytest.raises(ModelLoadError, match="missing"):
        load_model(version_copy)


def test_unreadable_card_is_refused(version_copy):
    (version_copy / CARD_FILE).write_text("{not json")
    with pytest.raises(ModelLoadError, match="unreadable") as info:
        load_model(version_copy)
    assert info.value.context["artifact_sha256"] == _sha(version_copy / MODEL_FILE)


def test_feature_schema_hash_mismatch_is_refused(version_copy):
    _edit_card(version_copy, feature_schema_hash="0" * 64)
    with pytest.raises(ModelLoadError, match="other features") as info:
        load_model(version_copy)
    assert info.value.context["artifact_sha256"] == _sha(version_copy / MODEL_FILE)


@pytest.mark.parametrize("version", ["0.24.2", "1.0.2", "99.1.0"])
def test_sklearn_version_mismatch_is_refused(version_copy, version):
    _edit_card(version_copy, sklearn_version=version)
    with pytest.raises(ModelLoadError, match="scikit-learn") as info:
        load_model(version_copy)
    assert info.value.context["trained_with"] == version
    assert info.value.context["artifact_sha256"] == _sha(version_copy / MODEL_FILE)


def test_error_message_holds_no_path_or_secret(version_copy):
    _edit_card(version_copy, feature_schema_hash="x")
    with pytest.raises(ModelLoadError) as info:
        load_model(version_copy)
    assert str(version_copy) not in info.value.user_message


def test_ensure_default_model_is_idempotent(tmp_path):
    first = ensure_default_model(tmp_path)
    assert first == tmp_path / "lead-score" / "1"
    stamp = (first / MODEL_FILE).stat().st_mtime_ns
    card = (first / CARD_FILE).read_text()
    assert ensure_default_model(tmp_path) == first
    assert (first / MODEL_FILE).stat().st_mtime_ns == stamp  # not retrained
    assert (first / CARD_FILE).read_text() == card
    assert list_versions(tmp_path, "lead-score") == ["1"]


def test_ensure_default_model_returns_the_newest_existing_version(tmp_path, default_version_dir):
    import shutil

    for v in ("1", "2", "10"):
        shutil.copytree(default_version_dir, tmp_path / "lead-score" / v)
    (tmp_path / "lead-score" / ".staging-x").mkdir()  # ignored: not a version
    assert ensure_default_model(tmp_path) == tmp_path / "lead-score" / "10"
    assert latest_version(tmp_path, "other") is None
