"""What one delivery attempt (or gate decision) does to its outbox row: the retry policy applied.

The delivery worker turns each send's result into an *outcome*, the dict
``junction.store.outbox.record`` writes: the attempt row, the delivery's next state, whether it
counts for the endpoint's health and whether it ends the message.

| result                      | new status | attempt row | health | notes                       |
|-----------------------------|------------|-------------|--------|-----------------------------|
| 2xx (Receipt)               | delivered  | delivered   | ok     | ``remote_id`` kept          |
| DeferredError (quiet hours) | pending    | none        | -      | at retry_after, not counted |
| RetryableError, retries left| pending    | retry       | fail   | schedule ±10 %, Retry-After |
| RetryableError, exhausted   | dead       | failed      | fail   | quarantine + exhausted event|
| EndpointGoneError (410)     | pending    | gone        | fail   | the endpoint is disabled    |
| RecipientRejectedError      | dead       | failed      | -      | quarantine; suppressed      |
| other FatalError (4xx)      | dead       | failed      | fail   | quarantine + exhausted event|
| InternalError (our bug)     | dead       | failed      | -      | quarantine + exhausted event|
| gate: suppress, skip, hold  | suppressed, skipped, held | same | - | no quarantine          |
| gate: defer                 | pending    | none        | -      | at ``until``, not counted   |
| reported by the provider    | delivered  | delivered   | -      | not sent again (see below)  |

A pending delivery the provider has already reported (``remote_status`` set by its events, on a
channel with ``reported_sends``) was taken by an attempt the hub never recorded: a worker stopped
between the provider's answer and the recording.  It is recorded delivered, not sent again.

A dead delivery is quarantined so it stays replayable (``junction quarantine replay``, the API);
a recipient rejection too, because once the suppression is lifted a replay is meaningful.
"""

from __future__ import annotations

import time
from typing import Any

from junction.core.errors import (
    DeferredError,
    EndpointGoneError,
    InternalError,
    JunctionError,
    RecipientRejectedError,
    RetryableError,
)
from junction.pipeline.config import DeliveryConfig
from junction.pipeline.gates import Decision
from junction.pipeline.prepare import quarantine_row
from junction.pipeline.route import next_delay
from junction.store.repo import Row
from outbound.base import Receipt

Outcome = dict[str, Any]
DEFAULT_DEFER_S = 60.0  # a deferral that names no time
GATE_STATUS = {"suppress": "suppressed", "skip": "skipped", "hold": "held"}


def _base(row: dict[str, Any], attempt_no: int, started: float) -> Outcome:
    return {
        "delivery_id": row["id"],
        "channel": row["channel"],
        "pipeline": row["pipeline"],
        "attempt_no": attempt_no,
        "started_at": started,
        "duration_ms": 0.0,
        "status_code": None,
        "error": None,
        "next_attempt_at": started,
        "health": None,
    }


def succeeded(row: dict[str, Any], receipt: Receipt, started: float) -> Outcome:
    """The outcome of a 2xx."""
    out = _base(row, int(row["attempts"]) + 1, started)
    out.update(
        outcome="delivered",
        new_status="delivered",
        status_code=receipt.status_code,
        remote_id=receipt.remote_id,
        health="ok",
        duration_ms=(time.time() - started) * 1000,
    )
    return out


def reported(row: dict[str, Any], now: float) -> Outcome:
    """The outcome of a send the provider reported and the hub never recorded: delivered."""
    out = _base(row, int(row["attempts"]) + 1, now)
    out.update(
        outcome="delivered",
        new_status="delivered",
        error=f"reported by the provider ({str(row['remote_status'])[:32]}), not sent again",
    )
    return out


def failed(
    row: dict[str, Any], exc: JunctionError, policy: DeliveryConfig, started: float
) -> tuple[Outcome, Row | None]:
    """The outcome of a failed send (or gate), and its quarantine row when it ends the message."""
    attempt_no = int(row["attempts"]) + 1
    out = _base(row, attempt_no, started)
    out["duration_ms"] = (time.time() - started) * 1000
    out["status_code"] = exc.context.get("status_code")
    out["error"] = f"{type(exc).__name__}: {exc.user_message}"
    quarantined: Row | None = None
    if isinstance(exc, DeferredError):
        # not a failed attempt: the count stays, no attempt row, the endpoint is not to blame
        wait = exc.retry_after if exc.retry_after is not None else DEFAULT_DEFER_S
        out.update(
            outcome="deferred",
            new_status="pending",
            attempt_no=int(row["attempts"]),
            attempt=False,
            next_attempt_at=started + wait,
        )
    elif isinstance(exc, EndpointGoneError):
        # the delivery waits, nothing lost, until an operator re-enables the endpoint
        out.update(outcome="gone", new_status="pending", gone=True, health="fail")
    elif isinstance(exc, RecipientRejectedError):
        out.update(outcome="failed", new_status="dead")
        quarantined = _dead_letter(row, exc, f"recipient rejected: {exc.reason}")
    elif isinstance(exc, RetryableError):
        out["health"] = "fail"
        delay = next_delay(attempt_no, policy, exc.retry_after)
        if delay is None:
            out.update(outcome="failed", new_status="dead", exhausted=True)
            quarantined = _dead_letter(row, exc, "retries exhausted")
        else:
            out.update(outcome="retry", new_status="pending", next_attempt_at=started + delay)
    else:
        out.update(outcome="failed", new_status="dead", exhausted=True, health="fail")
        if isinstance(exc, InternalError):
            out["health"] = None  # our bug, not the endpoint's
        quarantined = _dead_letter(row, exc, "rejected")
    return out, quarantined


def gated(row: dict[str, Any], decision: Decision, now: float) -> Outcome:
    """The outcome of a gate's decision other than ``send``."""
    out = _base(row, int(row["attempts"]) + 1, now)
    out["error"] = decision.reason or None
    if decision.action == "defer":
        out.update(
            outcome="deferred",
            new_status="pending",
            attempt_no=int(row["attempts"]),
            attempt=False,
            next_attempt_at=decision.until if decision.until is not None else now + 60.0,
        )
    else:
        status = GATE_STATUS[decision.action]
        out.update(outcome=status, new_status=status)
    return out


def _dead_letter(row: dict[str, Any], exc: JunctionError, why: str) -> Row:
    return quarantine_row(
        row["pipeline"],
        "deliver",
        row["id"],
        exc,
        row["payload"].encode(),
        {"record_id": row["record_id"], "delivery_id": row["id"]},
        None,
        extra_context={"channel": row["channel"], "why": why},
    )


__all__ = ["DEFAULT_DEFER_S", "GATE_STATUS", "Outcome", "failed", "gated", "succeeded"]
