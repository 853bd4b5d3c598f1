"""Delivery benchmark: signed webhooks from the outbox to a local receiver, beside raw aiohttp.

Numerator: the real ``DeliveryWorker`` draining ``--deliveries`` pending rows (SQLite by default,
``--store`` for PostgreSQL) through real ``WebhookChannel`` instances (one per ``--endpoints``),
``DeliveryWorker(store, channels, policy).run(drain_wait_s=0.0)``, claims and records included.
Denominator: raw ``aiohttp`` posting the same payloads, each signed the same way (HMAC-SHA256
``webhook-*`` headers), at the same concurrency, to the same receiver, in the same run (before and
after the hub; the better raw run is the denominator, so the ratio errs low).

The receiver (``bench.deliver_receiver``) runs in its own process pinned to the first CPU; this
process is pinned to the second.  Afterwards the receiver's ids are checked: every delivery
exactly once.  Goal (issue 6): hub ≥ 0.5 x raw and ≥ 3,000 deliveries/s.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import cProfile
import hashlib
import hmac
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.procs import free_port, fresh_schema, pin_self, wait_listening

COMPANIES = ("Acme GmbH", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay Industries")


def payloads(n: int) -> list[bytes]:
    """``n`` delivery event payloads shaped like the pipeline's (about 330 bytes each)."""
    out = []
    for i in range(n):
        event = {
            "type": "lead.scored",
            "record_id": f"lead-{i:07d}",
            "pipeline": "bench",
            "entity": "lead",
            "source_key": f"csv:leads.csv:{i}",
            "record": {
                "email": f"user{i}@example.com",
                "company": COMPANIES[i % len(COMPANIES)],
                "country": "DE",
                "employees": 10 + i % 990,
                "lead_source": "web",
            },
            "score": {
                "value": round(0.5 + (i % 50) / 100, 2),
                "grade": "A",
                "top_factors": [["employees", 0.21], ["lead_source", 0.12]],
            },
        }
        out.append(orjson.dumps(event))
    return out


def _start_receiver(port: int, secret: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.deliver_receiver", str(port), "0"],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "BENCH_DELIVER_SECRET": secret},
    )
    wait_listening(proc, port, "receiver")
    return proc


async def _raw(
    base: str, phase: str, bodies: Sequence[bytes], endpoints: int, concurrency: int, key: bytes
) -> tuple[float, list[str]]:
    """Deliveries/s of plain aiohttp: sign (HMAC-SHA256), POST, read the answer."""
    ids = [f"{phase}-{i:07d}" for i in range(len(bodies))]
    work = iter(zip(ids, bodies, strict=True))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def poster() -> None:
            for n, (msg_id, body) in enumerate(work):
                ts = str(int(time.time()))
                mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
                headers = {
                    "content-type": "application/json",
                    "webhook-id": msg_id,
                    "webhook-timestamp": ts,
                    "webhook-signature": "v1," + base64.b64encode(mac).decode(),
                }
                url = f"{base}/{phase}/{n % endpoints}"
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"the receiver answered {resp.status}")

        t0 = time.perf_counter()
        await asyncio.gather(*(poster() for _ in range(concurrency)))
        seconds = time.perf_counter() - t0
    return len(bodies) / seconds, ids


async def _channel_only(
    base: str, bodies: Sequence[bytes], endpoints: int, concurrency: int, secret: str
) -> tuple[float, list[str]]:
    """Deliveries/s of ``WebhookChannel.send`` alone (no outbox, no worker): the channel's share."""
    from outbound.base import Delivery
    from outbound.egress import EgressPolicy
    from outbound.webhook import WebhookChannel, WebhookConfig

    egress = EgressPolicy(["127.0.0.0/8"])
    channels = [
        WebhookChannel(
            WebhookConfig(url=f"{base}/chan/{k}", secret=secret, max_connections=concurrency),
            egress=egress,
        )
        for k in range(endpoints)
    ]
    ids = [f"chan-{i:07d}" for i in range(len(bodies))]
    work = iter(enumerate(zip(ids, bodies, strict=True)))

    async def sender() -> None:
        for n, (msg_id, body) in work:
            await channels[n % endpoints].send(Delivery(msg_id, "webhook.x", "lead.scored", body))

    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        seconds = time.perf_counter() - t0
    finally:
        for channel in channels:
            await channel.aclose()
    return len(bodies) / seconds, ids


