"""Settings shared by the SOAP connectors (``soap_1c``, ``sap``): WSDL, endpoint, auth, timeouts."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

_URL = re.compile(r"^https?://[^/?#\s]+(/[^#\s]*)?$")


class SoapConnection(BaseModel):
    """How to reach one SOAP service: a local WSDL, the real endpoint and the credentials."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(
        ...,
        min_length=1,
        description=(
            "The service's WSDL as a local file (relative paths resolve against the pipeline "
            "config). It is never fetched from the service: download it once (…?wsdl) and keep "
            "it with the config. Imports of remote schemas are refused."
        ),
        examples=["wsdl/HubExchange.wsdl"],
    )
    address: str = Field(
        ...,
        description=(
            "The endpoint to call, replacing the WSDL's soap:address (which names the host the "
            "service was published on)."
        ),
        examples=["https://erp.example.com/trade/ws/HubExchange.1cws"],
    )
    soap_version: Literal["1.1", "1.2"] = Field(
        "1.1", description="Which of the WSDL's bindings to use: SOAP 1.1 or 1.2."
    )
    binding: str | None = Field(
        None,
        description=(
            "The binding's local name when the WSDL has several of the chosen SOAP version "
            "(default: the only one)."
        ),
        examples=["HubExchangeSoapBinding"],
    )
    auth: Literal["basic", "ws_security", "none"] = Field(
        "basic",
        description=(
            "basic: HTTP Basic with the UTF-8 bytes of username and password (Cyrillic 1C "
            "users); ws_security: a WS-Security UsernameToken in the SOAP header; none."
        ),
    )
    username: str | None = Field(None, description="The service user (1C infobase user, SAP user).")
    password: SecretStr | None = Field(None, description="The user's password (use ${env:...}).")
    ws_security_digest: bool = Field(
        False, description="With auth ws_security: send a PasswordDigest instead of the text."
    )
    timeout_s: float = Field(
        60.0, gt=0, le=3600, description="Timeout of each SOAP call (connect and read)."
    )
    batch_size: int = Field(1000, ge=1, le=100_000, description="Records per emitted batch.")

    @field_validator("address")
    @classmethod
    def _http_address(cls, value: str) -> str:
        if not _URL.match(value):
            raise ValueError("address must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> SoapConnection:
        if self.auth != "none" and (self.username is None or self.password is None):
            raise ValueError(f"auth {self.auth} needs username and password")
        return self
