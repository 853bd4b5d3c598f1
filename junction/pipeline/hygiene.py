"""Alert hygiene: dedupe, throttling and escalation marks in the send log, per route.

A route may ask for hygiene (``dedupe``, ``throttle``, ``digest``, ``escalate``; see
``junction.pipeline.config.Route``).  :class:`RouteTable` indexes those settings by
``(pipeline, route key)``, the pair every delivery carries (its ``pipeline`` and ``route``
columns).  :class:`AlertLog` keeps the ``send_log``:

* an **alert** row per sent alert: its key is the route's ``dedupe.key`` (a JMESPath over the
  event, default ``source_key``) scoped by pipeline and route, stored only as a keyed pseudonym;
  the same key on the same channel within ``dedupe.window_s`` is a duplicate;
* a **recipient** row per recipient of each send (the channel's ``recipients()``; a channel that
  reaches no one in particular counts as one recipient, ``*``): ``throttle.max`` rows within
  ``throttle.per_s`` and the next send waits.

Rows are written when a delivery is let through (a reservation, so concurrent sends of one
alert or to one recipient cannot both pass) and refreshed when it is delivered.  A delivery's
own rows never count against it, so its retries and replays are not duplicates of themselves.
Digests and escalations are not deduped or throttled: a digest already is the rate limit, and an
escalation must reach the next person.

The digest and escalation sweeps live in ``junction.pipeline.hygiene_sweeps``.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jmespath
import orjson
from jmespath.exceptions import JMESPathError
from sqlalchemy import Connection, delete, insert, select, text, update

from junction.core.errors import ConfigError
from junction.core.pseudonym import Pseudonymizer
from junction.pipeline.config import (
    DedupeConfig,
    DigestConfig,
    EscalationConfig,
    PipelineConfig,
    ThrottleConfig,
)
from junction.store import tables as t
from junction.store.repo import Store

ALERT = "alert"
RECIPIENT = "recipient"
WHOLE_CHANNEL = "*"  # the throttle key of a channel without recipients
_ESCALATION = re.compile(r":esc(\d+)$")
DIGEST_PREFIX = "digest:"


@dataclass(frozen=True, slots=True)
class RouteRules:
    """One route's hygiene and templates."""

    pipeline: str
    route: str
    template: str | None
    dedupe: DedupeConfig | None
    dedupe_key: Callable[[Any], Any] | None  # compiled dedupe.key
    throttle: ThrottleConfig | None
    digest: DigestConfig | None
    escalate: EscalationConfig | None

    @property
    def hygienic(self) -> bool:
        """Whether any hygiene applies to the route's deliveries."""
        return any((self.dedupe, self.throttle, self.digest, self.escalate))


class RouteTable:
    """Every route of every pipeline by ``(pipeline, route key)``."""

    def __init__(self, pipelines: Mapping[str, PipelineConfig]) -> None:
        """Index the routes of ``pipelines`` and compile their dedupe keys (ConfigError if bad)."""
        self._rules: dict[tuple[str, str], RouteRules] = {}
        for pname, p in pipelines.items():
            for i, route in enumerate(p.routes):
                key = route.key(i)
                search = None
                if route.dedupe is not None:
                    try:
                        search = jmespath.compile(route.dedupe.key).search
                    except JMESPathError as exc:
                        raise ConfigError(
                            f"pipeline {pname}: route {key}: dedupe.key is not JMESPath",
                            details=str(exc),
                        ) from exc
                self._rules[(pname, key)] = RouteRules(
                    pname,
                    key,
                    route.template,
                    route.dedupe,
                    search,
                    route.throttle,
                    route.digest,
                    route.escalate,
                )
        # route keys with hygiene anywhere: the cheap first check of the gate
        self.hygienic_keys = frozenset(r.route for r in self._rules.values() if r.hygienic)

    def get(self, pipeline: str, route: str | None) -> RouteRules | None:
        """The rules of one route, or None (no route, or a route no longer configured)."""
        if route is None:
            return None
        return self._rules.get((pipeline, route))

    def of(self, predicate: Callable[[RouteRules], bool]) -> list[RouteRules]:
        """The routes for which ``predicate`` holds."""
        return [r for r in self._rules.values() if predicate(r)]

    def template(self, pipeline: str, route: str | None, delivery_id: str) -> str | None:
        """The template a delivery asks its channel for (``Delivery.template``).

        A digest uses its route's ``digest.template``; any other delivery the route's
        ``template``; None leaves the channel's default.
        """
        rules = self.get(pipeline, route)
        if rules is None:
            return None
        if is_digest(delivery_id):
            return rules.digest.template if rules.digest is not None else None
        return rules.template


def is_digest(delivery_id: str) -> bool:
    """Whether a delivery is a digest (made by ``flush_digests``)."""
    return delivery_id.startswith(DIGEST_PREFIX)


def escalation_step(delivery_id: str) -> int:
    """0 for an alert, n for its n-th escalation (``<id>:esc<n>``)."""
    m = _ESCALATION.search(delivery_id)
    return int(m.group(1)) if m else 0


def event_of(payload: bytes | str) -> dict[str, Any]:
    """The event a delivery carries (an empty dict if it is not a JSON object)."""
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return {}
    return event if isinstance(event, dict) else {}


@dataclass(frozen=True, slots=True)
class Throttled:
    """A throttle verdict: the delivery may go at ``until`` (Unix time)."""

    until: float


