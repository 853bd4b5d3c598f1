"""Model registry: versioned artifacts with model cards on the local disk.

Layout: ``<models_dir>/<name>/<version>/`` holds ``model.skops`` (the fitted pipeline, written
by ``skops.io``), ``compiled.json`` (the numbers the scorer needs, see
:class:`~scoring.compiled.CompiledLeadModel`) and ``card.json`` (the model card, which records
the sha256 of both).  Versions are positive integers, ``1`` being the first; a version directory
appears complete or not at all (written aside, then renamed).

Two load paths, which trust nothing they have not checked (:mod:`scoring.integrity`):

* :func:`load_compiled`, for scoring: reads ``compiled.json`` and imports neither scikit-learn,
  scipy nor skops (~140 MB and ~1 s less per process).  It still hashes ``model.skops`` and reads
  its declared types, so it refuses exactly the folders :func:`load_model` refuses, plus a
  ``compiled.json`` that is missing, unreadable, malformed or differs from the card.
* :func:`load_model`, for retraining and inspection: rebuilds the fitted pipeline.  Only types
  in ``TRUSTED_TYPES`` are accepted: the allowlist is checked on the artifact's schema before any
  object is built, then given to ``skops.io.loads`` as its explicit ``trusted`` list.  Pickle
  is never used.

Both refuse (:class:`ModelLoadError`, with the artifact's sha256 in the context) when the card
or the artifact is missing or unreadable, when the artifact's sha256 differs from the card's,
and when the feature schema hash or the scikit-learn version (major.minor) differs from this
installation.

An ``xgboost`` model is saved without pickle in two parts: ``model.skops`` holds the fitted
pipeline (or calibration around it) with its classifier step replaced by ``"passthrough"``
(only trusted scikit-learn types), and ``booster.ubj`` the booster in XGBoost's own format
(:mod:`scoring._xgb_sklearn`); the card names it with its sha256 and the XGBoost version.
:func:`load_model` verifies both and puts a classifier read by XGBoost's parser back into the
pipeline (it needs XGBoost); :func:`load_bundle` verifies both and scores from
``compiled.json`` without XGBoost.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from junction.core.errors import ModelLoadError
from scoring.compiled import CompiledLinearModel
from scoring.integrity import (
    BOOSTER_FILE,
    BOOSTER_FORMAT,
    CARD_FILE,
    COMPILED_FILE,
    MODEL_FILE,
    REFERENCE_FILE,
    TRUSTED_TYPES,
    check_card,
    check_trusted,
    fail,
    read_artifact,
    read_booster,
    read_card,
    read_compiled,
)
from scoring.model_file import Calibrator, CompiledModel, dump
from scoring.model_file import load as load_file

if TYPE_CHECKING:
    from scoring.train import TrainedModel

__all__ = [
    "CARD_FILE",
    "COMPILED_FILE",
    "DEFAULT_NAME",
    "MODEL_FILE",
    "TRUSTED_TYPES",
    "LoadedModel",
    "ensure_default_model",
    "latest_version",
    "list_versions",
    "load_bundle",
    "load_compiled",
    "load_model",
    "save_model",
]

DEFAULT_NAME = "lead-score"
DEFAULT_THRESHOLDS: tuple[float, float, float] = (0.75, 0.5, 0.25)
DEFAULT_TRAINING_ROWS = 20_000
DEFAULT_TRAINING_SEED = 20_260_301

INTENDED_USE = (
    "Rank inbound B2B leads by estimated probability of conversion so that sales can work the "
    "best first. Scores support, and do not replace, a human decision."
)
LIMITATIONS = (
    "The default model is trained on synthetic leads (scoring.synthetic); retrain on your own "
    "labelled conversions before relying on its probabilities.",
    "Probabilities are calibrated only for data like the training data; watch feature drift.",
    "Categories unseen in training contribute nothing to the score.",
    "Not for decisions about individuals with legal or similarly significant effects.",
)


@dataclass(frozen=True)
class LoadedModel:
    """A verified model: the fitted pipeline, its card and the sha256 of its artifact."""

    pipeline: Any  # a fitted Pipeline, or a CalibratedClassifierCV around one
    card: dict[str, Any]
    sha256: str
    version_dir: Path

    @property
    def name(self) -> str:
        """The model name from the card."""
        return str(self.card["name"])

    @property
    def version(self) -> str:
        """The model version from the card."""
        return str(self.card["version"])


def list_versions(models_dir: str | Path, name: str = DEFAULT_NAME) -> list[str]:
    """Return the versions of model ``name``, oldest first."""
    root = Path(models_dir) / name
    if not root.is_dir():
        return []
    found = [p.name for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(found, key=int)


def latest_version(models_dir: str | Path, name: str = DEFAULT_NAME) -> str | None:
    """Return the newest version of model ``name``, or ``None`` if it has none."""
    versions = list_versions(models_dir, name)
    return versions[-1] if versions else None


_MODEL_TYPES = {
    "logistic_regression": "ColumnTransformer (one-hot, scaling) + LogisticRegression",
    "hist_gradient_boosting": "ColumnTransformer (ordinal codes) + HistGradientBoostingClassifier",
    "xgboost": "ColumnTransformer (ordinal codes) + XGBClassifier (booster in booster.ubj)",
}


def _card(
    trained: TrainedModel,
    name: str,
    version: str,
    sha256: str,
    training_data: Mapping[str, Any],
    thresholds: tuple[float, float, float],
    compiled_sha256: str,
    reference_sha256: str | None,
    booster_sha256: str | None = None,
) -> dict[str, Any]:
    import skops  # only saving records its version; scoring never imports skops

    spec = trained.spec
    card: dict[str, Any] = {
        "card_schema": "junction.model-card.v2",
        "name": name,
        "version": version,
        "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "algorithm": trained.algorithm,
        "model_type": "sklearn Pipeline: " + _MODEL_TYPES.get(trained.algorithm, trained.algorithm),
        "params": dict(trained.params),
        "calibration": {
            "method": trained.calibration or "none",
            "slice_rows": trained.n_calibration,
        },
        "training_data": dict(training_data)
        | {
            "split": trained.split,
            "window": dict(trained.window),
            "n_train": trained.n_train,
            "n_calibration": trained.n_calibration,
            "n_holdout": trained.n_holdout,
            "skipped_invalid": trained.skipped,
            "seed": trained.seed,
        },
        "features": {
            "categorical": list(spec.categorical),
            "numeric": list(spec.numeric),
            "binary": list(spec.binary),
        },
        "feature_spec": spec.to_dict(),
        "numeric_effects": dict(trained.numeric_effects),
        "feature_schema_hash": trained.feature_schema_hash,
        "sklearn_version": trained.sklearn_version,
        "skops_version": skops.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "metrics": {"holdout": trained.metrics},
        "grade_thresholds": dict(zip("ABC", thresholds, strict=True)),
        "intended_use": INTENDED_USE,
        "limitations": list(LIMITATIONS),
        "artifact": {"file": MODEL_FILE, "format": "skops", "sha256": sha256},
        "compiled": {"file": COMPILED_FILE, "sha256": compiled_sha256},
    }
    if reference_sha256 is not None:
        card["reference"] = {"file": REFERENCE_FILE, "sha256": reference_sha256}
    if booster_sha256 is not None:
        import xgboost  # only saving an XGBoost model records its version

        card["booster"] = {"file": BOOSTER_FILE, "format": BOOSTER_FORMAT, "sha256": booster_sha256}
        card["xgboost_version"] = str(xgboost.__version__)
    return card


def _json_blob(data: Any) -> bytes:
    # json writes floats with repr: every number reads back bit for bit
    return (json.dumps(data, indent=1, allow_nan=False) + "\n").encode()


def save_model(
    trained: TrainedModel,
    models_dir: str | Path,
    name: str = DEFAULT_NAME,
    *,
    training_data: Mapping[str, Any],
    version: str | None = None,
    thresholds: tuple[float, float, float] = DEFAULT_THRESHOLDS,
) -> Path:
    """Write ``trained`` as a new version of model ``name`` and return its directory.

    The version holds ``model.skops`` (the fitted, possibly calibrated, estimator; for
    ``xgboost`` without its classifier, which goes to ``booster.ubj``), ``compiled.json``
    (:mod:`scoring.model_file`), ``reference.json`` (the drift reference of the training rows,
    when there is one) and ``card.json``, which records the sha256 of each.

    Args:
        trained: the model from :func:`scoring.train.train_model`.
        models_dir: the registry root.
        name: the model name.
        training_data: what the model was trained on, for the card (e.g. source, file, n).
        version: the version to create (digits); the next free one when omitted.
        thresholds: the recommended grade thresholds (A, B, C), recorded in the card.

    Raises:
        FileExistsError: ``version`` exists already.
    """
    import skops.io as sio  # saving needs skops; loading for scoring does not

    root = Path(models_dir) / name
    root.mkdir(parents=True, exist_ok=True)
    artifact, booster = trained.artifact, None
    if trained.algorithm == "xgboost":
        from scoring._xgb_sklearn import split_artifact

        artifact, booster = split_artifact(artifact)
    data = sio.dumps(artifact)
    sha = hashlib.sha256(data).hexdigest()
    booster_sha = None if booster is None else hashlib.sha256(booster).hexdigest()
    blob = _json_blob(dump(trained.compiled, trained.calibrator))
    compiled_sha = hashlib.sha256(blob).hexdigest()
    ref_blob = None if trained.reference is None else _json_blob(trained.reference)
    ref_sha = None if ref_blob is None else hashlib.sha256(ref_blob).hexdigest()
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        for _ in range(100):  # another writer may take the version we picked; pick again
            target = version or str(int(latest_version(models_dir, name) or 0) + 1)
            card = _card(
                trained,
                name,
                target,
                sha,
                training_data,
                thresholds,
                compiled_sha,
                ref_sha,
                booster_sha,
            )
            (staging / MODEL_FILE).write_bytes(data)
            if booster is not None:
                (staging / BOOSTER_FILE).write_bytes(booster)
            (staging / COMPILED_FILE).write_bytes(blob)
            if ref_blob is not None:
                (staging / REFERENCE_FILE).write_bytes(ref_blob)
            (staging / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
            try:
                os.rename(staging, root / target)  # atomic: readers never see half a version
            except OSError:
                if not (root / target).exists():
                    raise
                if version is not None:
                    raise FileExistsError(f"model {name!r} has a version {version!r}") from None
                continue
            return root / target
        raise FileExistsError(f"no free version for model {name!r}")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _is_model(obj: Any) -> bool:
    """A lead-scoring pipeline (``pre`` + ``clf``), or a calibrated classifier around one."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import Pipeline

    if isinstance(obj, CalibratedClassifierCV):
        inner = getattr(obj.estimator, "estimator", None)  # FrozenEstimator(pipeline)
        return _is_model(inner) if inner is not None else False
    return (
        isinstance(obj, Pipeline)
        and [n for n, _ in obj.steps] == ["pre", "clf"]
        and not isinstance(obj.steps[1][1], str)  # an XGBoost pipeline without its booster
    )


