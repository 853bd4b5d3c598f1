"""Integrity checks of a model version folder, shared by both load paths of the registry.

Nothing here imports scikit-learn, scipy or skops: the compiled load path
(:func:`scoring.registry.load_compiled`) runs every check below without them, and the skops
path (:func:`scoring.registry.load_model`) runs the same checks before it builds any object.
Every refusal is a :class:`~junction.core.errors.ModelLoadError` whose context holds the sha256
of ``model.skops`` (``None`` when it cannot be read), the model name and version when known,
and never a path: the folder's location is the operator's business, not the message's.

An XGBoost model (card ``algorithm: xgboost``) has one more file, ``booster.ubj``: the booster
in XGBoost's own UBJSON format (skops cannot load a Booster without pickle), named with its
sha256 in the card's ``booster`` entry beside the ``xgboost_version`` that saved it.  Both load
paths check the entry and the file's sha256 (:func:`read_booster`); a major.minor XGBoost
version other than the installed one is refused as for scikit-learn, while an installation
without XGBoost may still score the model from ``compiled.json``.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from junction.core.errors import ModelLoadError
from scoring.spec import FeatureSpec, spec_from_dict

MODEL_FILE = "model.skops"
CARD_FILE = "card.json"
COMPILED_FILE = "compiled.json"
REFERENCE_FILE = "reference.json"
BOOSTER_FILE = "booster.ubj"
BOOSTER_FORMAT = "xgboost.ubj"
XGBOOST_DISTRIBUTIONS = ("xgboost-cpu", "xgboost")  # both install the module ``xgboost``

# every type a model artifact may name (the linear and the trees pipelines, with and without
# calibration); anything else is refused unbuilt.  functools.partial only ever wraps a function
# that is itself on this list (skops builds the wrapped function by name from the same list).
TRUSTED_TYPES: tuple[str, ...] = (
    "builtins.bool",
    "builtins.dict",
    "builtins.float",
    "builtins.int",
    "builtins.list",
    "builtins.slice",
    "builtins.str",
    "builtins.tuple",
    "functools.partial",
    "numpy.bool_",
    "numpy.dtype",
    "numpy.float64",
    "numpy.int64",
    "numpy.ndarray",
    "numpy.random._generator.Generator",
    "numpy.uint64",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.frozen._frozen.FrozenEstimator",
    "sklearn.isotonic.IsotonicRegression",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.preprocessing._encoders.OrdinalEncoder",
    "sklearn.preprocessing._function_transformer.FunctionTransformer",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.utils.validation.check_array",
)


def fail(message: str, sha: str | None, **context: Any) -> ModelLoadError:
    """Return the refusal ``message`` with the artifact's sha256 and ``context``."""
    return ModelLoadError(message, context={"artifact_sha256": sha, **context})


def installed_sklearn() -> str | None:
    """Return the installed scikit-learn version from its metadata, without importing it."""
    try:
        return version("scikit-learn")
    except PackageNotFoundError:
        return None


def installed_xgboost() -> str | None:
    """Return the installed XGBoost version (``xgboost-cpu`` or ``xgboost``), not importing it."""
    for dist in XGBOOST_DISTRIBUTIONS:
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


def _major_minor(v: str | None) -> tuple[str, ...]:
    return tuple(str(v).split(".")[:2])


def read_artifact(vdir: Path) -> tuple[bytes, str]:
    """Return the bytes of ``model.skops`` and their sha256."""
    try:
        data = (vdir / MODEL_FILE).read_bytes()
    except OSError as exc:
        raise fail(
            "the model artifact is missing or unreadable", None, reason=type(exc).__name__
        ) from None
    return data, hashlib.sha256(data).hexdigest()


