"""The soak's traffic: four sources, each a thread sending at a steady rate until stopped.

Every event is one lead whose ``lead_id`` is ``<source>-<seq>-<sent at, epoch ms>``: it comes
back as the delivery's ``source_key`` at the receiver, which gives the end-to-end latency and
the exactly-once check without any lookup.  A sender retries an event (same Idempotency-Key,
same webhook-id) until the hub accepts it, so an event is "accepted" once the hub answered 2xx
(API, webhook), once the file is in the inbox (file drops), or once the broker acknowledged it
(Kafka); each sender also records the source keys the reconciliation must find.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from scoring.synthetic import CSV_HEADER, generate_lead_csv_rows

POOL = 1_000  # distinct synthetic leads; each event takes one and gets its own lead_id


def lead_pool(seed: int = 11) -> list[dict[str, str]]:
    """Clean synthetic leads (every one passes the ``has_email`` rule)."""
    return [r for r in generate_lead_csv_rows(POOL, seed, messy=False) if r.get("email")]


def event_id(source: str, seq: int) -> str:
    """``<source>-<seq>-<epoch ms now>``: the lead_id of one event."""
    return f"{source}-{seq}-{int(time.time() * 1000)}"


def sent_ms(eid: str) -> int:
    """When the event ``eid`` was first sent (epoch ms)."""
    return int(eid.rsplit("-", 1)[1])


@dataclass
class SourceStats:
    """What one sender did."""

    name: str
    accepted: list[str] = field(default_factory=list)  # event ids (lead_id)
    keys: list[str] = field(default_factory=list)  # reconciliation keys (without pipeline)
    requests: int = 0
    retries: int = 0
    rejected: int = 0  # answered 4xx that is not retryable: a bug in the soak or the hub
    last_error: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, eids: list[str], keys: list[str]) -> None:
        with self.lock:
            self.accepted.extend(eids)
            self.keys.extend(keys)


class Sender(threading.Thread):
    """Calls ``send_one`` every ``interval_s`` until stopped; ``paused`` holds it."""

    def __init__(self, stats: SourceStats, interval_s: float) -> None:
        super().__init__(name=f"soak-{stats.name}", daemon=True)
        self.stats = stats
        self.interval_s = interval_s
        self.stop_event = threading.Event()
        self.running = threading.Event()
        self.running.set()
        self.send_lock = threading.Lock()  # held while one event is being sent
        self.pool = lead_pool()
        self.seq = 0
        self.error: BaseException | None = None

    def accepted(self, status: int, answer: bytes) -> bool:
        """Whether an answer accepted the post; counts a refusal that a retry will not change."""
        if 200 <= status < 300:
            return True
        if status not in _RETRY:
            self.stats.rejected += 1
        self.stats.last_error = f"{status} {answer[:200]!r}"
        return False

    def lead(self) -> dict[str, str]:
        """The next event's lead (a pool row with a fresh lead_id)."""
        self.seq += 1
        row = dict(self.pool[self.seq % len(self.pool)])
        row["lead_id"] = event_id(self.stats.name, self.seq)
        return row

    def run(self) -> None:
        nxt = time.monotonic()
        try:
            while not self.stop_event.is_set():
                if not self.running.is_set():
                    self.stop_event.wait(0.1)
                    nxt = time.monotonic()
                    continue
                nxt += self.interval_s
                delay = nxt - time.monotonic()
                if delay > 0 and self.stop_event.wait(delay):
                    break
                if delay < -5 * self.interval_s:
                    nxt = time.monotonic()  # fell behind (an outage): do not burst to catch up
                with self.send_lock:
                    if self.running.is_set() and not self.stop_event.is_set():
                        self.send_one()
        except BaseException as exc:  # noqa: BLE001 - surfaced by the soak's report
            self.error = exc

    def send_one(self) -> None:
        raise NotImplementedError

    def pause(self) -> None:
        """Stop sending; return once the event being sent (if any) is done."""
        self.running.clear()
        with self.send_lock:
            pass

    def resume(self) -> None:
        self.running.set()

    def until_accepted(self, attempt: Callable[[], bool], give_up_at: float | None) -> bool:
        """Retry ``attempt`` (half a second apart) until it returns True."""
        while True:
            self.stats.requests += 1
            if attempt():
                return True
            self.stats.retries += 1
            if give_up_at is not None and time.monotonic() > give_up_at:
                return False
            time.sleep(0.5)


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return int(r.status), r.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except (OSError, urllib.error.URLError) as exc:
        return 0, str(exc).encode()


_RETRY = {0, 408, 409, 425, 429, 500, 502, 503, 504}


