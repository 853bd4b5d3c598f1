"""Feature specs: what a scoring model sees of one record, as a value every model kind shares.

A spec names its features in three groups, always in this order: ``categorical`` (normalized
category strings), ``numeric`` (finite floats) and ``binary`` (0.0 or 1.0).  A feature row is
the tuple ``(*categorical, *numeric, *binary)``; a batch is a :class:`FeatureColumns`.
Compiled models (:mod:`scoring.compiled`, :mod:`scoring.trees`), drift profiles
(:mod:`scoring.drift`) and training (:mod:`scoring.train`) work on any spec through this
interface.

Two kinds of spec exist:

* ``lead.v1`` (:data:`LEAD_SPEC`): the built-in lead features of :mod:`scoring.features`,
  hand-tuned for the pipeline's hot path.
* ``tabular.v1`` (:class:`scoring.tabular.TabularSpec`): declared in YAML for a CSV or any
  record type, e.g. the UCI Bank Marketing columns.

``schema_hash`` covers the names, kinds and derivation rules; a model stores its spec (by id,
or in full for a declared one) and the registry refuses a model whose hash does not match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from junction.core.errors import ModelLoadError, ScoringInputError

FloatArray = npt.NDArray[np.float64]


class FeatureColumns(NamedTuple):
    """Features of the scorable records of a batch, feature-major.

    Attributes:
        categorical: one list of normalized category strings per categorical feature.
        numeric: shape ``(len(spec.numeric), n)``.
        binary: shape ``(len(spec.binary), n)``, values 0.0 or 1.0.
        rows: the batch index of each column position, or ``None`` when every record of the
            batch is present (the usual case).
    """

    categorical: tuple[list[str], ...]
    numeric: FloatArray
    binary: FloatArray
    rows: list[int] | None


@runtime_checkable
class FeatureSpec(Protocol):
    """The features a model is trained on and scores with."""

    @property
    def spec_id(self) -> str:
        """``lead.v1`` or ``tabular.v1``."""
        ...

    @property
    def categorical(self) -> tuple[str, ...]:
        """Names of the categorical features, in row order."""
        ...

    @property
    def numeric(self) -> tuple[str, ...]:
        """Names of the numeric features, in row order (after the categoricals)."""
        ...

    @property
    def binary(self) -> tuple[str, ...]:
        """Names of the binary features, in row order (last)."""
        ...

    @property
    def schema_hash(self) -> str:
        """sha256 over names, kinds and derivation rules."""
        ...

    def extract(self, record: Any) -> tuple[Any, ...]:
        """The feature row of ONE record (a mapping or an object with the fields).

        Raises:
            ScoringInputError: a field holds a value that cannot be its feature.
        """
        ...

    def extract_columns(
        self, records: Sequence[Any]
    ) -> tuple[FeatureColumns, dict[int, ScoringInputError]]:
        """Features of a batch, and ``{batch index: error}`` for records that cannot be scored."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; :func:`spec_from_dict` reads it back."""
        ...


def feature_names(spec: FeatureSpec) -> tuple[str, ...]:
    """All feature names of ``spec`` in row order."""
    return (*spec.categorical, *spec.numeric, *spec.binary)


def columns_from_rows(
    spec: FeatureSpec, rows: Sequence[Sequence[Any]], index: list[int] | None = None
) -> FeatureColumns:
    """Turn feature rows of ``spec`` into :class:`FeatureColumns`."""
    n_cat, n_num, n_bin = len(spec.categorical), len(spec.numeric), len(spec.binary)
    if not rows:
        return FeatureColumns(
            tuple([] for _ in range(n_cat)),
            np.empty((n_num, 0), dtype=np.float64),
            np.empty((n_bin, 0), dtype=np.float64),
            index,
        )
    cols = list(zip(*rows, strict=True))
    cats = tuple(list(cols[f]) for f in range(n_cat))
    num = np.array(cols[n_cat : n_cat + n_num], dtype=np.float64).reshape(n_num, len(rows))
    binary = np.array(cols[n_cat + n_num :], dtype=np.float64).reshape(n_bin, len(rows))
    return FeatureColumns(cats, num, binary, index)


def per_record_columns(
    spec: FeatureSpec, records: Sequence[Any]
) -> tuple[FeatureColumns, dict[int, ScoringInputError]]:
    """The slow, exact batch path: :meth:`FeatureSpec.extract` per record, errors by index."""
    good: list[tuple[Any, ...]] = []
    rows: list[int] = []
    errors: dict[int, ScoringInputError] = {}
    for i, record in enumerate(records):
        try:
            good.append(spec.extract(record))
        except ScoringInputError as exc:
            exc.context.setdefault("index", i)
            errors[i] = exc
        else:
            rows.append(i)
    return columns_from_rows(spec, good, rows if errors else None), errors


def to_matrix(spec: FeatureSpec, rows: Sequence[Sequence[Any]]) -> npt.NDArray[np.object_]:
    """Feature rows as the ``(n, n_features)`` object array the scikit-learn pipelines take."""
    out = np.empty((len(rows), len(feature_names(spec))), dtype=object)
    for i, row in enumerate(rows):
        out[i] = row
    return out


def spec_from_dict(d: Mapping[str, Any]) -> FeatureSpec:
    """Rebuild a spec from :meth:`FeatureSpec.to_dict` output (e.g. a model's ``compiled.json``).

    Raises:
        ModelLoadError: the spec is unknown or malformed.
    """
    if not isinstance(d, Mapping):
        raise ModelLoadError("the model's feature spec is malformed", context={"key": "spec"})
    kind = d.get("spec")
    if kind == "lead.v1":
        from scoring.lead_spec import LEAD_SPEC

        return LEAD_SPEC
    if kind == "tabular.v1":
        from scoring.tabular import TabularSpec

        try:
            return TabularSpec.from_dict(d)
        except Exception as exc:  # noqa: BLE001 - any defect of an untrusted file is a refusal
            raise ModelLoadError(
                "the model's feature spec is malformed",
                context={"key": "spec", "reason": type(exc).__name__},
            ) from None
    raise ModelLoadError(
        "the model's feature spec is of an unknown kind", context={"spec": str(kind)}
    )
