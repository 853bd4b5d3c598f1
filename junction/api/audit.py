"""Auditing from routes: admin actions written at once, automated decisions through a buffer.

``audit_action`` is for actions a person or partner asked for (replay, discard, disable a
channel, create a client): the entry is committed before the response, optionally inside the
action's own transaction (``conn=``).  ``audit_decision`` is for decisions made at volume (every
``/score-lead`` call, route choices): it queues the entry in the app's ``AuditBuffer`` and returns
at once.  Both take the actor from the authenticated principal and the request id from the
request, and pass details through the pseudonymizer.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from fastapi import Request
from sqlalchemy import Connection

from junction.api.auth import state_dir
from junction.api.context import ApiContext, ctx_of
from junction.api.policy import ANONYMOUS, Principal
from junction.core.pseudonym import Pseudonymizer
from junction.store.audit import AuditBuffer, AuditEntry, AuditLog, AuditRecord

_LOG = "audit.log"
_BUFFER = "audit.buffer"
_lock = threading.RLock()


def audit_log_of(ctx: ApiContext) -> AuditLog:
    """The hub's audit log, with its pseudonym key (made once per context)."""
    audit: AuditLog | None = ctx.extras.get(_LOG)
    if audit is None:
        with _lock:
            audit = ctx.extras.get(_LOG)
            if audit is None:
                audit = AuditLog(ctx.store, Pseudonymizer.load(state_dir(ctx.cfg)))
                ctx.extras[_LOG] = audit
    return audit


def audit_buffer_of(ctx: ApiContext, **options: Any) -> AuditBuffer:
    """The context's audit buffer, started on first use; ``close_audit`` flushes it.

    ``options`` (``interval_s``, ``max_batch``, ``max_pending``) apply when this call starts it.
    """
    buffer: AuditBuffer | None = ctx.extras.get(_BUFFER)
    if buffer is None:
        with _lock:
            buffer = ctx.extras.get(_BUFFER)
            if buffer is None:
                buffer = AuditBuffer(audit_log_of(ctx), **options)
                ctx.extras[_BUFFER] = buffer
    return buffer


async def close_audit(ctx: ApiContext) -> None:
    """Flush and stop the context's audit buffer, if one was started (on app shutdown)."""
    buffer: AuditBuffer | None = ctx.extras.pop(_BUFFER, None)
    if buffer is not None:
        await buffer.aclose()


def actor_of(request: Request) -> str:
    """The authenticated client's id (``anonymous`` on public routes)."""
    principal: Principal = getattr(request.state, "principal", ANONYMOUS)
    return principal.client_id


def request_id_of(request: Request) -> str | None:
    """The request id set by the middleware."""
    rid: str | None = getattr(request.state, "request_id", None)
    return rid


def audit_action(
    request: Request,
    action: str,
    target: str,
    detail: Mapping[str, Any] | None = None,
    *,
    conn: Connection | None = None,
    actor: str | None = None,
) -> AuditRecord:
    """Record an admin action now (blocking: call it from a sync route, a worker thread, or the
    store function that makes the change, through ``conn``).

    With ``conn`` the entry joins the caller's transaction, so the action and its audit entry
    commit or roll back together.
    """
    audit = audit_log_of(ctx_of(request))
    entry = AuditEntry(
        actor if actor is not None else actor_of(request),
        action,
        target,
        request_id_of(request),
        dict(detail or {}),
    )
    if conn is not None:
        return audit.append_in(conn, [entry])[0]
    return audit.append_many([entry])[0]


def audit_decision(
    request: Request,
    action: str,
    target: str,
    detail: Mapping[str, Any] | None = None,
    *,
    actor: str | None = None,
) -> None:
    """Queue an automated decision (score, route) for the next batched write; never blocks."""
    audit_buffer_of(ctx_of(request)).add(
        AuditEntry(
            actor if actor is not None else actor_of(request),
            action,
            target,
            request_id_of(request),
            dict(detail or {}),
        )
    )