class FileDropper(Sender):
    """Writes a CSV of ``rows`` leads into the inbox atomically (hidden name, then rename)."""

    def __init__(self, stats: SourceStats, interval_s: float, inbox: Path, rows: int) -> None:
        super().__init__(stats, interval_s)
        self.inbox, self.rows = inbox, rows
        self.files = 0

    def send_one(self) -> None:
        import csv
        import io

        leads = [self.lead() for _ in range(self.rows)]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        writer.writerows([[r.get(c, "") for c in CSV_HEADER] for r in leads])
        self.files += 1
        name = f"soak-{self.files:06d}.csv"
        tmp = self.inbox / f".{name}.part"
        tmp.write_text(buf.getvalue(), encoding="utf-8")
        os.replace(tmp, self.inbox / name)
        self.stats.requests += 1
        # the file ledger holds these rows' keys: the reconciliation needs no list from us
        self.stats.add([r["lead_id"] for r in leads], [])


class ApiPoster(Sender):
    """``POST /api/v1/records/api`` with ``records`` leads and an Idempotency-Key."""

    def __init__(
        self,
        stats: SourceStats,
        interval_s: float,
        base: str,
        api_key: str,
        client_id: str,
        records: int,
    ) -> None:
        super().__init__(stats, interval_s)
        self.url = f"{base}/api/v1/records/api"
        self.api_key, self.client_id, self.records = api_key, client_id, records
        self.give_up_at: float | None = None

    def send_one(self) -> None:
        from junction.store.idempotency import derived_id

        leads = [self.lead() for _ in range(self.records)]
        key = str(uuid.uuid4())
        body = orjson.dumps({"records": leads})
        headers = {
            "Content-Type": "application/json",
            "X-API-Key": self.api_key,
            "Idempotency-Key": key,
        }

        def attempt() -> bool:
            return self.accepted(*_post(self.url, body, headers))

        if self.until_accepted(attempt, self.give_up_at):
            ev = derived_id(self.client_id, "api", key)
            self.stats.add(
                [r["lead_id"] for r in leads],
                [f"api.records:{ev}:{i}" for i in range(len(leads))],
            )


class HookPoster(Sender):
    """``POST /hooks/soak``: ``records`` leads signed per Standard Webhooks (v1, HMAC)."""

    def __init__(
        self, stats: SourceStats, interval_s: float, base: str, secret: str, records: int
    ) -> None:
        super().__init__(stats, interval_s)
        from standardwebhooks.webhooks import Webhook

        self.url = f"{base}/hooks/soak"
        self.signer = Webhook(secret)
        self.records = records
        self.give_up_at: float | None = None

    def send_one(self) -> None:
        leads = [self.lead() for _ in range(self.records)]
        msg_id = f"msg_{uuid.uuid4().hex}"
        payload = orjson.dumps({"records": leads}).decode()

        def attempt() -> bool:
            # each attempt is signed afresh (its own timestamp), under the same webhook-id
            now = datetime.now(UTC)
            headers = {
                "Content-Type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": self.signer.sign(msg_id, now, payload),
            }
            return self.accepted(*_post(self.url, payload.encode(), headers))

        if self.until_accepted(attempt, self.give_up_at):
            self.stats.add(
                [r["lead_id"] for r in leads], [f"soak:{msg_id}:{i}" for i in range(len(leads))]
            )


class KafkaSender(Sender):
    """Produces one lead per message (key = lead_id; idempotent producer, ``acks=all``)."""

    def __init__(self, stats: SourceStats, interval_s: float, bootstrap: str, topic: str) -> None:
        super().__init__(stats, interval_s)
        self.bootstrap, self.topic = bootstrap, topic
        self.producer: Any = None
        self.lock = threading.Lock()
        self.pending = 0

    def _new_producer(self) -> Any:
        from confluent_kafka import Producer

        return Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 120_000,
            }
        )

    def _on_delivery(self, err: Any, msg: Any) -> None:
        self.pending -= 1
        if err is not None:
            self.stats.last_error = str(err)
            self.stats.rejected += 1
            return
        key = msg.key().decode()
        self.stats.add([key], [f"{key}@{msg.topic()}:{msg.partition()}:{msg.offset()}"])

    def send_one(self) -> None:
        with self.lock:
            if self.producer is None:
                self.producer = self._new_producer()
            row = self.lead()
            self.pending += 1
            self.stats.requests += 1
            self.producer.produce(
                self.topic,
                key=row["lead_id"].encode(),
                value=orjson.dumps(row),
                on_delivery=self._on_delivery,
            )
            self.producer.poll(0)

    def flush(self, timeout_s: float = 60.0) -> int:
        """Wait for every delivery report; return how many are still outstanding."""
        with self.lock:
            if self.producer is None:
                return 0
            return int(self.producer.flush(timeout_s))

    def reset_producer(self) -> None:
        """Drop the producer (after a broker restart its idempotence state is gone)."""
        with self.lock:
            if self.producer is not None:
                with contextlib.suppress(Exception):
                    self.producer.flush(5)
            self.producer = None

    def run(self) -> None:
        try:
            super().run()
        finally:
            self.flush(30)
