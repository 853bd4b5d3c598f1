"""Configuration of the ``odbc`` connector: where the database is and which streams to read.

A stream is a table (``tables``) or a configured query (``queries``).  Identifiers given here
(tables, columns, schema) are never pasted into SQL as given: the connector looks them up in the
database catalog first and refuses any that is not there (``ConfigError``).  Values always travel
as ``?`` parameters.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

ParamValue = str | int | float | bool | None


class _Stream(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key_columns: list[str] = Field(
        default_factory=list,
        description="Columns that identify a row; default for tables: the primary key.",
        examples=[["id"], ["company_id", "doc_no"]],
    )
    watermark_column: str | None = Field(
        None,
        description=(
            "A column that grows when a row changes (timestamp, date or integer such as a "
            "row version): reads are incremental from it. Without one, every run reads the "
            "whole stream."
        ),
        examples=["updated_at", "row_version"],
    )
    overlap_s: float | None = Field(
        None,
        ge=0,
        description=(
            "Seconds re-scanned before a timestamp watermark to catch rows committed late; "
            "default: the connector's overlap_s. Ignored for integer watermarks."
        ),
    )


class TableStream(_Stream):
    """A table read as one stream; the stream takes the table's name."""


class QueryStream(_Stream):
    """A configured SELECT read as one stream; values go as ``?`` parameters."""

    sql: str = Field(
        ...,
        min_length=1,
        description=(
            "A SELECT statement; its values are '?' parameters bound from params. The "
            "connector wraps it as a derived table to add the watermark filter and order."
        ),
        examples=["SELECT * FROM invoices WHERE company = ?"],
    )
    params: list[ParamValue] = Field(
        default_factory=list, description="Values bound, in order, to the '?' of sql."
    )

    @model_validator(mode="after")
    def _keys_required(self) -> QueryStream:
        if not self.key_columns:
            raise ValueError("a query stream needs key_columns")
        return self


class OdbcConfig(BaseModel):
    """A database reached through an ODBC driver (unixODBC), read as polled streams."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    connection_string: SecretStr | None = Field(
        None,
        description=(
            "An ODBC connection string, DSN or DSN-less, e.g. 'Driver=SQLite3;Database=/d.db' "
            "or 'Driver={PostgreSQL Unicode};Server=db;Database=erp;UID=u;PWD=p'. Secret: "
            "it may hold a password."
        ),
    )
    dsn: str | None = Field(
        None, description="A data source name from odbc.ini (instead of connection_string)."
    )
    username: str | None = Field(None, description="User name, with dsn.")
    password: SecretStr | None = Field(None, description="Password, with dsn.")
    db_schema: str | None = Field(
        None,
        alias="schema",
        description="Schema (or catalog owner) the tables live in; default: the driver's.",
    )
    tables: dict[str, TableStream] = Field(
        default_factory=dict,
        description="Tables to read, one stream each, by table name.",
        examples=[{"invoices": {"watermark_column": "updated_at"}}],
    )
    queries: dict[str, QueryStream] = Field(
        default_factory=dict, description="Named SELECT statements to read, one stream each."
    )
    overlap_s: float = Field(
        60.0,
        ge=0,
        le=86_400,
        description=(
            "Default seconds re-scanned before a timestamp watermark (rows already read are "
            "skipped by key and version, so the overlap only costs a re-scan)."
        ),
    )
    batch_size: int = Field(
        1000, ge=1, le=100_000, description="Rows per batch: the size of each fetchmany."
    )
    timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Login timeout and, where the driver supports one, query timeout (s).",
    )
    json_safe: bool = Field(
        True,
        description=(
            "Turn Decimal into its exact text and bytes into base64 so records serialize as "
            "JSON (the pipeline needs this); false keeps Decimal and bytes as read."
        ),
    )

    @model_validator(mode="after")
    def _one_source(self) -> OdbcConfig:
        if (self.connection_string is None) == (self.dsn is None):
            raise ValueError("give exactly one of connection_string or dsn")
        if self.connection_string is not None and (self.username or self.password):
            raise ValueError("username and password go with dsn; put them in connection_string")
        if not self.tables and not self.queries:
            raise ValueError("configure at least one table or query")
        both = set(self.tables) & set(self.queries)
        if both:
            raise ValueError(f"stream names used twice: {sorted(both)}")
        return self