def load_model(version_dir: str | Path) -> LoadedModel:
    """Load and verify the fitted estimator in ``version_dir`` (imports scikit-learn and skops).

    Raises:
        ModelLoadError: the model is missing, corrupt, tampered with or incompatible.
    """
    import skops.io as sio
    from sklearn.exceptions import InconsistentVersionWarning

    vdir = Path(version_dir)
    data, sha = read_artifact(vdir)
    card = read_card(vdir, sha)
    ctx = check_card(card, sha)
    check_trusted(data, sha, ctx)
    booster = read_booster(vdir, card, sha, ctx)
    if booster is not None:
        try:
            import xgboost  # noqa: F401
        except ImportError:
            raise fail(
                "the model needs XGBoost: install the extra, pip install 'junction-hub[xgboost]'",
                sha,
                **ctx,
            ) from None
    try:
        with warnings.catch_warnings():
            # patch releases keep estimator state compatible (checked above); sklearn still
            # warns on any version difference
            warnings.simplefilter("ignore", InconsistentVersionWarning)
            pipeline = sio.loads(data, trusted=list(TRUSTED_TYPES))
    except Exception as exc:  # noqa: BLE001 - a corrupt artifact can fail anywhere inside skops
        raise fail(
            "the model artifact cannot be loaded", sha, **ctx, reason=type(exc).__name__
        ) from None
    if booster is not None:
        from scoring._xgb_sklearn import attach_booster

        try:
            pipeline = attach_booster(pipeline, booster)
        except ModelLoadError as exc:
            raise fail(exc.user_message, sha, **ctx, **exc.context) from None
    if not _is_model(pipeline):
        raise fail("the model artifact is not a lead-scoring pipeline", sha, **ctx)
    return LoadedModel(pipeline=pipeline, card=card, sha256=sha, version_dir=vdir)


