"""Salesforce Outbound Messages: authenticated by organization id (they carry no signature).

Salesforce signs nothing in an Outbound Message; what proves the sender is TLS to our host, the
source address (Salesforce's published ranges, enforced in front of the hub) and the
``OrganizationId`` in the body, which must be the configured org's.  Ids are compared on their
15-character, case-sensitive prefix, so the 15- and 18-character forms of one id match and ids
differing only in case do not.  An ``ActionId`` allow-list optionally pins the workflow rules.

The body is read with the hardened XML parser (no DTD, no entities); a body that cannot be read
is refused like a wrong org.  Dedupe is per notification (``Notification/Id``) in the parser,
so the hook-level event id is None.
"""

from __future__ import annotations

import hmac
import re
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.salesforce.outbound_message import notifications_element, text_of
from junction.api.verifiers.base import SignatureError, SignedRequest, Verified, VerifierSettings
from junction.core.errors import ParseError

_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")


def _id15(value: str) -> str | None:
    value = value.strip()
    return value[:15] if _ID.match(value) else None


class SalesforceOutboundOptions(BaseModel):
    """``hooks.<source>.options`` for the ``salesforce_outbound`` verifier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    organization_id: str = Field(
        ...,
        description="The sending org's id (15 or 18 characters, as shown in Company Information).",
        examples=["00D5g000004ABCDEAA"],
    )
    action_ids: list[str] = Field(
        default_factory=list,
        description="Outbound message (workflow action) ids to accept; empty accepts any.",
    )

    @field_validator("organization_id")
    @classmethod
    def _org_id(cls, value: str) -> str:
        if _id15(value) is None:
            raise ValueError("organization_id must be a 15- or 18-character Salesforce id")
        return value.strip()

    @field_validator("action_ids")
    @classmethod
    def _action_ids(cls, value: list[str]) -> list[str]:
        if any(_id15(v) is None for v in value):
            raise ValueError("action_ids must be 15- or 18-character Salesforce ids")
        return [v.strip() for v in value]


class SalesforceOutboundVerifier:
    """Accepts an Outbound Message whose OrganizationId (and ActionId) are the configured ones."""

    name: ClassVar[str] = "salesforce_outbound"
    options_model: ClassVar[type[BaseModel]] = SalesforceOutboundOptions

    def __init__(self, settings: VerifierSettings) -> None:
        """Read the org id and the optional action allow-list (no secret is used)."""
        options = SalesforceOutboundOptions.model_validate(dict(settings.options))
        self._org = (_id15(options.organization_id) or "").encode()
        self._actions = [(_id15(a) or "").encode() for a in options.action_ids]

    def verify(self, request: SignedRequest, *, now: float) -> Verified:
        """Check the body's OrganizationId (and ActionId); there is no delivery-level id."""
        try:
            notifications = notifications_element(request.body)
        except ParseError:
            raise SignatureError("unreadable_body") from None
        org = _id15(text_of(notifications, "OrganizationId") or "")
        if org is None:
            raise SignatureError("missing_organization_id")
        if not hmac.compare_digest(org.encode(), self._org):
            raise SignatureError("organization_mismatch")
        if self._actions:
            action = _id15(text_of(notifications, "ActionId") or "")
            given = (action or "").encode()
            matched = False
            for allowed in self._actions:
                matched |= hmac.compare_digest(given, allowed)
            if action is None or not matched:
                raise SignatureError("action_not_allowed")
        return Verified(event_id=None)