def _fill_outbox(
    store: Any, pipeline: str, ids: Sequence[str], bodies: Sequence[bytes], endpoints: int
) -> None:
    from junction.store import tables as t

    now = time.time()
    rows = [
        {
            "id": msg_id,
            "record_id": f"lead-{i:07d}",
            "pipeline": pipeline,
            "channel": f"webhook.bench{i % endpoints}",
            "event_type": "lead.scored",
            "payload": body.decode(),
            "status": "pending",
            "attempts": 0,
            # in id order, as the pipeline writes them
            "next_attempt_at": now - 1 + i * 1e-6,
            "created_at": now,
        }
        for i, (msg_id, body) in enumerate(zip(ids, bodies, strict=True))
    ]
    with store.begin() as conn:
        for at in range(0, len(rows), 5000):
            conn.execute(t.deliveries.insert(), rows[at : at + 5000])


async def _hub(
    store: Any,
    base: str,
    secret: str,
    endpoints: int,
    concurrency: int,
    profile: cProfile.Profile | None,
) -> tuple[float, Any]:
    from junction.pipeline.config import DeliveryConfig
    from junction.pipeline.deliver import DeliveryWorker
    from outbound.egress import EgressPolicy
    from outbound.webhook import WebhookChannel, WebhookConfig

    egress = EgressPolicy(["127.0.0.0/8"])
    channels: dict[str, Any] = {
        f"webhook.bench{k}": WebhookChannel(
            WebhookConfig(url=f"{base}/hub/{k}", secret=secret, max_connections=concurrency),
            egress=egress,
        )
        for k in range(endpoints)
    }
    policy = DeliveryConfig(concurrency=concurrency, per_endpoint_concurrency=concurrency)
    worker = DeliveryWorker(store, channels, policy)
    try:
        if profile is not None:
            profile.enable()
        t0 = time.perf_counter()
        stats = await worker.run(drain_wait_s=0.0)
        seconds = time.perf_counter() - t0
        if profile is not None:
            profile.disable()
    finally:
        await worker.aclose()
    return seconds, stats


def _receiver_ids(base: str) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(f"{base}/stats") as resp:
            return dict(await resp.json())

    return asyncio.run(go())


def _exactly_once(got: Sequence[str], expected: Sequence[str]) -> str:
    counts = Counter(got)
    missing = sum(1 for i in expected if i not in counts)
    dupes = sum(c - 1 for c in counts.values() if c > 1)
    extra = len(set(counts) - set(expected))
    verdict = "ok" if not (missing or dupes or extra) else "FAILED"
    return (
        f"{len(got):,} received, {missing} missing, {dupes} duplicates, {extra} unknown: {verdict}"
    )


