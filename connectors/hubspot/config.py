"""Configuration of the HubSpot connector: the connection (shared with write-back), the read."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

ObjectName = Literal["contacts", "companies", "deals"]
ALL_OBJECTS: list[ObjectName] = ["contacts", "companies", "deals"]

# the last-modified property of each object: the search filter and the stream's cursor field
MODIFIED_PROPERTY: dict[str, str] = {
    "contacts": "lastmodifieddate",
    "companies": "hs_lastmodifieddate",
    "deals": "hs_lastmodifieddate",
}

DEFAULT_BASE_URL = "https://api.hubapi.com"


class HubSpotConnection(BaseModel):
    """Where HubSpot is and how to authenticate: a private-app token, or OAuth.

    Give ``access_token`` (a private app's token), or ``client_id`` + ``client_secret`` +
    ``refresh_token`` (a public app installed in the portal); not both.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(
        DEFAULT_BASE_URL,
        description="API root; change it only for local fakes and proxies.",
        examples=[DEFAULT_BASE_URL, "http://127.0.0.1:8099"],
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
    )
    access_token: SecretStr | None = Field(
        None, description="Private-app access token (pat-...); use ${env:...}."
    )
    client_id: str | None = Field(None, description="OAuth app client id.")
    client_secret: SecretStr | None = Field(
        None, description="OAuth app client secret; use ${env:...}."
    )
    refresh_token: SecretStr | None = Field(
        None,
        description="OAuth refresh token of the installed app; access tokens are obtained "
        "and refreshed through /oauth/v1/token.",
    )
    timeout_s: float = Field(30.0, gt=0, le=600, description="Timeout of one HTTP request.")

    @model_validator(mode="after")
    def _one_auth(self) -> HubSpotConnection:
        oauth = (self.client_id, self.client_secret, self.refresh_token)
        if self.access_token is not None:
            if any(v is not None for v in oauth):
                raise ValueError("give access_token or the OAuth fields, not both")
        elif any(v is None for v in oauth):
            raise ValueError(
                "give access_token (private app), or client_id, client_secret and refresh_token"
            )
        return self

    @property
    def uses_oauth(self) -> bool:
        """True when access tokens come from the OAuth token endpoint."""
        return self.access_token is None


class HubSpotConfig(HubSpotConnection):
    """What the HubSpot source reads: which objects, which properties, from when."""

    objects: list[ObjectName] = Field(
        default_factory=lambda: list(ALL_OBJECTS),
        min_length=1,
        description="CRM objects to read; each is a stream.",
    )
    properties: dict[ObjectName, list[str]] = Field(
        default_factory=dict,
        description="Properties to read per object; an object not listed reads all of its "
        "properties (from the properties API).",
        examples=[{"contacts": ["email", "firstname", "lastname", "lifecyclestage"]}],
    )
    page_size: int = Field(
        100, ge=1, le=100, description="Records per search page and per batch (HubSpot: 100)."
    )
    batch_size: int | None = Field(
        None,
        ge=1,
        description="Records per transaction, passed in by the pipeline; a batch is one "
        "search page, so when set below page_size it lowers the page size.",
    )
    start_date: datetime | None = Field(
        None, description="First read: only records modified at or after this instant."
    )
    overlap_s: int = Field(
        300,
        ge=0,
        le=86_400,
        description="Each incremental read looks back this far before the watermark, for "
        "records indexed late or stamped by a skewed clock; repeats are deduped by the cursor.",
    )

    @property
    def effective_page_size(self) -> int:
        """Records per search page: ``page_size``, lowered to the pipeline's ``batch_size``."""
        if self.batch_size is None:
            return self.page_size
        return min(self.page_size, self.batch_size)

    @model_validator(mode="after")
    def _unique(self) -> HubSpotConfig:
        if len(set(self.objects)) != len(self.objects):
            raise ValueError("objects must not repeat")
        for name, props in self.properties.items():
            if not props:
                raise ValueError(f"properties.{name} is empty; leave it out to read all")
        return self
