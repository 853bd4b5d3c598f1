"""Configuration of the SAP RFC-over-SOAP connector."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connectors.soap.config import SoapConnection

# ABAP names: function modules, parameters, table fields (namespaces like /BIC/ included)
_ABAP = re.compile(r"^[A-Za-z/][A-Za-z0-9_/]{0,59}$")


class SapFunction(BaseModel):
    """One stream: a function's output table, read with fixed and incremental parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    function: str = Field(
        ..., description="The function module (the WSDL operation).", examples=["Z_SD_GET_ORDERS"]
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Importing parameters and input tables of every call; a table is a list of row "
            "dicts (sent as repeated <item>)."
        ),
        examples=[{"IV_VKORG": "1000", "IT_STATUS": [{"SIGN": "I", "OPTION": "EQ", "LOW": "A"}]}],
    )
    table: str = Field(..., description="The output table whose rows are the records.")
    key_fields: list[str] = Field(
        ...,
        min_length=1,
        description="The row fields that identify a row (joined by '/' into its key).",
        examples=[["VBELN", "POSNR"]],
    )
    incremental: Literal["none", "change_date"] = Field(
        "none",
        description=(
            "change_date: the function returns rows changed on or after `since_parameter`; "
            "none: every read returns the whole table."
        ),
    )
    since_parameter: str | None = Field(
        None,
        description="The importing parameter taking the change date.",
        examples=["IV_CHANGED_SINCE"],
    )
    since_format: Literal["date10", "date8"] = Field(
        "date10",
        description=(
            "How the change date is sent: date10 (YYYY-MM-DD, SOAMANAGER) or date8 (YYYYMMDD)."
        ),
    )
    change_field: str | None = Field(
        None, description="The row field holding its change date (AEDAT).", examples=["AEDAT"]
    )
    change_time_field: str | None = Field(
        None,
        description="The row field holding its change time (AEZET), if any.",
        examples=["AEZET"],
    )
    start: str | None = Field(
        None,
        description="The change date a first read starts from (YYYY-MM-DD).",
        examples=["2026-01-01"],
    )
    return_table: str | None = Field(
        "RETURN",
        description=(
            "A BAPIRET2 output table; a message of TYPE E or A makes the call fail (a 200 answer "
            "can still be an error). None: not checked."
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> SapFunction:
        names = [self.function, self.table, *self.key_fields, *self.parameters]
        names += [n for n in (self.since_parameter, self.change_field, self.change_time_field) if n]
        for name in names + ([self.return_table] if self.return_table else []):
            if not _ABAP.match(name):
                raise ValueError(f"{name!r} is not an ABAP name")
        if self.incremental == "change_date" and (
            self.since_parameter is None or self.change_field is None
        ):
            raise ValueError("incremental change_date needs since_parameter and change_field")
        return self


class SapConfig(SoapConnection):
    """An SAP system's RFC-based SOAP services (SOAMANAGER), read function by function."""

    client: str | None = Field(
        None,
        pattern=r"^[0-9]{3}$",
        description="The SAP client (Mandant), sent as the sap-client query parameter.",
        examples=["100"],
    )
    functions: dict[str, SapFunction] = Field(
        ...,
        min_length=1,
        description="Streams by name, each one function's output table.",
        examples=[
            {
                "order_items": {
                    "function": "Z_SD_GET_ORDERS",
                    "parameters": {"IV_VKORG": "1000"},
                    "table": "ET_ORDERS",
                    "key_fields": ["VBELN", "POSNR"],
                    "incremental": "change_date",
                    "since_parameter": "IV_CHANGED_SINCE",
                    "change_field": "AEDAT",
                    "change_time_field": "AEZET",
                }
            }
        ],
    )

    @property
    def endpoint(self) -> str:
        """The address with ``sap-client`` added to its query (when ``client`` is set)."""
        if self.client is None or "sap-client=" in self.address:
            return self.address
        sep = "&" if "?" in self.address else "?"
        return f"{self.address}{sep}sap-client={self.client}"
