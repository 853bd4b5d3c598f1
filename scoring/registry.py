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
from scoring.compiled import CompiledLeadModel
from scoring.features import BINARY, CATEGORICAL, NUMERIC
from scoring.integrity import (
    CARD_FILE,
    COMPILED_FILE,
    MODEL_FILE,
    TRUSTED_TYPES,
    check_card,
    check_trusted,
    fail,
    read_artifact,
    read_card,
    read_compiled,
)

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

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

    pipeline: Pipeline
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


def _card(
    trained: TrainedModel,
    name: str,
    version: str,
    sha256: str,
    training_data: Mapping[str, Any],
    thresholds: tuple[float, float, float],
    compiled_sha256: str,
) -> dict[str, Any]:
    import skops  # only saving records its version; scoring never imports skops

    return {
        "card_schema": "junction.model-card.v1",
        "name": name,
        "version": version,
        "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "model_type": "sklearn Pipeline: ColumnTransformer + LogisticRegression",
        "training_data": dict(training_data)
        | {
            "split": trained.split,
            "n_train": trained.n_train,
            "n_holdout": trained.n_holdout,
            "skipped_invalid": trained.skipped,
            "seed": trained.seed,
        },
        "features": {
            "categorical": list(CATEGORICAL),
            "numeric": list(NUMERIC),
            "binary": list(BINARY),
        },
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

    Args:
        trained: the model from :func:`scoring.train.train_lead_model`.
        models_dir: the registry root.
        name: the model name.
        training_data: what the model was trained on, for the card (e.g. generator, seed, n).
        version: the version to create (digits); the next free one when omitted.
        thresholds: the recommended grade thresholds (A, B, C), recorded in the card.

    Raises:
        FileExistsError: ``version`` exists already.
        ModelLoadError: the pipeline is not the lead pipeline (it could not be compiled).
    """
    import skops.io as sio  # saving needs skops; loading for scoring does not

    root = Path(models_dir) / name
    root.mkdir(parents=True, exist_ok=True)
    data = sio.dumps(trained.pipeline)
    sha = hashlib.sha256(data).hexdigest()
    compiled = CompiledLeadModel(trained.pipeline, feature_schema_hash=trained.feature_schema_hash)
    # json writes floats with repr: every coefficient reads back bit for bit
    blob = (json.dumps(compiled.to_dict(), indent=1, allow_nan=False) + "\n").encode()
    compiled_sha = hashlib.sha256(blob).hexdigest()
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        for _ in range(100):  # another writer may take the version we picked; pick again
            target = version or str(int(latest_version(models_dir, name) or 0) + 1)
            card = _card(trained, name, target, sha, training_data, thresholds, compiled_sha)
            (staging / MODEL_FILE).write_bytes(data)
            (staging / COMPILED_FILE).write_bytes(blob)
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


def load_model(version_dir: str | Path) -> LoadedModel:
    """Load and verify the fitted pipeline in ``version_dir`` (imports scikit-learn and skops).

    Raises:
        ModelLoadError: the model is missing, corrupt, tampered with or incompatible.
    """
    import skops.io as sio
    from sklearn.exceptions import InconsistentVersionWarning
    from sklearn.pipeline import Pipeline

    vdir = Path(version_dir)
    data, sha = read_artifact(vdir)
    card = read_card(vdir, sha)
    ctx = check_card(card, sha)
    check_trusted(data, sha, ctx)
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
    if not isinstance(pipeline, Pipeline) or [n for n, _ in pipeline.steps] != ["pre", "clf"]:
        raise fail("the model artifact is not a lead-scoring pipeline", sha, **ctx)
    return LoadedModel(pipeline=pipeline, card=card, sha256=sha, version_dir=vdir)


def load_compiled(version_dir: str | Path) -> tuple[CompiledLeadModel, dict[str, Any]]:
    """Load and verify the compiled model in ``version_dir``, without scikit-learn.

    A version saved before ``compiled.json`` existed (its card has no ``compiled`` entry) is
    compiled from its pipeline through :func:`load_model` instead, which imports scikit-learn.

    Returns:
        The compiled model and the model card.

    Raises:
        ModelLoadError: the model or its compiled form is missing, corrupt, tampered with or
            incompatible (see the module docstring).
    """
    vdir = Path(version_dir)
    data, sha = read_artifact(vdir)  # hashed although unused: proves the folder is intact
    card = read_card(vdir, sha)
    ctx = check_card(card, sha)
    check_trusted(data, sha, ctx)
    if "compiled" not in card:
        loaded = load_model(vdir)
        return CompiledLeadModel(loaded.pipeline), loaded.card
    raw = read_compiled(vdir, card, sha, ctx)
    try:
        return CompiledLeadModel.from_dict(raw), card
    except ModelLoadError as exc:
        exc.context = {"artifact_sha256": sha, **ctx, **exc.context}
        raise


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
