"""Training CSVs are read like the csv_file connector reads them: encodings, delimiters, quoting."""

from __future__ import annotations

from pathlib import Path

import pytest

from junction.core.errors import ConfigError
from junction.pipeline.training_sources import csv_training_set
from scoring.tabular import TabularSpec
from scoring.training_data import label_rule

SPEC = TabularSpec.model_validate(
    {
        "name": "deals",
        "features": [
            {"name": "region", "kind": "categorical", "source": "Регион", "transform": "strip"},
            {"name": "amount", "kind": "numeric", "source": "Сумма"},
            {"name": "note", "kind": "categorical", "transform": "strip"},
        ],
        "label": {"field": "Итог", "positive": ["да"], "negative": ["нет"]},
    }
)
HEADER = '"Регион";"Сумма";"note";"Итог"'
ROWS = [
    '"Москва";"1 200,5";"a; quoted ; field";"да"',
    '"Санкт-Петербург";"300";"two\nlines";"нет"',
    '"Казань";"45,25";"plain";"нет"',
    '"Москва";"10";"";"да"',
]


def write(path: Path, text: str, encoding: str) -> Path:
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [("cp1251", ""), ("utf-8", "\ufeff"), ("utf-8", "")],
    ids=["cp1251", "utf8-bom", "utf8"],
)
def test_semicolon_quoted_files_in_any_encoding_read_the_same(
    tmp_path: Path, encoding: str, bom: str
) -> None:
    path = write(tmp_path / "deals.csv", bom + "\r\n".join([HEADER, *ROWS]) + "\r\n", encoding)
    progress: list[int] = []
    ts = csv_training_set(path, SPEC, label_rule(SPEC), progress=progress.append)
    assert ts.labels == [1, 0, 0, 1]
    assert [r["Регион"] for r in ts.rows] == ["Москва", "Санкт-Петербург", "Казань", "Москва"]
    assert ts.rows[0]["note"] == "a; quoted ; field"
    assert ts.rows[1]["note"] == "two\nlines"
    assert [SPEC.extract(r)[2] for r in ts.rows] == [1200.5, 300.0, 45.25, 10.0]
    assert ts.source == {
        "source": "csv",
        "file": "deals.csv",
        "label": {"column": "Итог", "positive": ["да"], "negative": ["нет"]},
        "time_column": "none (random split)",
    }
    assert progress[-1] == 4
    assert ts.unreadable == 0


def test_an_explicit_delimiter_and_encoding_are_applied(tmp_path: Path) -> None:
    text = "\n".join(["Регион|Сумма|note|Итог", "Омск|1|x|да", "Омск|2|y|нет"]) + "\n"
    path = write(tmp_path / "pipes.txt", text, "cp1251")
    ts = csv_training_set(path, SPEC, label_rule(SPEC), encoding="cp1251", delimiter="|")
    assert ts.labels == [1, 0]


def test_unreadable_rows_are_counted_not_guessed(tmp_path: Path) -> None:
    rows = [*ROWS, '"Казань";"1";"ragged";"да";"extra"']
    path = write(tmp_path / "d.csv", "\n".join([HEADER, *rows]) + "\n", "utf-8")
    ts = csv_training_set(path, SPEC, label_rule(SPEC))
    assert ts.unreadable == 1
    assert len(ts.rows) == 4


def test_a_missing_file_and_bad_options_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        csv_training_set(tmp_path / "nope.csv", SPEC, label_rule(SPEC))
    path = write(tmp_path / "d.csv", HEADER + "\n", "utf-8")
    with pytest.raises(ConfigError, match="--encoding, --delimiter"):
        csv_training_set(path, SPEC, label_rule(SPEC), delimiter=";;")
    with pytest.raises(ConfigError, match="no rows"):
        csv_training_set(path, SPEC, label_rule(SPEC))