def run(
    *,
    deliveries: int,
    endpoints: int,
    concurrency: int,
    store: str | None,
    use_uvloop: bool,
    profile: str | None,
    keep: bool,
    figures: dict[str, Any] | None = None,
) -> int:
    """Run the benchmark and print deliveries/s for the hub and raw aiohttp, and their ratio;
    ``figures``, when given, receives them as data."""
    from junction.store.repo import Store
    from outbound.webhook.config import generate_secret, secret_key_bytes

    def runner() -> asyncio.Runner:
        if use_uvloop:
            import uvloop

            return asyncio.Runner(loop_factory=uvloop.new_event_loop)
        return asyncio.Runner()

    def in_loop(coro: Coroutine[Any, Any, Any]) -> Any:
        with runner() as r:
            return r.run(coro)

    secret = generate_secret()
    key = secret_key_bytes(secret)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    token = uuid.uuid4().hex[:8]
    pipeline = f"bench-deliver-{token}"
    prof = cProfile.Profile() if profile else None
    bad_phases: list[str] = []
    with contextlib.ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="junction-bench-deliver-"))
        if keep:
            stack.callback(print, f"work folder kept: {work}")
        else:
            stack.callback(shutil.rmtree, work, ignore_errors=True)
        url = store or f"sqlite:///{work / 'bench.db'}"
        # a schema of its own: the worker claims every due row in its store
        outbox = Store.open(stack.enter_context(fresh_schema(url, f"bench_deliver_{token}")))
        stack.callback(outbox.close)
        receiver = _start_receiver(port, secret)
        stack.callback(receiver.wait, 10)
        stack.callback(receiver.terminate)
        pin_self(1)
        bodies = payloads(deliveries)
        hub_ids = [f"hub-{token}-{i:07d}" for i in range(deliveries)]
        _fill_outbox(outbox, pipeline, hub_ids, bodies, endpoints)
        in_loop(_raw(base, "warm", bodies[:2000], endpoints, concurrency, key))
        raw1, raw1_ids = in_loop(_raw(base, "raw1", bodies, endpoints, concurrency, key))
        chan, chan_ids = in_loop(_channel_only(base, bodies, endpoints, concurrency, secret))
        seconds, stats = in_loop(_hub(outbox, base, secret, endpoints, concurrency, prof))
        raw2, raw2_ids = in_loop(_raw(base, "raw2", bodies, endpoints, concurrency, key))
        hub_rate = deliveries / seconds
        raw_rate = max(raw1, raw2)
        counts = outbox.counts(pipeline)
        seen = _receiver_ids(base)

        print(
            f"{deliveries:,} signed webhooks (~{sum(map(len, bodies)) // len(bodies)} B), "
            f"{endpoints} endpoint(s), concurrency {concurrency}, store {url.split(':')[0]}, "
            f"loop {'uvloop' if use_uvloop else 'asyncio'}, {os.cpu_count()} CPUs"
        )
        print(f"raw aiohttp (before, after)   : {raw1:>9,.0f} / {raw2:,.0f} deliveries/s")
        print(f"WebhookChannel.send alone     : {chan:>9,.0f} deliveries/s (no outbox, no worker)")
        print(
            f"hub outbox → DeliveryWorker → WebhookChannel: {hub_rate:>9,.0f} deliveries/s "
            f"({seconds:.2f}s)"
        )
        print(f"ratio hub / best raw          : {hub_rate / raw_rate:.3f}  (goal >= 0.5)")
        print(f"goal >= 3,000 deliveries/s    : {'met' if hub_rate >= 3000 else 'NOT met'}")
        print(
            f"outbox: delivered {counts['deliveries_delivered']:,}, pending "
            f"{counts['deliveries_pending']:,}, dead {counts['deliveries_dead']:,}; worker stats "
            f"delivered {stats.delivered:,}, retried {stats.retried:,}"
        )
        phases = (("hub", hub_ids), ("chan", chan_ids), ("raw1", raw1_ids), ("raw2", raw2_ids))
        for phase, expected in phases:
            info = seen.get(phase, {"ids": [], "bad_signatures": 0})
            line = _exactly_once(info["ids"], expected)
            print(
                f"receiver {phase:<4}: {line}; bad signatures (1 in 16 checked) "
                f"{info['bad_signatures']}"
            )
            if not line.endswith(": ok") or info["bad_signatures"]:
                bad_phases.append(phase)
        if figures is not None:
            figures.update(
                deliveries=deliveries,
                raw1_rps=raw1,
                raw2_rps=raw2,
                channel_rps=chan,
                hub_rps=hub_rate,
                ratio=hub_rate / raw_rate,
                exactly_once=not bad_phases,
            )
        if prof is not None and profile:
            prof.dump_stats(profile)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
    return 1 if bad_phases else 0
