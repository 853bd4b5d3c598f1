"""Configuration of the ``fake`` connector: a versioned source in a JSON-lines file."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class FakeSourceConfig(BaseModel):
    """A polled source for engine tests and demos, with fault-injection knobs (as dlt's dummy)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(
        ...,
        description="JSON-lines file of records; each has 'stream', 'id' and 'updated_at' "
        "(a sortable version string) and any other fields.",
    )
    batch_size: int = Field(100, ge=1, le=100_000, description="Records per batch (page).")
    token: SecretStr | None = Field(
        None, description="When set, reads require it to equal the file's first-line token."
    )
    fail_after_batches: int | None = Field(
        None, ge=0, description="Raise ``fail_kind`` after this many batches of a read."
    )
    latency_s: float = Field(
        0.0, ge=0, le=60, description="Seconds each batch takes to arrive (a slow remote)."
    )
    push_ack_xml: bool = Field(
        False, description="Answer stored webhook deliveries with an XML ack, as SOAP sources do."
    )
    fail_kind: Literal["unavailable", "rate_limited", "auth"] = Field(
        "unavailable", description="The error the injected fault raises."
    )