def load_bundle(
    version_dir: str | Path,
) -> tuple[CompiledModel, Calibrator | None, dict[str, Any]]:
    """Load and verify the compiled model, its calibration and card, without scikit-learn.

    A version saved before ``compiled.json`` existed (its card has no ``compiled`` entry) is
    compiled from its pipeline through :func:`load_model` instead, which imports scikit-learn.

    Raises:
        ModelLoadError: the model or its compiled form is missing, corrupt, tampered with or
            incompatible (see the module docstring).
    """
    vdir = Path(version_dir)
    data, sha = read_artifact(vdir)  # hashed although unused: proves the folder is intact
    card = read_card(vdir, sha)
    ctx = check_card(card, sha)
    check_trusted(data, sha, ctx)
    has_booster = read_booster(vdir, card, sha, ctx) is not None  # hashed: the folder is intact
    if "compiled" not in card:
        loaded = load_model(vdir)
        return CompiledLinearModel(loaded.pipeline), None, loaded.card
    raw = read_compiled(vdir, card, sha, ctx)
    try:
        model, calibration = load_file(raw)
    except ModelLoadError as exc:
        exc.context = {"artifact_sha256": sha, **ctx, **exc.context}
        raise
    if model.spec.schema_hash != card.get("feature_schema_hash"):
        raise fail("the compiled model's features differ from its card", sha, **ctx)
    if (model.kind == "xgb_trees") != has_booster:
        raise fail("the compiled model's kind differs from its card", sha, **ctx)
    return model, calibration, card


