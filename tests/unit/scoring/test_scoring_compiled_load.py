"""Loading the compiled model without scikit-learn: same scores, same refusals, lighter process."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError
from pathlib import Path
from typing import Any

import pytest
import skops.io as sio
from sklearn.preprocessing import FunctionTransformer

import scoring.integrity
from junction.core.errors import ModelLoadError
from scoring.compiled import CompiledLeadModel
from scoring.registry import (
    CARD_FILE,
    COMPILED_FILE,
    MODEL_FILE,
    load_compiled,
    load_model,
)
from scoring.sklearn_model import SklearnLeadScorer

REPO = Path(__file__).resolve().parents[3]
HEAVY = ("sklearn", "scipy", "skops")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _card(version_dir: Path) -> dict[str, Any]:
    card: dict[str, Any] = json.loads((version_dir / CARD_FILE).read_text())
    return card


def _write_card(version_dir: Path, card: dict[str, Any]) -> None:
    (version_dir / CARD_FILE).write_text(json.dumps(card))


def _forge_compiled(version_dir: Path, data: bytes) -> None:
    """Write a new compiled.json AND record its sha256 in the card, as a careful forger would."""
    (version_dir / COMPILED_FILE).write_bytes(data)
    card = _card(version_dir)
    card["compiled"]["sha256"] = hashlib.sha256(data).hexdigest()
    _write_card(version_dir, card)


def _make_old_style(version_dir: Path) -> None:
    """Turn a version folder into one saved before compiled.json existed."""
    card = _card(version_dir)
    del card["compiled"]
    _write_card(version_dir, card)
    (version_dir / COMPILED_FILE).unlink()


# both public entry points of the compiled path must refuse alike
LOADERS = {
    "load_compiled": load_compiled,
    "SklearnLeadScorer.load": SklearnLeadScorer.load,
}
loaders = pytest.mark.parametrize("load", LOADERS.values(), ids=LOADERS.keys())


def test_save_writes_compiled_json_named_in_the_card(default_version_dir):
    card = _card(default_version_dir)
    assert card["compiled"] == {
        "file": COMPILED_FILE,
        "sha256": _sha(default_version_dir / COMPILED_FILE),
    }
    on_disk = json.loads((default_version_dir / COMPILED_FILE).read_text())
    from_pipeline = CompiledLeadModel(load_model(default_version_dir).pipeline)
    assert on_disk["format"] == "junction.compiled-model.v2"
    assert on_disk["kind"] == "linear"
    assert on_disk["calibration"] is None
    assert on_disk["spec"] == {"spec": "lead.v1", "schema_hash": card["feature_schema_hash"]}
    assert on_disk["model"] == from_pipeline.to_dict()


def test_compiled_path_scores_bit_identical_to_the_pipeline_path(
    default_version_dir, holdout_leads
):
    assert len(holdout_leads) == 1000
    loaded = load_model(default_version_dir)
    by_pipeline = SklearnLeadScorer(loaded.pipeline, name=loaded.name, version=loaded.version)
    by_compiled = SklearnLeadScorer.load(default_version_dir)
    a, b = by_pipeline.score_columns(holdout_leads), by_compiled.score_columns(holdout_leads)
    assert a.values == b.values  # exact equality of every float, no tolerance
    assert a.factors == b.factors
    assert a.grades == b.grades
    assert [by_pipeline.score_one(r) for r in holdout_leads] == [
        by_compiled.score_one(r) for r in holdout_leads
    ]


_PROBE = """
import json, sys
from scoring.registry import ensure_default_model
from scoring.sklearn_model import SklearnLeadScorer
vdir = ensure_default_model(sys.argv[1])  # exists already: must not train
scorer = SklearnLeadScorer.load(vdir)
scorer.score_one({"lead_source": "referral", "employees": 40})
scorer.score_columns([{"lead_source": "web_form"}, {"industry": "software"}])
scorer.score([{"country": "DE"}])
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in %r)))
"""


def _heavy_modules_after_scoring(models_dir: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE % (HEAVY,), str(models_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=os.environ | {"PYTHONWARNINGS": "error"},
    )
    heavy: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return heavy


def test_scoring_process_imports_neither_sklearn_scipy_nor_skops(default_version_dir):
    assert _heavy_modules_after_scoring(default_version_dir.parents[1]) == []


def test_old_style_folder_falls_back_to_the_pipeline(version_copy, holdout_leads):
    expected = SklearnLeadScorer.load(version_copy).score_columns(holdout_leads)
    _make_old_style(version_copy)
    model, card = load_compiled(version_copy)
    assert "compiled" not in card
    assert model.term_names == SklearnLeadScorer.load(version_copy).model.term_names
    got = SklearnLeadScorer.load(version_copy).score_columns(holdout_leads)
    assert got.values == expected.values
    assert got.factors == expected.factors
    # the fallback compiles the pipeline, so that process does import scikit-learn
    heavy = _heavy_modules_after_scoring(version_copy.parents[1])
    assert {"sklearn", "skops"} <= {m.split(".")[0] for m in heavy}


def test_old_style_folder_is_still_verified(version_copy):
    _make_old_style(version_copy)
    card = _card(version_copy)
    card["feature_schema_hash"] = "0" * 64
    _write_card(version_copy, card)
    with pytest.raises(ModelLoadError, match="other features"):
        load_compiled(version_copy)


@loaders
def test_tampered_compiled_json_is_refused(version_copy, load):
    d = json.loads((version_copy / COMPILED_FILE).read_text())
    d["model"]["intercept"] += 1.0  # still well-formed: only the hash can tell
    (version_copy / COMPILED_FILE).write_text(json.dumps(d))
    with pytest.raises(ModelLoadError, match="compiled model does not match its card") as info:
        load(version_copy)
    assert info.value.context["artifact_sha256"] == _sha(version_copy / MODEL_FILE)
    assert info.value.context["compiled_sha256"] == _sha(version_copy / COMPILED_FILE)


@loaders
def test_tampered_model_skops_is_refused(version_copy, load):
    data = bytearray((version_copy / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (version_copy / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="artifact does not match its card") as info:
        load(version_copy)
    assert info.value.context["artifact_sha256"] == hashlib.sha256(data).hexdigest()


@loaders
def test_missing_compiled_json_named_by_the_card_is_refused(version_copy, load):
    (version_copy / COMPILED_FILE).unlink()
    with pytest.raises(ModelLoadError, match="compiled model is missing") as info:
        load(version_copy)
    assert info.value.context["artifact_sha256"] == _sha(version_copy / MODEL_FILE)


@loaders
@pytest.mark.parametrize("version", ["0.24.2", "1.0.2", "99.1.0", "None"])
def test_sklearn_version_mismatch_is_refused(version_copy, load, version):
    card = _card(version_copy)
    card["sklearn_version"] = version
    _write_card(version_copy, card)
    with pytest.raises(ModelLoadError, match="scikit-learn") as info:
        load(version_copy)
    assert info.value.context["trained_with"] == version
    assert info.value.context["artifact_sha256"] == _sha(version_copy / MODEL_FILE)


def test_another_patch_release_of_sklearn_is_accepted(version_copy, monkeypatch):
    major, minor, *_ = _card(version_copy)["sklearn_version"].split(".")
    monkeypatch.setattr(scoring.integrity, "version", lambda _: f"{major}.{minor}.99")
    model, _ = load_compiled(version_copy)
    assert model.term_names


def test_missing_sklearn_metadata_is_refused(version_copy, monkeypatch):
    def not_installed(name: str) -> str:
        raise PackageNotFoundError(name)

    monkeypatch.setattr(scoring.integrity, "version", not_installed)
    with pytest.raises(ModelLoadError, match="scikit-learn") as info:
        load_compiled(version_copy)
    assert info.value.context["installed"] is None


@loaders
def test_feature_schema_hash_mismatch_is_refused(version_copy, load):
    card = _card(version_copy)
    card["feature_schema_hash"] = "0" * 64
    _write_card(version_copy, card)
    with pytest.raises(ModelLoadError, match="other features") as info:
        load(version_copy)
    assert info.value.context["artifact_sha256"] == _sha(version_copy / MODEL_FILE)
    assert str(version_copy) not in str(info.value)


@pytest.mark.parametrize("missing", [MODEL_FILE, CARD_FILE])
def test_missing_artifact_or_card_is_refused(version_copy, missing):
    (version_copy / missing).unlink()
    with pytest.raises(ModelLoadError, match="missing"):
        load_compiled(version_copy)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\udcff"])
def test_unreadable_card_is_refused(version_copy, text):
    (version_copy / CARD_FILE).write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ModelLoadError, match="card") as info:
        load_compiled(version_copy)
    assert info.value.context["artifact_sha256"] == _sha(version_copy / MODEL_FILE)


@pytest.mark.parametrize("key", ["name", "version"])
def test_card_without_name_or_version_is_refused(version_copy, key):
    card = _card(version_copy)
    del card[key]
    _write_card(version_copy, card)
    with pytest.raises(ModelLoadError, match="no name or version"):
        SklearnLeadScorer.load(version_copy)


@pytest.mark.parametrize(
    "entry",
    [
        None,
        "compiled.json",
        {"file": "../../elsewhere.json", "sha256": "0" * 64},
        {"file": COMPILED_FILE},
    ],
)
def test_malformed_compiled_entry_in_the_card_is_refused(version_copy, entry):
    card = _card(version_copy)
    card["compiled"] = entry
    _write_card(version_copy, card)
    with pytest.raises(ModelLoadError, match="compiled entry is malformed"):
        load_compiled(version_copy)


@pytest.mark.parametrize("data", [b"{not json", b"\xff\xfe", b"[" * 100_000])
def test_unreadable_compiled_json_is_refused_even_with_a_matching_card(version_copy, data):
    _forge_compiled(version_copy, data)
    with pytest.raises(ModelLoadError, match="compiled model is unreadable") as info:
        load_compiled(version_copy)
    assert info.value.context["artifact_sha256"] == _sha(version_copy / MODEL_FILE)


def test_malformed_compiled_json_is_refused_even_with_a_matching_card(version_copy):
    d = json.loads((version_copy / COMPILED_FILE).read_text())
    d["model"]["k"] = d["model"]["k"][:3]
    _forge_compiled(version_copy, json.dumps(d).encode())
    with pytest.raises(ModelLoadError, match="malformed") as info:
        SklearnLeadScorer.load(version_copy)
    assert info.value.context["artifact_sha256"] == _sha(version_copy / MODEL_FILE)
    assert info.value.context["key"] == "k"
    assert info.value.context["model"] == "lead-score"


def test_artifact_with_untrusted_types_is_refused_on_the_compiled_path_too(version_copy):
    # the compiled path builds nothing from model.skops, but a folder that load_model refuses
    # must not be served by the other path either
    pipeline = load_model(version_copy).pipeline
    pipeline.named_steps["pre"].transformers_[2] = (
        "bin",
        FunctionTransformer(func=os.system),
        [9, 10, 11, 12],
    )
    forged = sio.dumps(pipeline)
    (version_copy / MODEL_FILE).write_bytes(forged)
    card = _card(version_copy)
    card["artifact"]["sha256"] = hashlib.sha256(forged).hexdigest()
    _write_card(version_copy, card)
    with pytest.raises(ModelLoadError, match="untrusted") as info:
        load_compiled(version_copy)
    assert info.value.context["artifact_sha256"] == hashlib.sha256(forged).hexdigest()
