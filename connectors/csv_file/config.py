"""Configuration of the CSV file-drop connector."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from connectors.files import FileSourceConfig

DELIMITER_CANDIDATES = ",;\t|"


class CsvFileConfig(FileSourceConfig):
    """Where the CSV files are and how to read them."""

    delimiter: str = Field(
        "auto",
        description=(
            "Field delimiter: 'auto' (an Excel 'sep=' first line, else sniffed among "
            "',' ';' TAB '|') or one explicit character."
        ),
        examples=["auto", ";", "\t"],
    )
    quotechar: str = Field('"', min_length=1, max_length=1, description="Quote character.")
    has_header: bool = Field(
        True,
        description="The first record holds the column names; otherwise columns are column_<n>.",
    )
    skip_rows: int = Field(
        0, ge=0, description="Records to skip before the header (report titles and the like)."
    )
    max_rows: int | None = Field(
        10_000_000,
        ge=1,
        description=(
            "A file with more records than this is refused whole, before any row is read, "
            "with TooManyRowsError (null: no limit; max_file_bytes still applies)."
        ),
    )

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, value: str) -> str:
        if value != "auto" and len(value) != 1:
            raise ValueError("delimiter must be 'auto' or a single character")
        if value in ("\r", "\n"):
            raise ValueError("delimiter cannot be a line break")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> CsvFileConfig:
        if self.quotechar in ("\r", "\n") or self.quotechar == self.delimiter:
            raise ValueError("quotechar must differ from the delimiter and from line breaks")
        return self
