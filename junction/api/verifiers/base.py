"""What every inbound-webhook verifier shares: the request it sees, its answer, its error.

A verifier checks, on the raw body and before anything parses it, that a request really comes from
the configured source, and names the sender's delivery id (the durable dedupe key).  It never
touches the store and never parses the payload for the pipeline; it only says yes (``Verified``)
or no (``SignatureError``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from junction.core.errors import AuthError


@dataclass(frozen=True)
class SignedRequest:
    """An inbound request as its verifier sees it: raw bytes, lower-cased headers."""

    method: str
    url: str  # as received (HubSpot v3 and Twilio sign the URL)
    headers: Mapping[str, str]  # lower-case names; the first value of a repeated header
    body: bytes

    def header(self, name: str) -> str | None:
        """The header ``name`` (any case), or None when absent or empty."""
        value = self.headers.get(name.lower())
        return value or None


@dataclass(frozen=True)
class Verified:
    """A request that passed verification."""

    event_id: str | None  # the sender's delivery id; None → the hook dedupes by body hash
    timestamp: float | None = None  # the signed send time, when the scheme has one


@dataclass(frozen=True)
class VerifierSettings:
    """A hook's verifier configuration, secrets already resolved from the environment."""

    source: str
    secret: str | None = field(repr=False)
    tolerance_s: int = 300
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)


class SignatureError(AuthError):
    """The request is not proven to come from the source.

    ``code`` is ``stale_timestamp`` when only the replay window failed, else ``invalid_signature``;
    ``reason`` (for logs, never for the response) says what exactly failed.
    """

    code = "invalid_signature"

    def __init__(self, reason: str, *, stale: bool = False) -> None:
        """``reason`` is a short machine word: missing_header, bad_timestamp, no_match, ..."""
        super().__init__(
            "the request timestamp is outside the accepted window"
            if stale
            else "the request signature could not be verified",
            details=reason,
            code="stale_timestamp" if stale else "invalid_signature",
        )
        self.reason = reason
        self.stale = stale


class Verifier(Protocol):
    """Checks that a request was sent by its source; one instance per configured hook.

    A verifier class declares ``name`` (its registry id, used as ``hooks.<source>.verifier``) and
    ``options_model`` (a pydantic model for ``hooks.<source>.options``); the hook builds it once
    with the hook's settings.  ``verify`` must read only ``request`` and ``now``, compare digests in
    constant time, and raise ``SignatureError`` (nothing else) for a request it rejects.
    """

    name: ClassVar[str]
    options_model: ClassVar[type[BaseModel]]

    def __init__(self, settings: VerifierSettings) -> None:
        """Validate the settings; raise ``ConfigError`` when they cannot work."""
        ...

    def verify(self, request: SignedRequest, *, now: float) -> Verified:
        """Return the verified delivery, or raise ``SignatureError``."""
        ...