class AlertLog:
    """The send log: dedupe keys and recipients' recent sends."""

    def __init__(self, store: Store, pseudonyms: Pseudonymizer) -> None:
        """Keep the log in ``store``; keys are ``pseudonyms`` of alert keys and addresses."""
        self.store = store
        self._ps = pseudonyms
        # decisions are serialized in this process; PostgreSQL adds an advisory lock per key
        self._lock = threading.Lock()

    def alert_key(self, rules: RouteRules, event: Mapping[str, Any]) -> str | None:
        """The stored (pseudonymous) dedupe key of an event, or None when it names none."""
        if rules.dedupe_key is None:
            return None
        value = rules.dedupe_key(event)
        if value is None or value in ("", [], {}):
            return None
        raw = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        return self._ps.of(ALERT, f"{rules.pipeline}\x1f{rules.route}\x1f{raw}")

    def recipient_keys(self, recipients: Sequence[tuple[str, str]] | None) -> list[str]:
        """The stored throttle keys of ``(kind, address)`` recipients (None: the whole channel)."""
        if not recipients:
            return [WHOLE_CHANNEL]
        return sorted({self._ps.of(kind, address) for kind, address in recipients})

    def check_and_reserve(
        self,
        *,
        delivery_id: str,
        channel: str,
        now: float,
        alert: tuple[str, float] | None,
        recipients: tuple[list[str], ThrottleConfig] | None,
    ) -> str | Throttled | None:
        """Dedupe and throttle one delivery; reserve its rows when it may go.

        ``alert`` is (key, window_s); ``recipients`` is (keys, throttle).  Returns ``"duplicate"``
        for a repeat of a sent alert, a :class:`Throttled` for a recipient over its limit, or
        None (the delivery may go; its rows are now in the log).
        """
        keys = ([alert[0]] if alert else []) + (recipients[0] if recipients else [])
        with self._lock, self.store.begin() as conn:
            self._lock_keys(conn, channel, keys)
            c = t.send_log.c
            if alert is not None:
                key, window = alert
                found = conn.execute(
                    select(c.id)
                    .where(
                        c.channel == channel,
                        c.key_kind == ALERT,
                        c.key == key,
                        c.at >= now - window,
                        c.delivery_id != delivery_id,
                    )
                    .limit(1)
                ).first()
                if found is not None:
                    return "duplicate"
            if recipients is not None:
                rkeys, throttle = recipients
                sends: dict[str, list[float]] = {}
                for key, at in conn.execute(
                    select(c.key, c.at).where(
                        c.channel == channel,
                        c.key_kind == RECIPIENT,
                        c.key.in_(rkeys),
                        c.at > now - throttle.per_s,
                        c.delivery_id != delivery_id,
                    )
                ):
                    sends.setdefault(key, []).append(float(at))
                # room again once enough of a recipient's sends have left the window
                frees = [
                    sorted(ats)[len(ats) - throttle.max] + throttle.per_s
                    for ats in sends.values()
                    if len(ats) >= throttle.max
                ]
                if frees:
                    return Throttled(max(frees))
            self._write(conn, delivery_id, channel, now, alert, recipients)
        return None

    def record(
        self,
        *,
        delivery_id: str,
        channel: str,
        now: float,
        alert: tuple[str, float] | None,
        recipients: tuple[list[str], ThrottleConfig] | None,
    ) -> None:
        """Note a delivered send at ``now`` (replacing its reservation)."""
        if alert is None and recipients is None:
            return
        with self.store.begin() as conn:
            self._write(conn, delivery_id, channel, now, alert, recipients)

    def _write(
        self,
        conn: Connection,
        delivery_id: str,
        channel: str,
        now: float,
        alert: tuple[str, float] | None,
        recipients: tuple[list[str], ThrottleConfig] | None,
    ) -> None:
        c = t.send_log.c
        conn.execute(delete(t.send_log).where(c.channel == channel, c.delivery_id == delivery_id))
        rows = [(ALERT, alert[0])] if alert else []
        rows += [(RECIPIENT, k) for k in recipients[0]] if recipients else []
        if rows:
            conn.execute(
                insert(t.send_log),
                [
                    {
                        "channel": channel,
                        "key_kind": kind,
                        "key": key,
                        "at": now,
                        "delivery_id": delivery_id,
                    }
                    for kind, key in rows
                ],
            )

    def _lock_keys(self, conn: Connection, channel: str, keys: Sequence[str]) -> None:
        # several worker processes on PostgreSQL: one transaction-scoped lock per key
        if self.store.dialect != "postgresql":
            return
        for key in sorted(keys):
            digest = hashlib.sha256(f"{channel}\x1f{key}".encode()).digest()
            conn.execute(
                text("SELECT pg_advisory_xact_lock(:k)"),
                {"k": int.from_bytes(digest[:8], "big", signed=True)},
            )

    def mark_escalation(self, delivery_id: str, at: float) -> None:
        """Escalate ``delivery_id`` at ``at`` unless it is acknowledged by then."""
        c = t.deliveries.c
        with self.store.begin() as conn:
            conn.execute(
                update(t.deliveries)
                .where(c.id == delivery_id, c.ack_at.is_(None))
                .values(escalate_at=at)
            )


def prune_send_log(store: Store, before: float) -> int:
    """Delete send-log rows older than ``before`` (no window reaches back that far)."""
    with store.begin() as conn:
        return int(conn.execute(delete(t.send_log).where(t.send_log.c.at < before)).rowcount)