def read_card(vdir: Path, sha: str | None) -> dict[str, Any]:
    """Return the model card of ``vdir`` as a dict."""
    try:
        card = json.loads((vdir / CARD_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise fail("the model card is missing", sha) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise fail("the model card is unreadable", sha, reason=type(exc).__name__) from None
    if not isinstance(card, dict):
        raise fail("the model card is not a JSON object", sha)
    return card


def check_card(card: dict[str, Any], sha: str) -> dict[str, Any]:
    """Check the card against the artifact and this installation; return the error context.

    Refuses an artifact whose sha256 differs from the card's, a card without a name or version,
    a feature schema hash other than this version's and a scikit-learn version whose
    major.minor differs from the installed one.
    """
    ctx = {"model": card.get("name"), "version": card.get("version")}
    artifact = card.get("artifact")
    if not isinstance(artifact, dict) or artifact.get("sha256") != sha:
        raise fail("the model artifact does not match its card", sha, **ctx)
    if not isinstance(ctx["model"], str) or not isinstance(ctx["version"], str):
        raise fail("the model card has no name or version", sha)
    spec = card_spec(card, sha, ctx)
    if card.get("feature_schema_hash") != spec.schema_hash:
        raise fail(
            "the model was trained on other features than this version computes",
            sha,
            **ctx,
            expected=spec.schema_hash,
            found=card.get("feature_schema_hash"),
        )
    trained_with = str(card.get("sklearn_version"))
    installed = installed_sklearn()
    if _major_minor(trained_with) != _major_minor(installed):
        raise fail(
            "the model was saved by another scikit-learn version",
            sha,
            **ctx,
            trained_with=trained_with,
            installed=installed,
        )
    if card.get("algorithm") == "xgboost" or "booster" in card:
        _check_booster_entry(card, sha, ctx)
    return ctx


def _check_booster_entry(card: dict[str, Any], sha: str, ctx: dict[str, Any]) -> None:
    """Check an XGBoost card's ``booster`` entry and the XGBoost version that saved it.

    The entry must name exactly ``booster.ubj`` (an unsigned card must not be able to point
    the loader at another file).  Without XGBoost installed the version is not compared: the
    compiled model scores without it, and :func:`scoring.registry.load_model` refuses.
    """
    entry = card.get("booster")
    if (
        card.get("algorithm") != "xgboost"
        or not isinstance(entry, dict)
        or entry.get("file") != BOOSTER_FILE
        or entry.get("format") != BOOSTER_FORMAT
        or not isinstance(entry.get("sha256"), str)
        or not isinstance(card.get("xgboost_version"), str)
    ):
        raise fail("the model card's booster entry is malformed", sha, **ctx)
    trained_with = str(card["xgboost_version"])
    installed = installed_xgboost()
    if installed is not None and _major_minor(trained_with) != _major_minor(installed):
        raise fail(
            "the model was saved by another XGBoost version",
            sha,
            **ctx,
            trained_with=trained_with,
            installed=installed,
        )


def read_booster(vdir: Path, card: dict[str, Any], sha: str, ctx: dict[str, Any]) -> bytes | None:
    """Return the bytes of the booster the card names, after checking their sha256.

    Returns ``None`` for a card without a booster (every algorithm but ``xgboost``).  Call it
    after :func:`check_card`, which has checked the entry's shape.
    """
    entry = card.get("booster")
    if not isinstance(entry, dict):
        return None
    try:
        raw = (vdir / BOOSTER_FILE).read_bytes()
    except OSError as exc:
        raise fail(
            "the model's booster is missing or unreadable", sha, **ctx, reason=type(exc).__name__
        ) from None
    booster_sha = hashlib.sha256(raw).hexdigest()
    if booster_sha != entry.get("sha256"):
        raise fail(
            "the model's booster does not match its card", sha, **ctx, booster_sha256=booster_sha
        )
    return raw


def card_spec(card: dict[str, Any], sha: str | None, ctx: dict[str, Any]) -> FeatureSpec:
    """The feature spec a card declares (a card without one is a lead model)."""
    raw = card.get("feature_spec", {"spec": "lead.v1"})
    try:
        return spec_from_dict(raw)
    except ModelLoadError as exc:
        raise fail("the model card's feature spec is invalid", sha, **ctx, **exc.context) from None


def declared_types(data: bytes) -> set[str]:
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


def check_trusted(data: bytes, sha: str, ctx: dict[str, Any]) -> None:
    """Refuse an artifact that is not a readable skops file or names a type not trusted."""
    try:
        untrusted = sorted(declared_types(data) - set(TRUSTED_TYPES))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise fail("the model artifact is corrupt", sha, **ctx, reason=type(exc).__name__) from None
    if untrusted:
        raise fail(
            "the model artifact holds untrusted types", sha, **ctx, untrusted=", ".join(untrusted)
        )


def read_compiled(vdir: Path, card: dict[str, Any], sha: str, ctx: dict[str, Any]) -> Any:
    """Return the parsed ``compiled.json`` the card names, after checking its sha256.

    The card must name exactly ``compiled.json``: a card is not signed, so it must not be
    able to point the loader at another file.
    """
    entry = card.get("compiled")
    if (
        not isinstance(entry, dict)
        or entry.get("file") != COMPILED_FILE
        or not isinstance(entry.get("sha256"), str)
    ):
        raise fail("the model card's compiled entry is malformed", sha, **ctx)
    try:
        raw = (vdir / COMPILED_FILE).read_bytes()
    except OSError as exc:
        raise fail(
            "the compiled model is missing or unreadable", sha, **ctx, reason=type(exc).__name__
        ) from None
    compiled_sha = hashlib.sha256(raw).hexdigest()
    if compiled_sha != entry["sha256"]:
        raise fail(
            "the compiled model does not match its card", sha, **ctx, compiled_sha256=compiled_sha
        )
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise fail(
            "the compiled model is unreadable", sha, **ctx, reason=type(exc).__name__
        ) from None
