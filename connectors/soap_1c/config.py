"""Configuration of the 1C:Enterprise SOAP connector."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connectors.soap.config import SoapConnection

_NAME = re.compile(r"^[^\W\d][\w]{0,127}$")
_PATH = re.compile(r"^([^\W\d][\w]{0,127})(\.[^\W\d][\w]{0,127})*$")


class OneCOperation(BaseModel):
    """One stream: an operation of the service, its parameters and how to read it again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    operation: str = Field(
        ..., description="The WSDL operation to call.", examples=["GetCounterparties"]
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Fixed parameters of every call (besides the incremental and limit ones).",
        examples=[{"Kind": "customers"}],
    )
    items: str = Field(
        "",
        description=(
            "Dotted path, inside the operation's `return`, to the repeated item element; empty "
            "when `return` itself is the list."
        ),
        examples=["Counterparty", "Documents.Document"],
    )
    id_field: str = Field(
        "Ref", description="The item field holding its id (a 1C reference GUID, a code)."
    )
    incremental: Literal["none", "change_date", "message_number"] = Field(
        "none",
        description=(
            "none: every read returns everything; change_date: the service returns items "
            "changed at or after `since_parameter`; message_number: an exchange-plan node, "
            "the service returns the message after the number received (`since_parameter`)."
        ),
    )
    since_parameter: str | None = Field(
        None,
        description="The parameter taking the change date or the last received message number.",
        examples=["ChangedSince", "ReceivedNo"],
    )
    change_field: str | None = Field(
        None,
        description=(
            "The item field holding its change date (xs:dateTime): the watermark of "
            "change_date reads and the record version; for message_number reads an optional "
            "version (default: the message number)."
        ),
        examples=["ChangedAt"],
    )
    message_number_field: str = Field(
        "MessageNo", description="Path, inside `return`, of the message number (message_number)."
    )
    limit_parameter: str | None = Field(
        None,
        description=(
            "A parameter limiting the items of one answer (to page_size); change_date reads "
            "then page by the watermark."
        ),
        examples=["Limit"],
    )
    start: str | None = Field(
        None,
        description=(
            "Where a first read starts: an ISO date-time (change_date) or a message number "
            "(message_number, default 0)."
        ),
        examples=["2026-01-01T00:00:00", "0"],
    )

    @model_validator(mode="after")
    def _consistent(self) -> OneCOperation:
        for name in (self.operation, self.id_field, *self.parameters):
            if not _NAME.match(name):
                raise ValueError(f"{name!r} is not an XML element name")
        for path in (self.items, self.message_number_field):
            if path and not _PATH.match(path):
                raise ValueError(f"{path!r} is not a dotted element path")
        if self.incremental != "none" and self.since_parameter is None:
            raise ValueError(f"incremental {self.incremental} needs since_parameter")
        if self.incremental == "change_date" and self.change_field is None:
            raise ValueError("incremental change_date needs change_field")
        message = self.incremental == "message_number"
        if message and self.start is not None and not self.start.isdigit():
            raise ValueError("start of a message_number read is a message number")
        return self


class Soap1CConfig(SoapConnection):
    """A 1C:Enterprise web service (``/ws/<Name>.1cws``) read operation by operation."""

    operations: dict[str, OneCOperation] = Field(
        ...,
        min_length=1,
        description="Streams by name, each one operation of the service.",
        examples=[
            {
                "counterparties": {
                    "operation": "GetCounterparties",
                    "items": "Counterparty",
                    "incremental": "change_date",
                    "since_parameter": "ChangedSince",
                    "change_field": "ChangedAt",
                    "limit_parameter": "Limit",
                }
            }
        ],
    )
    check_operation: str | None = Field(
        None,
        description="An operation without parameters that check() calls (e.g. Ping); default: "
        "one item of the first stream.",
    )
    page_size: int = Field(
        500, ge=1, le=100_000, description="Items per call when a stream has limit_parameter."
    )

    @property
    def effective_page_size(self) -> int:
        """Items per call: page_size, lowered to batch_size."""
        return min(self.page_size, self.batch_size)