def load_compiled(version_dir: str | Path) -> tuple[CompiledModel, dict[str, Any]]:
    """Load and verify the compiled model and card of ``version_dir`` (see :func:`load_bundle`).

    Returns:
        The compiled model and the model card (the calibration, if any, is left out).
    """
    model, _, card = load_bundle(version_dir)
    return model, card


def ensure_default_model(models_dir: str | Path, name: str = DEFAULT_NAME) -> Path:
    """Return the newest version directory of ``name``, training a first one if there is none.

    On first run this trains on ``DEFAULT_TRAINING_ROWS`` synthetic leads (fixed seed) and saves
    version ``1``; later calls return the existing newest version without training.  Two
    processes racing on an empty registry both train, and one of them keeps the other's result.
    """
    latest = latest_version(models_dir, name)
    if latest is not None:
        return Path(models_dir) / name / latest
    # training is rare and needs scikit-learn: import it only now
    from scoring.synthetic import generate_leads
    from scoring.train import train_lead_model

    leads = generate_leads(DEFAULT_TRAINING_ROWS, DEFAULT_TRAINING_SEED)
    labels = [lead["converted"] for lead in leads]
    trained = train_lead_model(leads, labels, seed=DEFAULT_TRAINING_SEED)
    training_data = {
        "generator": "scoring.synthetic.generate_leads",
        "seed": DEFAULT_TRAINING_SEED,
        "n": DEFAULT_TRAINING_ROWS,
    }
    try:
        return save_model(trained, models_dir, name, training_data=training_data, version="1")
    except OSError:
        if latest_version(models_dir, name) is None:
            raise
        return Path(models_dir) / name / str(latest_version(models_dir, name))
