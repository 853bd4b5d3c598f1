"""Configuration of the SAP IDoc file-drop connector."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from connectors.files import FileSourceConfig

# a message type (MESTYP) or basic / extension type (IDOCTYP, CIMTYP): SAP names, Z-names too
_SAP_NAME = re.compile(r"^[A-Z0-9_/]{1,30}$")


class SapIdocConfig(FileSourceConfig):
    """Where the IDoc XML files are and which message types this pipeline takes."""

    message_types: list[str] = Field(
        default_factory=list,
        description=(
            "Message types (EDI_DC40/MESTYP) this reader emits, e.g. [ORDERS]; empty: every "
            "type. The root tag (the basic type) is never used to route: ORDERS05 carries "
            "both ORDERS and ORDRSP."
        ),
        examples=[["ORDERS"], ["INVOIC"], ["DEBMAS"]],
    )
    idoc_types: list[str] = Field(
        default_factory=list,
        description=(
            "Basic or extension types (EDI_DC40/IDOCTYP or CIMTYP) this reader emits, e.g. "
            "[ORDERS05]; empty: every type."
        ),
        examples=[["ORDERS05"], ["DEBMAS07", "ZDEBMAS07"]],
    )
    other_types: Literal["quarantine", "skip"] = Field(
        "quarantine",
        description=(
            "What happens to an IDoc whose types are not selected: quarantine (a row error "
            "naming its MESTYP/IDOCTYP) or skip (left out silently, for mixed inboxes)."
        ),
    )

    @field_validator("message_types", "idoc_types")
    @classmethod
    def _sap_names(cls, value: list[str]) -> list[str]:
        out = [v.strip().upper() for v in value]
        for name in out:
            if not _SAP_NAME.match(name):
                raise ValueError(f"{name!r} is not an SAP message or IDoc type name")
        return out
