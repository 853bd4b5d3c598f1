"""Where training data comes from: a CSV file, or the store's records labelled by outcomes.

This sits above :mod:`scoring.training_data` (which labels and checks rows) because reading
needs the ``csv_file`` connector and the store, which ``scoring`` may not import.

* :func:`csv_training_set` reads any CSV the hub ingests the same way the ``csv_file``
  connector does: the encoding is detected (BOM, strict UTF-8, else a charset guess such as
  cp1251) and the whole file is decoded strictly before a row is used; the delimiter is sniffed
  among ``, ; TAB |`` (or an Excel ``sep=`` line); quoted fields may hold delimiters and line
  breaks.  Rows the reader cannot parse are counted (``unreadable``), not guessed at.
* :func:`store_training_set` takes each lead's earliest stored version (the one scored before
  the outcome was known) with its outcome label (:func:`junction.store.outcomes.training_rows`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.csv_file.config import CsvFileConfig
from connectors.csv_file.connector import CsvFileConnector
from junction.core.errors import ConfigError
from scoring.spec import FeatureSpec
from scoring.training_data import LabelRule, TrainingSet, from_labelled, from_records

if TYPE_CHECKING:
    from junction.store.repo import Store

Progress = Callable[[int], None]
"""Called with the number of rows read so far (for a progress display)."""

# training reads one file a person chose: no size cap beyond the machine's memory
_NO_LIMIT = 1 << 60
_BATCH = 10_000


def _csv_records(
    path: Path, encoding: str, delimiter: str, progress: Progress | None, errors: list[int]
) -> Iterator[dict[str, Any]]:
    cfg = CsvFileConfig(
        path=str(path),
        encoding=encoding,
        delimiter=delimiter,
        settle_seconds=0,
        batch_size=_BATCH,
        max_file_bytes=_NO_LIMIT,
    )
    connector = CsvFileConnector(cfg)
    n = 0
    try:
        for batch in connector.read(str(path), None):
            errors[0] += len(batch.errors)
            yield from batch.records
            n += len(batch.records)
            if progress is not None:
                progress(n)
    finally:
        connector.close()


def csv_training_set(
    path: str | Path,
    spec: FeatureSpec,
    rule: LabelRule,
    *,
    time_column: str | None = None,
    encoding: str = "auto",
    delimiter: str = "auto",
    progress: Progress | None = None,
) -> TrainingSet:
    """Read and label a CSV file for training.

    Args:
        path: the CSV file.
        spec: the feature spec (its fields are the columns kept).
        rule: where the label is and which values are positive.
        time_column: the column of the rows' times (default: see
            :func:`scoring.training_data.from_records`).
        encoding: ``auto`` or a codec name.
        delimiter: ``auto`` or one character.
        progress: called with the rows read so far.

    Raises:
        ConfigError: no such file, or a defect :func:`scoring.training_data.from_records`
            names (label column, feature columns, one class only).
        EncodingError: a byte does not decode in the detected or given encoding.
    """
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ConfigError("the CSV file does not exist", context={"file": str(path)})
    try:
        CsvFileConfig(path=str(file), encoding=encoding, delimiter=delimiter)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(
            "invalid CSV options (--encoding, --delimiter)", details=str(exc)
        ) from None
    errors = [0]
    records = _csv_records(file, encoding, delimiter, progress, errors)
    source = {"source": "csv", "file": file.name}
    training = from_records(records, spec, rule, source=source, time_column=time_column)
    return TrainingSet(
        rows=training.rows,
        labels=training.labels,
        times=training.times,
        source=training.source,
        unlabelled=training.unlabelled,
        unreadable=errors[0],
        missing_columns=training.missing_columns,
    )


def store_training_set(
    store: Store, pipeline: str, spec: FeatureSpec, *, kind: str = "converted"
) -> TrainingSet:
    """The labelled records of ``pipeline``: earliest canonical payloads with ``kind`` outcomes.

    Times are the records' own ``created_at`` (picked up by the trainer), which does not depend
    on when the outcome was observed; records without one are split at random.

    Raises:
        ConfigError: no labelled records, or one class only.
    """
    from junction.store.outcomes import training_rows

    pairs: Sequence[tuple[dict[str, Any], int]] = training_rows(store, pipeline, kind)
    source = {"source": "store", "pipeline": pipeline, "outcome_kind": kind}
    return from_labelled(pairs, spec, source=source)
