"""Configuration of the file channel: CSV or JSONL exports appended to daily files in a folder."""

from __future__ import annotations

import string
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from outbound.file.cells import check_expression

PLACEHOLDERS = frozenset({"date", "pipeline"})


def placeholders(template: str) -> set[str]:
    """Return the ``{names}`` a path template uses (ValueError for a malformed template)."""
    names: set[str] = set()
    for _text, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            raise ValueError(
                f"path may only use {{date}} and {{pipeline}}, without format specs: {name!r}"
            )
        names.add(name)
    return names


class FileConfig(BaseModel):
    """Where exports go and what they hold.

    One row per delivery (a digest writes one row per item, all with the digest's delivery id),
    appended to ``folder/path``; ``{date}`` (UTC, YYYY-MM-DD, at write time) starts a new file
    each day and ``{pipeline}`` one per pipeline.  Every batch of rows is flushed and fsynced
    before the deliveries count as sent.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    folder: Path = Field(
        description="The folder the files go in (created when missing).",
        examples=["/var/lib/junction/exports"],
    )
    path: str | None = Field(
        default=None,
        description="File name template inside folder, with {date} and {pipeline}; may hold "
        "sub-folders. Default: '{pipeline}-{date}.csv' or '.jsonl'.",
        examples=["{pipeline}/{date}.csv"],
    )
    format: Literal["csv", "jsonl"] = Field(
        default="csv",
        description="csv: RFC 4180, every cell quoted, formula-injection-safe cells; jsonl: one "
        "JSON object per line.",
    )
    fields: dict[str, str] | None = Field(
        default=None,
        description="Columns: name → JMESPath over the event (type, record_id, pipeline, record, "
        "score, delivery_id). delivery_id is always the first column. Default: delivery_id, "
        "record_id, type, score.value, score.grade and the record's fields flattened.",
        examples=[{"email": "record.email", "grade": "score.grade", "score": "score.value"}],
    )
    skip_duplicates: bool = Field(
        default=False,
        description="Keep the delivery ids written to each open file and skip a delivery already "
        "in it (a re-send after a crash). Costs memory per row of the day's file, and reads the "
        "file once when it is first opened.",
    )

    @field_validator("path")
    @classmethod
    def _check_path(cls, template: str | None) -> str | None:
        if template is None:
            return None
        placeholders(template)
        sample = PurePosixPath(template.format(date="2000-01-01", pipeline="p"))
        if sample.is_absolute() or ".." in sample.parts or not sample.name:
            raise ValueError("path must be a relative file name inside folder, without '..'")
        return template

    @field_validator("fields")
    @classmethod
    def _check_fields(cls, fields: dict[str, str] | None) -> dict[str, str] | None:
        if fields is None:
            return None
        if not fields:
            raise ValueError("fields needs at least one column (or leave it out)")
        for name, expr in fields.items():
            if not name or not name.isprintable():
                raise ValueError(f"column name {name!r} is empty or has control characters")
            check_expression(expr)
        return fields

    def path_template(self) -> str:
        """Return the file name template, the default one when ``path`` is unset."""
        return self.path or f"{{pipeline}}-{{date}}.{self.format}"
