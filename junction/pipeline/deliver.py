"""The delivery worker: sends outbox rows through their channels with the one retry policy.

At-least-once with a stable idempotency key: a delivery is marked delivered only after the
receiver's 2xx, so a crash in between re-sends the same ``webhook-id`` and the receiver dedupes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from junction.core import metrics
from junction.core.errors import (
    ConfigError,
    EndpointGoneError,
    FatalError,
    JunctionError,
    RetryableError,
)
from junction.core.logging import get_logger
from junction.core.registry import Registry, default_registry
from junction.pipeline.config import DeliveryConfig, EgressConfig
from junction.pipeline.prepare import quarantine_row
from junction.pipeline.route import next_delay
from junction.store.repo import Store
from outbound.base import Delivery, OutboundChannel
from outbound.egress import EgressPolicy

log = get_logger(__name__)


@dataclass
class DeliveryStats:
    """What one worker run did."""

    delivered: int = 0
    retried: int = 0
    dead: int = 0
    disabled_channels: set[str] = field(default_factory=set)


def build_channels(
    channels: Mapping[str, Mapping[str, Any]],
    registry: Registry = default_registry,
    *,
    egress: EgressConfig | None = None,
) -> dict[str, OutboundChannel]:
    """Instantiate every configured channel from the registry (kind = the name's prefix).

    Channels that send to user-configured URLs declare ``uses_egress = True`` and receive one
    shared ``EgressPolicy``: ``egress.allow_networks`` plus ``JUNCTION_EGRESS_ALLOW``
    (``outbound.egress`` describes the contract).
    """
    policy = EgressPolicy.from_env(egress.allow_networks if egress is not None else ())
    out: dict[str, OutboundChannel] = {}
    for name, options in channels.items():
        kind = name.split(".", 1)[0]
        cls = registry.get("channels", kind)
        opts = {k: v for k, v in options.items() if k != "type"}
        try:
            config = cls.config_model.model_validate(opts)
            if getattr(cls, "uses_egress", False):
                out[name] = cls(config, egress=policy)
            else:
                out[name] = cls(config)
        except ValueError as exc:
            raise ConfigError(f"channel {name!r} is misconfigured", details=str(exc)) from exc
    return out


class DeliveryWorker:
    """Claims due deliveries, sends them concurrently and records every attempt."""

    def __init__(
        self, store: Store, channels: Mapping[str, OutboundChannel], policy: DeliveryConfig
    ) -> None:
        """Use ``store``'s outbox, the given channel instances and retry ``policy``."""
        self.store = store
        self.channels = dict(channels)
        self.policy = policy
        self.stats = DeliveryStats()

    async def run(
        self, *, stop: asyncio.Event | None = None, drain_wait_s: float | None = None
    ) -> DeliveryStats:
        """Deliver until ``stop`` is set, or (with ``drain_wait_s``) until nothing is due soon."""
        while stop is None or not stop.is_set():
            rows = await asyncio.to_thread(
                self.store.claim_deliveries, self.policy.concurrency * 4, self.policy.lease_s
            )
            if rows:
                await self._send_all(rows)
                continue
            next_due = await asyncio.to_thread(self.store.next_due_at)
            now = time.time()
            if drain_wait_s is not None and (next_due is None or next_due - now > drain_wait_s):
                break
            wait = 1.0 if next_due is None else min(1.0, max(0.01, next_due - now))
            if stop is None:
                await asyncio.sleep(wait)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=wait)
        return self.stats

    async def aclose(self) -> None:
        """Close every channel."""
        for ch in self.channels.values():
            await ch.aclose()

    async def _send_all(self, rows: list[dict[str, Any]]) -> None:
        sem = asyncio.Semaphore(self.policy.concurrency)

        async def one(row: dict[str, Any]) -> tuple[dict[str, Any], tuple[Any, ...] | None]:
            async with sem:
                return await self._send(row)

        results = await asyncio.gather(*(one(r) for r in rows))
        outcomes = [o for o, _ in results]
        quarantined = [q for _, q in results if q is not None]
        await asyncio.to_thread(self.store.record_attempts, outcomes, quarantined)
        for ch in {o["channel"] for o in outcomes if o["outcome"] == "gone"}:
            await asyncio.to_thread(
                self.store.set_endpoint, ch, disabled=True, reason="receiver answered 410 Gone"
            )
            self.stats.disabled_channels.add(ch)

    async def _send(self, row: dict[str, Any]) -> tuple[dict[str, Any], tuple[Any, ...] | None]:
        attempt_no = int(row["attempts"]) + 1
        started = time.time()
        outcome: dict[str, Any] = {
            "delivery_id": row["id"],
            "channel": row["channel"],
            "attempt_no": attempt_no,
            "started_at": started,
            "status_code": None,
            "error": None,
        }
        channel = self.channels.get(row["channel"])
        quarantined: tuple[Any, ...] | None = None
        error_type = ""
        try:
            if channel is None:
                raise FatalError(f"channel {row['channel']!r} is not configured")
            delivery = Delivery(
                delivery_id=row["id"],
                channel=row["channel"],
                event_type=row["event_type"],
                payload=row["payload"].encode(),
                attempt=attempt_no,
            )
            receipt = await channel.send(delivery)
            outcome.update(
                status_code=receipt.status_code, outcome="delivered", new_status="delivered"
            )
            outcome["next_attempt_at"] = started
            self.stats.delivered += 1
        except JunctionError as exc:
            error_type = type(exc).__name__
            outcome["status_code"] = exc.context.get("status_code")
            outcome["error"] = f"{type(exc).__name__}: {exc.user_message}"
            if isinstance(exc, EndpointGoneError):
                # the delivery waits, nothing lost, until an operator re-enables the endpoint
                outcome.update(outcome="gone", new_status="pending", next_attempt_at=started)
                self.stats.retried += 1
            elif isinstance(exc, RetryableError):
                delay = next_delay(attempt_no, self.policy, exc.retry_after)
                if delay is None:
                    outcome.update(outcome="failed", new_status="dead", next_attempt_at=started)
                    quarantined = self._dead_letter(row, exc, "retries exhausted")
                else:
                    outcome.update(
                        outcome="retry", new_status="pending", next_attempt_at=started + delay
                    )
                    self.stats.retried += 1
            else:
                outcome.update(outcome="failed", new_status="dead", next_attempt_at=started)
                quarantined = self._dead_letter(row, exc, "rejected")
        outcome["duration_ms"] = (time.time() - started) * 1000
        metrics.observe_delivery(
            row["pipeline"],
            row["channel"],
            outcome["outcome"],
            outcome["duration_ms"] / 1000,
            quarantined[4] if quarantined is not None else None,
        )
        if outcome["new_status"] == "dead":
            self.stats.dead += 1
            log.warning(
                "delivery dead-lettered",
                delivery_id=row["id"],
                channel=row["channel"],
                error=error_type,
                attempts=attempt_no,
            )
        return outcome, quarantined

    def _dead_letter(self, row: dict[str, Any], exc: JunctionError, why: str) -> tuple[Any, ...]:
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
