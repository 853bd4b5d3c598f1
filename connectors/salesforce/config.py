"""Configuration of the Salesforce connector and of the Salesforce CRM write-back.

``SalesforceConnection`` (auth, API version, timeouts, base URL) is shared by the source
connector and ``outbound.crm.salesforce``; ``SalesforceConfig`` adds what a read needs.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# an sObject or field API name: letters, digits and underscores (custom ones end in __c)
API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")

AuthMethod = Literal["client_credentials", "jwt_bearer", "password", "oauth_password", "session"]

# which fields each auth method needs (the rest must be left out, so a typo is caught)
_NEEDS: dict[str, tuple[str, ...]] = {
    "client_credentials": ("client_id", "client_secret"),
    "jwt_bearer": ("client_id", "username", "private_key"),
    "password": ("username", "password", "security_token"),
    "oauth_password": ("client_id", "client_secret", "username", "password"),
    "session": ("session_id", "instance_url"),
}
_SECRET_FIELDS = (
    "client_id",
    "client_secret",
    "username",
    "password",
    "security_token",
    "private_key",
    "session_id",
)


class SalesforceConnection(BaseModel):
    """How to reach and authenticate to one Salesforce org."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    auth: AuthMethod = Field(
        ...,
        description=(
            "Authentication: client_credentials (OAuth client credentials flow), jwt_bearer "
            "(OAuth JWT bearer with a private key), password (SOAP login with the security "
            "token), oauth_password (OAuth username-password flow) or session (an existing "
            "session id and instance URL)."
        ),
        examples=["client_credentials", "jwt_bearer"],
    )
    domain: str = Field(
        "login",
        description=(
            "Login host prefix: login (production), test (sandbox) or the My Domain prefix "
            "(acme.my); client_credentials needs the My Domain one."
        ),
        examples=["login", "test", "acme.my"],
    )
    client_id: str | None = Field(
        None, description="Connected app consumer key (OAuth flows).", examples=["3MVG9..."]
    )
    client_secret: SecretStr | None = Field(
        None, description="Connected app consumer secret (use ${env:...})."
    )
    username: str | None = Field(
        None, description="Salesforce username (password, oauth_password, jwt_bearer)."
    )
    password: SecretStr | None = Field(None, description="The user's password (use ${env:...}).")
    security_token: SecretStr | None = Field(
        None, description="The user's security token, for the SOAP password login."
    )
    private_key: SecretStr | None = Field(
        None, description="PEM private key signing the JWT bearer assertion (use ${file:...})."
    )
    session_id: SecretStr | None = Field(
        None, description="An existing session id or access token (auth: session)."
    )
    instance_url: str | None = Field(
        None,
        description="Instance URL for auth: session (https://acme.my.salesforce.com).",
        examples=["https://acme.my.salesforce.com"],
    )
    api_version: str = Field(
        "59.0", pattern=r"^[0-9]{2,3}\.0$", description="REST API version, without the v."
    )
    timeout_s: float = Field(30.0, gt=0, le=600, description="Timeout of each HTTP request.")
    base_url: str | None = Field(
        None,
        description=(
            "Send every request to this base URL instead of Salesforce's hosts, keeping path "
            "and query: local fakes, proxies."
        ),
        examples=["http://127.0.0.1:8765"],
    )

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^/?#]+$", value.rstrip("/")):
            raise ValueError("base_url must be scheme://host[:port] with no path")
        return value.rstrip("/")

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,99}$", value):
            raise ValueError("domain must be a host prefix such as login, test or acme.my")
        return value

    @model_validator(mode="after")
    def _fields_for_auth(self) -> SalesforceConnection:
        needed = _NEEDS[self.auth]
        missing = [f for f in needed if getattr(self, f) is None]
        if missing:
            raise ValueError(f"auth {self.auth} needs {', '.join(missing)}")
        extra = [f for f in _SECRET_FIELDS if f not in needed and getattr(self, f) is not None]
        if extra:
            raise ValueError(f"auth {self.auth} does not use {', '.join(extra)}")
        if self.auth == "client_credentials" and self.domain in ("login", "test"):
            raise ValueError("client_credentials needs the org's My Domain (domain: acme.my)")
        return self


class SalesforceConfig(SalesforceConnection):
    """A Salesforce source: which objects to read, and how."""

    objects: list[str] = Field(
        ["Lead", "Contact", "Account", "Opportunity"],
        min_length=1,
        description="sObjects discover() lists; read() accepts any queryable object by name.",
    )
    fields: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            "Fields to read per object; objects not listed read every non-compound field "
            "from describe. Id and SystemModstamp are always read."
        ),
        examples=[{"Lead": ["FirstName", "LastName", "Email", "Company"]}],
    )
    include_deleted: bool = Field(
        False, description="Read through queryAll so deleted records arrive (IsDeleted true)."
    )
    page_size: int = Field(
        2000,
        ge=200,
        le=2000,
        description="Records per page (Sforce-Query-Options batchSize; Salesforce may vary it).",
    )
    batch_size: int | None = Field(
        None,
        ge=1,
        description=(
            "Records per transaction, passed in by the pipeline; a batch is one result page, "
            "so when set below page_size it lowers the page size (never under 200)."
        ),
    )
    overlap_s: float = Field(
        300.0,
        ge=0,
        le=86400,
        description=(
            "Incremental reads re-query this many seconds before the watermark, so records "
            "committed late or stamped by a clock behind ours are not missed; records already "
            "read in the window are skipped by id and version."
        ),
    )
    start_date: datetime | None = Field(
        None, description="Without a cursor, read only records modified at or after this time."
    )
    bulk_threshold: int = Field(
        50_000,
        ge=0,
        description=(
            "Without a cursor, read through a Bulk API 2.0 query job when SELECT COUNT() finds "
            "more records than this."
        ),
    )
    bulk_page_size: int = Field(
        50_000, ge=1, le=1_000_000, description="Records per Bulk API 2.0 result page."
    )
    bulk_poll_s: float = Field(
        1.0, gt=0, le=60, description="Wait before polling a Bulk API 2.0 job's state."
    )
    max_api_usage: float = Field(
        0.9,
        gt=0,
        le=1,
        description=(
            "Stop with RateLimitedError once the org's daily API usage (Sforce-Limit-Info) "
            "reaches this share."
        ),
    )
    push_fetch: bool = Field(
        False,
        description=(
            "Outbound Messages only name their records, which are then read in full by id "
            "(a message carries just the fields its definition selected)."
        ),
    )
    max_seen_ids: int = Field(
        100_000,
        ge=1000,
        description=(
            "Cap on record ids the cursor remembers inside the overlap window; past it the "
            "oldest are forgotten and may be read again (at-least-once)."
        ),
    )

    @property
    def effective_page_size(self) -> int:
        """The REST batchSize to ask for: page_size, lowered to batch_size (200 at least)."""
        if self.batch_size is None:
            return self.page_size
        return max(200, min(self.page_size, self.batch_size))

    @field_validator("objects")
    @classmethod
    def _object_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not API_NAME.match(name):
                raise ValueError(f"{name!r} is not an sObject API name")
        return value

    @field_validator("fields")
    @classmethod
    def _field_names(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for obj, names in value.items():
            for name in (obj, *names):
                if not API_NAME.match(name):
                    raise ValueError(f"{name!r} is not an API name")
        return value
