"""The outbox side of the store: fair claims, batched attempt recording and endpoint health.

``claim`` leases due deliveries *per channel*: each channel gets at most its free slots (a
``ROW_NUMBER() OVER (PARTITION BY channel ...)`` ranking, taken round-robin), so a channel with a
large backlog never crowds the others out of a claim.  On PostgreSQL the outer select locks the
chosen rows ``FOR UPDATE SKIP LOCKED``, so concurrent workers never lease the same row.

``record`` writes a batch of finished attempts in one transaction: the attempt rows, every
delivery's new state, the quarantine rows of dead ones, each endpoint's health
(``failing_since``, ``last_success_at``, ``last_failure_at``), the endpoints that health (or a
410) disables, and the events and alerts all of that raises (``junction.store.events``).

Endpoint health: a successful attempt clears ``failing_since``; every failed attempt (retry or
final failure, 4xx included, as Svix counts them) sets it when unset.  Attempts that say nothing
about the endpoint do not count: gate decisions, deferrals and a provider refusing one recipient
(``RecipientRejectedError``).  When ``now - failing_since >= disable_after_s`` the endpoint is
disabled with an ``endpoint.disabled`` event (and alert) in the same transaction.  A 410 disables
at once.  Re-enabling (``set_endpoint(..., disabled=False)``) clears ``failing_since``.

An endpoint's row is a hot spot when several workers deliver to it: every write locks it until
its transaction commits, so their recordings would queue up behind each other.  A batch of only
successes therefore writes the row only when that changes something: a failure streak to end,
or ``last_success_at`` to move by ``SUCCESS_RESOLUTION_S`` or more (it is kept to within that).
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, case, func, or_, select, update

from junction.store import tables as t
from junction.store.engine import raw_cursor
from junction.store.events import AlertPolicy, emit, is_alert

if TYPE_CHECKING:
    from junction.store.repo import Row, Store

CLAIM_COLS = (
    "id",
    "channel",
    "event_type",
    "payload",
    "attempts",
    "record_id",
    "pipeline",
    "route",
    # the provider's reported status: set when it already took a send the hub never recorded
    "remote_status",
)
ATTEMPT_COLS = (
    "delivery_id",
    "attempt_no",
    "started_at",
    "duration_ms",
    "status_code",
    "outcome",
    "error",
)
GONE_REASON = "receiver answered 410 Gone"


@dataclass(frozen=True)
class HealthPolicy:
    """When failing endpoints are disabled, and where the resulting alerts go."""

    disable_after_s: float | None = None
    alerts: AlertPolicy | None = None


def _due(now: float) -> list[Any]:
    c = t.deliveries.c
    return [
        c.status == "pending",
        c.next_attempt_at <= now,
        or_(c.lease_until.is_(None), c.lease_until < now),
    ]


def claim(
    store: Store,
    limit: int,
    lease_s: float,
    *,
    now: float | None = None,
    slots: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Lease up to ``limit`` due deliveries to enabled channels; return them.

    Args:
        store: The store.
        limit: Most rows in all.
        lease_s: How long the lease lasts (it must cover the send).
        now: The claim time (default: now).
        slots: Free slots per channel: at most that many rows of each, taken round-robin over
            channels; channels not named get none.  None: any channel, oldest due first.
    """
    now = time.time() if now is None else now
    c = t.deliveries.c
    disabled = select(t.endpoints.c.channel).where(t.endpoints.c.disabled.is_(True))
    base = [*_due(now), c.channel.not_in(disabled)]
    if slots is None:
        q = select(c.id).where(*base).order_by(c.next_attempt_at).limit(limit)
    else:
        open_ = {ch: n for ch, n in slots.items() if n > 0}
        if not open_ or limit <= 0:
            return []
        # water-filling: channels wanting little take all they want, the rest share evenly
        takes: list[tuple[str, int]] = []
        left = limit
        ordered = list(open_.items())
        random.shuffle(ordered)  # ties in random order: with more channels than room, no
        ordered.sort(key=itemgetter(1))  # channel always comes last and starves
        for i, (ch, n) in enumerate(ordered):
            if left <= 0:
                break
            take = min(n, max(1, left // (len(ordered) - i)))
            takes.append((ch, take))
            left -= take
        # one prepared statement per channel in one transaction: each is a range scan of the
        # (channel, status, next_attempt_at) index, so the cost follows what is taken, not the
        # backlog (a window function over every due row grew with it)
        return _claim_channels(store, takes, now, now + lease_s)
    if store.dialect == "postgresql":
        q = q.with_for_update(skip_locked=True)
    until = now + lease_s
    # one round trip: lease the chosen rows and read them back
    stmt = (
        update(t.deliveries)
        .where(c.id.in_(q))
        .values(lease_until=until)
        .returning(*(c[name] for name in CLAIM_COLS))
    )
    with store.begin() as conn:
        rows = [dict(r) for r in conn.execute(stmt).mappings().all()]
    for r in rows:
        r["lease_until"] = until
    # RETURNING keeps no order; ids grow with the input order, so send (and gate) in that order
    rows.sort(key=itemgetter("id"))
    return rows


_CLAIM_ONE = (
    "UPDATE deliveries SET lease_until = {until} WHERE id IN ("
    "SELECT id FROM deliveries WHERE channel = {ch} AND status = 'pending' "
    "AND next_attempt_at <= {now} AND (lease_until IS NULL OR lease_until < {now}) "
    "AND channel NOT IN (SELECT channel FROM endpoints WHERE disabled) "
    "ORDER BY next_attempt_at LIMIT {n}{lock}) "
    "RETURNING id, channel, event_type, payload, attempts, record_id, pipeline, route, "
    "remote_status"
)
_CLAIM_ONE_SQL = {
    "sqlite": _CLAIM_ONE.format(until="?1", ch="?2", now="?3", n="?4", lock=""),
    "postgresql": _CLAIM_ONE.format(
        until="%(until)s",
        ch="%(ch)s",
        now="%(now)s",
        n="%(n)s",
        lock=" FOR UPDATE SKIP LOCKED",
    ),
}


def _claim_channels(
    store: Store, takes: Sequence[tuple[str, int]], now: float, until: float
) -> list[dict[str, Any]]:
    """Claim each channel's ``n`` oldest due rows: one plain statement each, no query building
    (hot path), all in one transaction."""
    found: list[Any] = []
    with store.begin() as conn, raw_cursor(conn) as cur:
        for channel, n in takes:
            args = {"until": until, "ch": channel, "now": now, "n": n}
            params: Any = args if store.dialect == "postgresql" else tuple(args.values())
            cur.execute(_CLAIM_ONE_SQL[store.dialect], params)
            found.extend(cur.fetchall())
    found.sort(key=itemgetter(0))  # RETURNING keeps no order; ids grow with the input order
    rows = [dict(zip(CLAIM_COLS, r, strict=True)) for r in found]
    for r in rows:
        r["lease_until"] = until
    return rows


def release(store: Store, leases: Sequence[tuple[str, float]]) -> int:
    """Give back claims a worker will not send: each (id, lease_until it was claimed with).

    A row whose lease has changed since (another claim, or its outcome recorded) is left alone.
    Without this a claimed-but-dropped row waits out its whole lease before it is due again.
    Returns how many leases were released.
    """
    if not leases:
        return 0
    c = t.deliveries.c
    stmt = (
        update(t.deliveries)
        .where(
            c.id == bindparam("rid"),
            c.lease_until == bindparam("until"),
            c.status == "pending",
        )
        .values(lease_until=None)
    )
    with store.begin() as conn:
        result = conn.execute(stmt, [{"rid": rid, "until": until} for rid, until in leases])
    return int(result.rowcount or 0)


# PostgreSQL: one statement per batch (arrays unnested) instead of one pipelined row each
_PG_UPDATE = (
    "UPDATE deliveries AS d SET status = v.status, attempts = v.attempts, "
    "next_attempt_at = v.next_at, last_status = v.last_status, last_error = v.last_error, "
    "delivered_at = v.delivered_at, remote_id = COALESCE(v.remote_id, d.remote_id), "
    "lease_until = NULL "
    "FROM unnest(%s::text[], %s::int[], %s::float8[], %s::int[], %s::text[], %s::float8[], "
    "%s::text[], %s::text[]) AS v(status, attempts, next_at, last_status, last_error, "
    "delivered_at, remote_id, id) WHERE d.id = v.id"
)
_PG_ATTEMPTS = (
    "INSERT INTO attempts (delivery_id, attempt_no, started_at, duration_ms, status_code, "
    "outcome, error) SELECT * FROM unnest(%s::text[], %s::int[], %s::float8[], %s::float8[], "
    "%s::int[], %s::text[], %s::text[])"
)
_SQLITE_UPDATE = (
    "UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?, last_status = ?, "
    "last_error = ?, delivered_at = ?, remote_id = COALESCE(?, remote_id), lease_until = NULL "
    "WHERE id = ?"
)
SUCCESS_RESOLUTION_S = 1.0  # last_success_at is kept to within this (see the module docstring)
# a batch of only successes: a no-op (and no row lock) unless a streak ends or the mark moves
_HEALTH_OK = (
    "UPDATE endpoints SET "
    "last_success_at = {max}(COALESCE(last_success_at, 0), {ok}), "
    "failing_since = CASE WHEN failing_since > {ok} THEN failing_since ELSE NULL END "
    "WHERE channel = {ch} AND (failing_since IS NOT NULL OR last_success_at IS NULL "
    "OR last_success_at < {ok} - {res})"
)
_HEALTH_OK_SQL = {
    "sqlite": _HEALTH_OK.format(ok="?1", ch="?2", res="?3", max="MAX"),
    "postgresql": _HEALTH_OK.format(
        ok="%(ok)s::float8", ch="%(ch)s", res="%(res)s::float8", max="GREATEST"
    ),
}
_ENDPOINT_EXISTS_SQL = {
    "sqlite": "SELECT 1 FROM endpoints WHERE channel = ?",
    "postgresql": "SELECT 1 FROM endpoints WHERE channel = %s",
}
# one endpoint's health from one batch: ok = its last success, fl = its last failure, ff = its
# first failure, fs = its first failure after the last success (the new streak, if any)
_HEALTH = (
    "UPDATE endpoints SET "
    "last_success_at = CASE WHEN {ok} IS NULL THEN last_success_at "
    "ELSE {max}(COALESCE(last_success_at, 0), {ok}) END, "
    "last_failure_at = CASE WHEN {fl} IS NULL THEN last_failure_at "
    "ELSE {max}(COALESCE(last_failure_at, 0), {fl}) END, "
    "failing_since = CASE WHEN {ok} IS NULL THEN COALESCE(failing_since, {ff}) "
    # an older success recorded late must not clear a newer failure streak
    "WHEN failing_since > {ok} THEN failing_since ELSE {fs} END "
    "WHERE channel = {ch}"
)
_HEALTH_SQL = {
    "sqlite": _HEALTH.format(ok="?1", fl="?2", ff="?3", fs="?4", ch="?5", max="MAX"),
    "postgresql": _HEALTH.format(
        ok="%(ok)s::float8",
        fl="%(fl)s::float8",
        ff="%(ff)s::float8",
        fs="%(fs)s::float8",
        ch="%(ch)s",
        max="GREATEST",
    ),
}


def _not_yet_recorded(
    store: Store, outcomes: Sequence[Mapping[str, Any]], quarantined: Sequence[Row]
) -> tuple[list[Mapping[str, Any]], list[Row]]:
    """The outcomes (and their quarantine rows) whose attempt row is not stored yet."""
    from junction.store.repo import QUARANTINE_COLS

    ids = sorted({o["delivery_id"] for o in outcomes if o.get("attempt", True)})
    if not ids:
        return list(outcomes), list(quarantined)
    a = t.attempts.c
    with store.begin() as conn:
        stored = {
            (d, n)
            for d, n in conn.execute(
                select(a.delivery_id, a.attempt_no).where(a.delivery_id.in_(ids))
            ).all()
        }
    keep = [
        o
        for o in outcomes
        if not (o.get("attempt", True) and (o["delivery_id"], o["attempt_no"]) in stored)
    ]
    dropped = {o["delivery_id"] for o in outcomes} - {o["delivery_id"] for o in keep}
    at = QUARANTINE_COLS.index("record_key")
    return keep, [q for q in quarantined if q[at] not in dropped]


def record(
    store: Store,
    outcomes: Sequence[Mapping[str, Any]],
    quarantined: Sequence[Row],
    *,
    health: HealthPolicy | None = None,
    now: float | None = None,
    recheck: bool = False,
) -> set[str]:
    """Write finished attempts and their effects in ONE transaction; return disabled channels.

    ``recheck``: this batch was tried before and the try failed, perhaps at the commit whose
    answer never came (the server restarted) although the commit took place; outcomes whose
    attempt row is stored already are left out, so a retried recording adds no second attempt.

    Each outcome has ``delivery_id``, ``channel``, ``attempt_no`` (the delivery's attempt count
    after it), ``started_at``, ``duration_ms``, ``status_code``, ``outcome`` (the attempt row's),
    ``error``, ``new_status``, ``next_attempt_at``, and optionally ``remote_id``,
    ``attempt`` (False: no attempt row, e.g. a deferral), ``health`` ("ok", "fail" or None),
    ``gone`` (a 410), ``exhausted`` (retries ran out), ``pipeline``.
    """
    from junction.store.repo import QUARANTINE_COLS

    now = time.time() if now is None else now
    policy = health or HealthPolicy()
    if recheck:
        outcomes, quarantined = _not_yet_recorded(store, outcomes, quarantined)
    updates = [
        (
            o["new_status"],
            o["attempt_no"],
            o["next_attempt_at"],
            o["status_code"],
            o["error"],
            o["started_at"] + o["duration_ms"] / 1000 if o["new_status"] == "delivered" else None,
            o.get("remote_id"),
            o["delivery_id"],
        )
        for o in outcomes
    ]
    attempts = [tuple(o[k] for k in ATTEMPT_COLS) for o in outcomes if o.get("attempt", True)]
    with store.begin() as conn, raw_cursor(conn) as cur:
        if store.dialect == "postgresql":
            if attempts:
                cur.execute(_PG_ATTEMPTS, [list(col) for col in zip(*attempts, strict=True)])
            if updates:
                cur.execute(_PG_UPDATE, [list(col) for col in zip(*updates, strict=True)])
        else:
            store.insert_many(conn, t.attempts, ATTEMPT_COLS, attempts)
            if updates:
                cur.executemany(_SQLITE_UPDATE, updates)
        store.insert_many(conn, t.quarantine, QUARANTINE_COLS, quarantined)
        for o in outcomes:
            if o.get("exhausted"):
                emit(
                    conn,
                    "message.attempt.exhausted",
                    o["delivery_id"],
                    {
                        "channel": o["channel"],
                        "pipeline": o.get("pipeline"),
                        "attempts": o["attempt_no"],
                        "last_status": o["status_code"],
                        "error": o["error"],
                    },
                    alerts=policy.alerts,
                    from_alert=is_alert(o["delivery_id"]),
                    alert_key=o["channel"],  # one alert per failing channel per quiet_s
                    now=now,
                )
        return _health(store, conn, cur, outcomes, policy, now)


def _health(
    store: Store,
    conn: Connection,
    cur: Any,
    outcomes: Sequence[Mapping[str, Any]],
    policy: HealthPolicy,
    now: float,
) -> set[str]:
    by_channel: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    gone: set[str] = set()
    for o in outcomes:
        if o.get("gone"):
            gone.add(o["channel"])
        if o.get("health") in ("ok", "fail"):
            finished = o["started_at"] + o["duration_ms"] / 1000
            by_channel[o["channel"]].append((finished, o["health"] == "ok"))
    suspect = set(gone)  # channels that may have to be disabled now
    pg = store.dialect == "postgresql"
    sql = _HEALTH_SQL["postgresql" if pg else "sqlite"]
    for ch, marks in by_channel.items():
        marks.sort()
        ok = [at for at, good in marks if good]
        bad = [at for at, good in marks if not good]
        last_ok = ok[-1] if ok else None
        if not bad and last_ok is not None:
            only_ok = {"ok": last_ok, "ch": ch, "res": SUCCESS_RESOLUTION_S}
            cur.execute(
                _HEALTH_OK_SQL["postgresql" if pg else "sqlite"],
                only_ok if pg else tuple(only_ok.values()),
            )
            if cur.rowcount == 1:
                continue
            cur.execute(_ENDPOINT_EXISTS_SQL["postgresql" if pg else "sqlite"], (ch,))
            if cur.fetchone() is not None:
                continue  # nothing to change: the row stays unlocked for the other workers
        later = [at for at in bad if last_ok is None or at > last_ok]
        args = {
            "ok": last_ok,
            "fl": bad[-1] if bad else None,
            "ff": bad[0] if bad else None,
            "fs": later[0] if later else None,
            "ch": ch,
        }
        params: Any = args if pg else tuple(args.values())
        cur.execute(sql, params)
        if cur.rowcount == 0:  # the endpoint's first outcome: make its row, then update it
            ignore = store._insert_ignore(t.endpoints, ("channel", "disabled", "updated_at"))
            cur.execute(ignore, (ch, False, now))
            cur.execute(sql, params)
        if later:
            suspect.add(ch)
    if not suspect:
        return set()
    e = t.endpoints.c
    if gone - set(by_channel):
        ignore = store._insert_ignore(t.endpoints, ("channel", "disabled", "updated_at"))
        cur.executemany(ignore, [(ch, False, now) for ch in sorted(gone - set(by_channel))])
    rows = conn.execute(
        select(e.channel, e.disabled, e.failing_since).where(e.channel.in_(sorted(suspect)))
    ).all()
    disabled: set[str] = set()
    for ch, is_disabled, failing_since in rows:
        if is_disabled:
            continue
        if ch in gone:
            why, detail = GONE_REASON, {"reason": GONE_REASON, "status_code": 410}
        elif (
            policy.disable_after_s is not None
            and failing_since is not None
            and now - failing_since >= policy.disable_after_s
        ):
            why = f"failing without a success for {now - failing_since:.0f} s"
            detail = {"reason": why, "failing_since": failing_since}
        else:
            continue
        _disable(conn, ch, why, now)
        emit(conn, "endpoint.disabled", ch, {**detail, "auto": True}, alerts=policy.alerts, now=now)
        disabled.add(ch)
    return disabled


def _disable(conn: Connection, channel: str, reason: str, now: float) -> None:
    conn.execute(
        update(t.endpoints)
        .where(t.endpoints.c.channel == channel)
        .values(disabled=True, reason=reason, updated_at=now)
    )


def set_endpoint(
    store: Store,
    channel: str,
    *,
    disabled: bool,
    reason: str | None = None,
    audit: Callable[[Connection], None] | None = None,
) -> None:
    """Disable or enable an endpoint by hand, with its ``endpoint.*`` event.

    Enabling clears ``failing_since``: the endpoint gets a fresh ``disable_after_s`` window.
    ``audit`` writes the action's audit entry in the same transaction (both or neither).
    """
    now = time.time()
    e = t.endpoints.c
    with store.begin() as conn:
        values: dict[str, Any] = {"disabled": disabled, "reason": reason, "updated_at": now}
        if not disabled:
            values["failing_since"] = None
        n = conn.execute(update(t.endpoints).where(e.channel == channel).values(**values)).rowcount
        if n == 0:
            conn.execute(t.endpoints.insert().values(channel=channel, **values))
        kind = "endpoint.disabled" if disabled else "endpoint.enabled"
        emit(conn, kind, channel, {"reason": reason, "auto": False}, now=now)
        if audit is not None:
            audit(conn)


def next_due_at(store: Store, channels: Collection[str] | None = None) -> float | None:
    """When the earliest pending delivery to an enabled channel is due (or its lease ends).

    ``channels`` narrows it to those channels (a worker's configured ones).
    """
    c = t.deliveries.c
    disabled = select(t.endpoints.c.channel).where(t.endpoints.c.disabled.is_(True))
    due = case((c.lease_until > c.next_attempt_at, c.lease_until), else_=c.next_attempt_at)
    q = select(func.min(due)).where(c.status == "pending", c.channel.not_in(disabled))
    if channels is not None:
        q = q.where(c.channel.in_(list(channels)))
    with store.begin() as conn:
        v = conn.execute(q).scalar()
    return None if v is None else float(v)


def pending_count(store: Store) -> int:
    """Pending deliveries, due or not (a range scan of the status index)."""
    c = t.deliveries.c
    with store.begin() as conn:
        return int(conn.execute(select(func.count()).where(c.status == "pending")).scalar() or 0)


def endpoint_health(store: Store) -> dict[str, dict[str, Any]]:
    """``{channel: {disabled, reason, failing_since, last_success_at, last_failure_at}}``."""
    with store.begin() as conn:
        rows = conn.execute(select(t.endpoints)).mappings().all()
    keys = ("disabled", "reason", "failing_since", "last_success_at", "last_failure_at")
    return {r["channel"]: {k: r[k] for k in keys} for r in rows}


__all__ = [
    "ATTEMPT_COLS",
    "CLAIM_COLS",
    "GONE_REASON",
    "HealthPolicy",
    "claim",
    "endpoint_health",
    "next_due_at",
    "pending_count",
    "record",
    "set_endpoint",
]
