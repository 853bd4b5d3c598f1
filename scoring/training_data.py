"""Training data: labelled rows (and their times) from records, checked before any fit.

The readers that produce the records live above this layer (``scoring`` imports neither the
connectors nor the store): :mod:`junction.pipeline.training_sources` reads a CSV file through
the ``csv_file`` connector (encoding detection, delimiter sniffing, quoting) and the store's
labelled records (canonical payloads joined with outcomes).  This module turns what they read
into a :class:`TrainingSet`:

* **Labels** (CSV): a :class:`LabelRule` says which column holds the outcome and which values
  are positive.  A tabular spec brings its own (``label:`` in its YAML); the lead spec reads
  ``converted`` with the usual true values (``1``, ``true``, ``yes``...).  ``--label-column``
  and ``--positive`` override either.  Rows whose label is empty (or, when the rule lists
  negative values, matches neither list) are unlabelled and left out.
* **Times**: a time column (``--time-column``, else the spec's ``time_field``, else a
  ``created_at`` column when there is one, as :func:`scoring.train.train_model` would use)
  gives the time split; without one the split is random.
* **Columns**: only the fields the spec reads (plus the label and time) are kept per row, so a
  wide file costs memory for the features only.

Every defect a person must fix (no label column, a feature column the file lacks, no positive
or no negative rows) is a :class:`~junction.core.errors.ConfigError` whose message says what to
do.  Messages name columns and counts, never cell values, except the distinct values of a
label column that has only a few short ones (``yes``/``no``), which is what the fix needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from junction.core.errors import ConfigError
from scoring.spec import FeatureSpec

LEAD_LABEL_COLUMN = "converted"
TRUE_VALUES: tuple[str, ...] = ("1", "true", "yes", "y", "t")
FALSE_VALUES: tuple[str, ...] = ("0", "false", "no", "n", "f")
_SHOWN_VALUES = 8  # a label column with more distinct values than this is not shown
_SHOWN_CHARS = 16  # nor one with longer values: they could be personal data


@dataclass(frozen=True)
class LabelRule:
    """Which column holds the outcome and which of its values count as 1 and as 0.

    Attributes:
        column: the record field of the label.
        positive: values that mean the outcome happened (compared after ``strip``).
        negative: values that mean it did not; ``None``: any other non-empty value.
        fold_case: compare lower-cased (the default true/false words).
    """

    column: str
    positive: tuple[str, ...]
    negative: tuple[str, ...] | None = None
    fold_case: bool = False

    def __post_init__(self) -> None:
        if not self.positive:
            raise ConfigError("give at least one positive label value (--positive VALUE)")

    def label(self, raw: Any) -> int | None:
        """1, 0, or None when ``raw`` is empty or (with ``negative``) in neither list."""
        if raw is None:
            return None
        if isinstance(raw, bool):
            raw = "true" if raw else "false"
        value = str(raw).strip()
        if self.fold_case:
            value = value.lower()
        if not value:
            return None
        if value in self._positive:
            return 1
        if self.negative is None:
            return 0
        return 0 if value in self._negative else None

    @property
    def _positive(self) -> frozenset[str]:
        return frozenset(v.lower() if self.fold_case else v for v in self.positive)

    @property
    def _negative(self) -> frozenset[str]:
        return frozenset(v.lower() if self.fold_case else v for v in self.negative or ())


def label_rule(
    spec: FeatureSpec, column: str | None = None, positive: Sequence[str] = ()
) -> LabelRule:
    """The label rule for ``spec``, with the command line's overrides.

    Args:
        spec: the feature spec; a tabular spec's ``label`` is the default rule.
        column: ``--label-column`` (default: the spec's label field, or ``converted``).
        positive: ``--positive`` values (default: the spec's, or the usual true values).

    Raises:
        ConfigError: a tabular spec without a label and no ``column`` given.
    """
    declared = getattr(spec, "label", None)
    if column is None and positive == () and declared is not None:
        return LabelRule(declared.field, tuple(declared.positive), declared.negative)
    if column is None:
        if spec.spec_id != "lead.v1" and declared is None:
            raise ConfigError(
                "the feature spec declares no label: add `label: {field: ..., positive: [...]}` "
                "to it or pass --label-column NAME",
                context={"spec": getattr(spec, "name", spec.spec_id)},
            )
        column = declared.field if declared is not None else LEAD_LABEL_COLUMN
    if positive:
        return LabelRule(column, tuple(positive))
    if declared is not None and column == declared.field:
        return LabelRule(column, tuple(declared.positive), declared.negative)
    return LabelRule(column, TRUE_VALUES, FALSE_VALUES, fold_case=True)


def source_fields(spec: FeatureSpec) -> tuple[str, ...]:
    """The record fields ``spec`` reads (a tabular feature's ``source``, else its name)."""
    fields = getattr(spec, "source_fields", None)
    if fields is not None:
        return tuple(fields)
    feats = getattr(spec, "features", None)
    if feats is not None:
        return tuple(dict.fromkeys(f.field for f in feats))
    return (*spec.categorical, *spec.numeric, *spec.binary)


@dataclass(frozen=True)
class TrainingSet:
    """Rows, 0/1 labels and (optionally) times, ready for :func:`scoring.train.train_model`.

    Attributes:
        rows: one mapping per labelled row, holding only the fields the spec reads.
        labels: 0 or 1 per row.
        times: one timestamp per row, or ``None`` (random split).
        source: what the data is, for the model card's ``training_data``.
        unlabelled: rows left out because their label was empty or unknown.
        unreadable: rows the reader could not parse (counted, not kept).
        missing_columns: feature fields absent from every row (only the lead spec tolerates
            them: its fields are optional).
    """

    rows: list[dict[str, Any]]
    labels: list[int]
    times: list[Any] | None
    source: dict[str, Any]
    unlabelled: int = 0
    unreadable: int = 0
    missing_columns: tuple[str, ...] = field(default=())

    @property
    def positives(self) -> int:
        """How many rows are labelled 1."""
        return sum(self.labels)

    def card(self) -> dict[str, Any]:
        """The card's ``training_data`` entry (source plus counts)."""
        out = dict(self.source)
        out |= {
            "n": len(self.rows),
            "positives": self.positives,
            "unlabelled": self.unlabelled,
            "unreadable": self.unreadable,
        }
        if self.missing_columns:
            out["missing_columns"] = list(self.missing_columns)
        return out


def _shown_values(seen: set[str]) -> str:
    if len(seen) > _SHOWN_VALUES or any(len(v) > _SHOWN_CHARS for v in seen):
        return "many or long distinct values"
    return "values: " + ", ".join(sorted(seen)) if seen else "no values"


def check_columns(
    spec: FeatureSpec, columns: Iterable[str], rule: LabelRule | None
) -> tuple[str, ...]:
    """Check a source's column names against the spec and label; return the missing features.

    Raises:
        ConfigError: the label column is absent, a tabular feature's column is absent, or
            none of the lead spec's fields is present.
    """
    have = set(columns)
    if rule is not None and rule.column not in have:
        raise ConfigError(
            f"the data has no label column {rule.column!r}: pass --label-column NAME "
            "(or set the spec's label.field)",
            context={"columns": len(have)},
        )
    wanted = source_fields(spec)
    missing = tuple(f for f in wanted if f not in have)
    if missing and spec.spec_id != "lead.v1":
        raise ConfigError(
            "the data lacks columns the feature spec reads: fix each feature's `source` "
            "in the spec, or the file's header",
            context={"missing": ", ".join(missing)},
        )
    if len(missing) == len(wanted):
        raise ConfigError(
            "the data has none of the lead spec's fields: pass --spec FILE.yaml to declare "
            "its columns",
            context={"expected": ", ".join(wanted)},
        )
    return missing


def check_labels(labels: Sequence[int], rule_text: str, seen: set[str] | None = None) -> None:
    """Refuse labels a model cannot learn from: no positives, or no negatives.

    Raises:
        ConfigError: one class is absent (the message says how to fix the rule).
    """
    pos = sum(labels)
    values = f" ({_shown_values(seen)})" if seen is not None else ""
    if not labels:
        raise ConfigError(f"no labelled rows: {rule_text} is empty or unknown in every row{values}")
    if pos == 0:
        raise ConfigError(
            f"no positive rows: no value of {rule_text} is positive{values}; "
            "pass --positive VALUE (repeatable)",
            context={"rows": len(labels)},
        )
    if pos == len(labels):
        raise ConfigError(
            f"no negative rows: every labelled value of {rule_text} is positive{values}; "
            "check --positive, or give the data the rows that did not convert",
            context={"rows": len(labels)},
        )


def from_records(
    records: Iterable[Mapping[str, Any]],
    spec: FeatureSpec,
    rule: LabelRule,
    *,
    source: Mapping[str, Any],
    time_column: str | None = None,
    unreadable: int = 0,
) -> TrainingSet:
    """Label ``records`` (e.g. CSV rows) with ``rule`` and keep the fields the spec reads.

    ``time_column`` defaults to the spec's ``time_field``, else ``created_at`` when the data
    has it.

    The first record's keys are taken as the columns (a CSV reader gives every row the header's
    keys).

    Raises:
        ConfigError: see :func:`check_columns` and :func:`check_labels`; also an absent time
            column, or no records at all.
    """
    keep = tuple(dict.fromkeys((*source_fields(spec), rule.column)))
    rows: list[dict[str, Any]] = []
    labels: list[int] = []
    times: list[Any] = []
    unlabelled = 0
    seen: set[str] = set()
    missing: tuple[str, ...] = ()
    first = True
    for record in records:
        if first:
            cols = list(record)
            missing = check_columns(spec, cols, rule)
            if time_column is None:
                declared = getattr(spec, "time_field", None)
                time_column = declared or ("created_at" if "created_at" in cols else None)
            if time_column is not None and time_column not in cols:
                raise ConfigError(
                    f"the data has no time column {time_column!r}: pass --time-column NAME "
                    "or leave it out for a random split"
                )
            keep = tuple(f for f in keep if f in cols)
            first = False
        raw = record.get(rule.column)
        if len(seen) <= _SHOWN_VALUES and raw is not None:
            seen.add(str(raw).strip())
        y = rule.label(raw)
        if y is None:
            unlabelled += 1
            continue
        rows.append({f: record.get(f) for f in keep})
        labels.append(y)
        if time_column is not None:
            times.append(record.get(time_column))
    if first:
        raise ConfigError("the data has no rows", context={"source": source.get("source", "?")})
    check_labels(labels, f"column {rule.column!r}", seen)
    return TrainingSet(
        rows=rows,
        labels=labels,
        times=times if time_column is not None else None,
        source=dict(source)
        | {"label": _rule_card(rule), "time_column": time_column or "none (random split)"},
        unlabelled=unlabelled,
        unreadable=unreadable,
        missing_columns=missing,
    )


def _rule_card(rule: LabelRule) -> dict[str, Any]:
    out: dict[str, Any] = {"column": rule.column, "positive": list(rule.positive)}
    if rule.negative is not None:
        out["negative"] = list(rule.negative)
    return out


def from_labelled(
    pairs: Sequence[tuple[Mapping[str, Any], int]],
    spec: FeatureSpec,
    *,
    source: Mapping[str, Any],
    times: Sequence[Any] | None = None,
) -> TrainingSet:
    """A training set from ``(record, label)`` pairs (the store's records with outcomes).

    Raises:
        ConfigError: no pairs, or one class only.
    """
    if not pairs:
        raise ConfigError(
            "no labelled records: the store holds no outcomes of this kind for the pipeline's "
            "records; record outcomes first (`junction model outcomes import`, or the "
            "pipeline's scoring.outcome)",
            context={k: v for k, v in source.items() if k in ("pipeline", "outcome_kind")},
        )
    if times is not None and len(times) != len(pairs):
        raise ConfigError("training records and times differ in length")
    labels = [int(y) for _, y in pairs]
    check_labels(labels, f"outcome {source.get('outcome_kind', '?')!r}")
    wanted = source_fields(spec)
    rows = [dict(r) for r, _ in pairs]
    present = set().union(*(r.keys() for r in rows))
    missing = tuple(f for f in wanted if f not in present)
    return TrainingSet(
        rows=rows,
        labels=labels,
        times=list(times) if times is not None else None,
        source=dict(source),
        missing_columns=missing,
    )
