"""Model registry, first version: versioned artifacts with model cards on the local disk.

Layout: ``<models_dir>/<name>/<version>/`` holds ``model.skops`` (the fitted pipeline, written
by ``skops.io``) and ``card.json`` (the model card).  Versions are positive integers, ``1`` being
the first; a version directory appears complete or not at all (written aside, then renamed).

Loading trusts nothing it has not checked.  It refuses (:class:`ModelLoadError`, with the
artifact's sha256 in the context) when the card or the artifact is missing or unreadable, when
the artifact's sha256 differs from the card's, when the feature schema hash or the scikit-learn
version (major.minor) differs from this installation, and when the artifact names any type
outside ``TRUSTED_TYPES``: the allowlist is checked on the artifact's schema before any object
is built, then given to ``skops.io.loads`` as its explicit ``trusted`` list.  Pickle is never used.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import skops
import skops.io as sio
from sklearn.exceptions import InconsistentVersionWarning
from sklearn.pipeline import Pipeline

from junction.core.errors import ModelLoadError
from scoring.features import BINARY, CATEGORICAL, FEATURE_SCHEMA_HASH, NUMERIC
from scoring.synthetic import generate_leads
from scoring.train import TrainedModel, train_lead_model

MODEL_FILE = "model.skops"
CARD_FILE = "card.json"
DEFAULT_NAME = "lead-score"
DEFAULT_THRESHOLDS: tuple[float, float, float] = (0.75, 0.5, 0.25)
DEFAULT_TRAINING_ROWS = 20_000
DEFAULT_TRAINING_SEED = 20_260_301

# every type the lead pipeline's artifact may name; anything else is refused unbuilt
TRUSTED_TYPES: tuple[str, ...] = (
    "builtins.bool",
    "builtins.dict",
    "builtins.float",
    "builtins.int",
    "builtins.list",
    "builtins.slice",
    "builtins.str",
    "builtins.tuple",
    "numpy.bool_",
    "numpy.dtype",
    "numpy.float64",
    "numpy.int64",
    "numpy.ndarray",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.preprocessing._function_transformer.FunctionTransformer",
)

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
) -> dict[str, Any]:
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
    """
    root = Path(models_dir) / name
    root.mkdir(parents=True, exist_ok=True)
    data = sio.dumps(trained.pipeline)
    sha = hashlib.sha256(data).hexdigest()
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        for _ in range(100):  # another writer may take the version we picked; pick again
            target = version or str(int(latest_version(models_dir, name) or 0) + 1)
            card = _card(trained, name, target, sha, training_data, thresholds)
            (staging / MODEL_FILE).write_bytes(data)
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


def _fail(message: str, sha: str | None, **context: Any) -> ModelLoadError:
    return ModelLoadError(message, context={"artifact_sha256": sha, **context})


def _declared_types(data: bytes) -> set[str]:
    """Return the ``module.Class`` names the skops schema declares, without building objects."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        schema = json.loads(zf.read("schema.json"))
    found: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("__module__"), str) and isinstance(node.get("__class__"), str):
                found.add(f"{node['__module__']}.{node['__class__']}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def _read_card(version_dir: Path, sha: str | None) -> dict[str, Any]:
    try:
        card = json.loads((version_dir / CARD_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _fail("the model card is missing", sha) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail("the model card is unreadable", sha, reason=type(exc).__name__) from None
    if not isinstance(card, dict):
        raise _fail("the model card is not a JSON object", sha)
    return card


def load_model(version_dir: str | Path) -> LoadedModel:
    """Load and verify the model in ``version_dir`` (see the module docstring for the checks).

    Raises:
        ModelLoadError: the model is missing, corrupt, tampered with or incompatible.
    """
    vdir = Path(version_dir)
    try:
        data = (vdir / MODEL_FILE).read_bytes()
    except OSError as exc:
        raise _fail(
            "the model artifact is missing or unreadable", None, reason=type(exc).__name__
        ) from None
    sha = hashlib.sha256(data).hexdigest()
    card = _read_card(vdir, sha)
    ctx = {"model": card.get("name"), "version": card.get("version")}
    artifact = card.get("artifact")
    if not isinstance(artifact, dict) or artifact.get("sha256") != sha:
        raise _fail("the model artifact does not match its card", sha, **ctx)
    if card.get("feature_schema_hash") != FEATURE_SCHEMA_HASH:
        raise _fail(
            "the model was trained on other features than this version computes",
            sha,
            **ctx,
            expected=FEATURE_SCHEMA_HASH,
            found=card.get("feature_schema_hash"),
        )
    trained_with = str(card.get("sklearn_version"))
    if _major_minor(trained_with) != _major_minor(sklearn.__version__):
        raise _fail(
            "the model was saved by another scikit-learn version",
            sha,
            **ctx,
            trained_with=trained_with,
            installed=sklearn.__version__,
        )
    try:
        untrusted = sorted(_declared_types(data) - set(TRUSTED_TYPES))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise _fail(
            "the model artifact is corrupt", sha, **ctx, reason=type(exc).__name__
        ) from None
    if untrusted:
        raise _fail(
            "the model artifact holds untrusted types", sha, **ctx, untrusted=", ".join(untrusted)
        )
    try:
        with warnings.catch_warnings():
            # patch releases keep estimator state compatible (checked above); sklearn still
            # warns on any version difference
            warnings.simplefilter("ignore", InconsistentVersionWarning)
            pipeline = sio.loads(data, trusted=list(TRUSTED_TYPES))
    except Exception as exc:  # noqa: BLE001 - a corrupt artifact can fail anywhere inside skops
        raise _fail(
            "the model artifact cannot be loaded", sha, **ctx, reason=type(exc).__name__
        ) from None
    if not isinstance(pipeline, Pipeline) or [n for n, _ in pipeline.steps] != ["pre", "clf"]:
        raise _fail("the model artifact is not a lead-scoring pipeline", sha, **ctx)
    return LoadedModel(pipeline=pipeline, card=card, sha256=sha, version_dir=vdir)


def ensure_default_model(models_dir: str | Path, name: str = DEFAULT_NAME) -> Path:
    """Return the newest version directory of ``name``, training a first one if there is none.

    On first run this trains on ``DEFAULT_TRAINING_ROWS`` synthetic leads (fixed seed) and saves
    version ``1``; later calls return the existing newest version without training.  Two
    processes racing on an empty registry both train, and one of them keeps the other's result.
    """
    latest = latest_version(models_dir, name)
    if latest is not None:
        return Path(models_dir) / name / latest
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
