"""Helpers for the stage worker tests: configs, raw messages in, stage topics out, processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from scoring.synthetic import generate_lead_csv_rows

JUNCTION = str(Path(sys.executable).parent / "junction")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# (message value, a phrase of the RecordError it gives) of any stage: not a stage message
NOT_STAGE_MESSAGES: list[tuple[bytes | None, str]] = [
    (None, "tombstone"),
    (b"\xff\xfe not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"pipeline": "leads"}', "has no 'record_id'"),
]


def write_config(
    root: Path,
    *,
    store: str,
    bootstrap: str,
    models: Path,
    prefix: str,
    sink: str = "http://127.0.0.1:9",
    partitions: int = 6,
    batch: int = 500,
) -> Path:
    """A hub config with one scored, routed CSV lead pipeline and a ``bus:`` on the broker."""
    (root / "inbox").mkdir(parents=True, exist_ok=True)
    cfg = root / "junction.yaml"
    cfg.write_text(
        f"""\
store: "{store}"
models_dir: {models}
bus:
  bootstrap_servers: "{bootstrap}"
  topic_prefix: {prefix}
  group_prefix: {prefix}
  partitions: {partitions}
  batch_size: {batch}
  poll_timeout_s: 0.2
pipelines:
  leads:
    source: {{connector: csv_file, path: {root}/inbox/*.csv, settle_seconds: 0}}
    mapping: csv.lead
    batch_size: {batch}
    rules:
      - {{name: has_email, expr: "lead.email != null"}}
    scoring: {{model: lead-score}}
    routes:
      - when: "score.value >= 0.5"
        to: [webhook.sales]
      - otherwise: [webhook.nurture]
channels:
  webhook.sales: {{url: "{sink}/sales", secret: "{SECRET}", timeout_s: 5}}
  webhook.nurture: {{url: "{sink}/nurture", secret: "{SECRET}", timeout_s: 5}}
delivery:
  schedule_s: [0.05, 0.1, 0.2]
""",
        encoding="utf-8",
    )
    return cfg


def raw_messages(subjects: int, versions: int, seed: int = 7) -> list[tuple[str, bytes]]:
    """Raw stage messages of pipeline ``leads``: ``versions`` versions of each of ``subjects``
    leads, interleaved (every subject's v1, then every v2, ...), as (key, value)."""
    rows = list(generate_lead_csv_rows(subjects, seed))
    out = []
    for v in range(1, versions + 1):
        for n, row in enumerate(rows):
            key = f"L{n:06d}@{v:04d}"
            value = {
                "pipeline": "leads",
                "record_id": f"leads:{key}",
                "key": key,
                "stream": "test",
                "position": v * subjects + n,
                "version": f"{v:04d}",
                "provenance": {"connector": "test", "stream": "test"},
                "record": {**row, "lead_id": f"L{n:06d}"},
            }
            out.append((f"leads:L{n:06d}", orjson.dumps(value)))
    return out


def produce(bootstrap: str, topic: str, messages: Iterable[tuple[str, bytes]]) -> int:
    """Produce (key, value) messages, in order per key; return how many were acknowledged."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20}
    )
    acked = 0

    def report(err: Any, _msg: Any) -> None:
        nonlocal acked
        assert err is None, err
        acked += 1

    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0
    return acked


def read_topic(
    bootstrap: str, topic: str, *, expect: int, timeout_s: float = 120.0
) -> list[tuple[int, int, str, dict[str, Any]]]:
    """Every message of ``topic`` from the start: (partition, offset, key, value), in
    partition order, once ``expect`` distinct record ids arrived (or the timeout)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    deadline = time.monotonic() + timeout_s
    parts: list[int] = []
    while not parts and time.monotonic() < deadline:  # the workers create it
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is not None and meta.error is None:
            parts = sorted(meta.partitions)
        if not parts:
            time.sleep(0.2)
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    out: list[tuple[int, int, str, dict[str, Any]]] = []
    ids: set[str] = set()
    try:
        while len(ids) < expect and time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.5):
                if m.error() is not None:
                    continue
                value = orjson.loads(m.value())
                ids.add(value["record_id"])
                out.append((m.partition(), m.offset(), m.key().decode(), value))
        # whatever else is already there (duplicates a crash left), for a short while
        quiet_until = time.monotonic() + 1.0
        while time.monotonic() < quiet_until:
            for m in consumer.consume(1000, 0.2):
                if m.error() is None:
                    out.append(
                        (m.partition(), m.offset(), m.key().decode(), orjson.loads(m.value()))
                    )
                    quiet_until = time.monotonic() + 1.0
    finally:
        consumer.close()
    out.sort(key=lambda r: (r[0], r[1]))
    return out


def start_worker(
    cfg: Path, role: str, *extra: str, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """A ``junction worker`` process (its output to ``log``)."""
    env = {**os.environ, "JUNCTION_EGRESS_ALLOW": "127.0.0.0/8,::1/128"}
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    return subprocess.Popen(
        [JUNCTION, "worker", str(cfg), "--role", role, *extra],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
    )
