"""Routes: the right to erasure (``POST /subjects/erase``), for admins only.

The body names the person (email and/or phone); the answer names them only by the subject's
keyed pseudonym, with counts of what was removed.  The audit entry (``subject.erase``) is
written in the erasure's own transaction.  See ``junction.store.erasure``.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from junction.api.audit import actor_of, audit_log_of, request_id_of
from junction.api.context import ApiContext, ctx_of
from junction.api.policy import ADMIN, Principal
from junction.api.problems import ApiProblem
from junction.api.schemas import problem
from junction.core.errors import InternalError
from junction.core.pseudonym import Pseudonymizer
from junction.pipeline.erasure_hook import tombstone_hook
from junction.store.crypto_rows import enable_privacy
from junction.store.erasure import erase
from junction.store.suppressions import SuppressionList

router = APIRouter(tags=["subjects"])
MAX_ADDRESS = 320  # the longest email address RFC 5321 allows
_PRIVACY = "privacy.enabled"
_lock = threading.Lock()


class EraseRequest(BaseModel):
    """The person to erase: at least one email address or phone number."""

    model_config = ConfigDict(extra="forbid")

    emails: list[str] = Field(
        default_factory=list, max_length=20, description="The person's email addresses."
    )
    phones: list[str] = Field(
        default_factory=list, max_length=20, description="The person's phone numbers."
    )

    @field_validator("emails", "phones")
    @classmethod
    def _printable(cls, values: list[str]) -> list[str]:
        out = []
        for v in values:
            v = v.strip()
            if not v or len(v) > MAX_ADDRESS or not v.isprintable():
                raise ValueError("each address must be printable text of at most 320 characters")
            out.append(v)
        return out


class ErasureOut(BaseModel):
    """What the erasure removed; the person appears only as subject pseudonyms."""

    subjects: list[str] = Field(..., description="The erased subjects' keyed pseudonyms.")
    records: int
    scores: int
    deliveries: int
    attempts: int
    quarantine: int
    relay: int = Field(..., description="Stage relay rows removed or emptied.")
    keys_destroyed: int
    suppressed: int = Field(..., description="Suppression entries added.")
    tombstones: int = Field(..., description="Kafka tombstones produced.")
    audit_id: int | None


def _privacy_on(ctx: ApiContext) -> None:
    """Turn the store's encryption on as the privacy section says (once per context)."""
    privacy = ctx.cfg.privacy
    if privacy is None or not privacy.encrypt or ctx.extras.get(_PRIVACY):
        return
    with _lock:
        if not ctx.extras.get(_PRIVACY):
            enable_privacy(ctx.store, kek=privacy.kek, key_cache=privacy.key_cache)
            ctx.extras[_PRIVACY] = True


@router.post(
    "/subjects/erase",
    response_model=ErasureOut,
    responses={422: problem("No person named, or the store's encryption at rest is off.")},
)
def erase_subject(
    request: Request,
    body: EraseRequest,
    _: Annotated[Principal, Depends(ADMIN)],
) -> dict[str, Any]:
    """Erase one person everywhere: records, scores, quarantine, outbox, Kafka tombstones."""
    if not body.emails and not body.phones:
        raise ApiProblem(
            422, "Nobody named", "name an email address or a phone number", code="no_subject"
        )
    ctx = ctx_of(request)
    _privacy_on(ctx)
    audit = audit_log_of(ctx)
    pseudonyms = audit.pseudonymizer
    if not isinstance(pseudonyms, Pseudonymizer):
        raise InternalError("the pseudonym key is not loaded")
    cfg = ctx.cfg
    report = erase(
        ctx.store,
        emails=body.emails,
        phones=body.phones,
        actor=actor_of(request),
        audit=audit,
        suppressions=SuppressionList(ctx.store, pseudonyms),
        request_id=request_id_of(request),
        before_commit=tombstone_hook(cfg),
    )
    return {"subjects": report.subjects, **report.counts(), "audit_id": report.audit_id}
