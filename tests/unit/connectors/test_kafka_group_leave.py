"""A Kafka source member never leaves its group in the middle of a join (tansu 0.6 wedges it).

On tansu 0.6 a member that leaves while its JoinGroup is pending leaves the group waiting for
a leader that never syncs: every later member's JoinGroup is answered and its SyncGroup never
is, for good (no session or rebalance timeout clears it; a fresh group id works).  The soak
(issue 11) ran into it after a broker restart: the read in progress lost its partitions, ended
while its member rejoined, and every later run of the pipeline got no partitions.  A read that
gives up joining (``join_timeout_s``) closed its member mid-join the same way.  Real broker.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from confluent_kafka import Producer

from connectors.kafka import KafkaSourceConnector
from connectors.kafka.config import KafkaConfig
from tests.fakes.kafka_broker import KafkaBroker


def _conn(broker: KafkaBroker, topic: str, group: str, **extra: Any) -> KafkaSourceConnector:
    options = {
        "bootstrap_servers": broker.bootstrap,
        "topics": [topic],
        "group_id": group,
        "idle_timeout_s": 0.5,
        "poll_timeout_s": 0.1,
        # a fresh group's first join takes about half the session on tansu (~3 s here)
        "session_timeout_ms": 6000,
        **extra,
    }
    return KafkaSourceConnector(KafkaConfig.model_validate(options))


def _produce(broker: KafkaBroker, topic: str, n: int) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(n):
        producer.produce(topic, value=json.dumps({"lead_id": f"L{i}"}).encode(), key=f"L{i}")
    assert producer.flush(15) == 0


def test_a_read_that_gives_up_joining_leaves_the_group_joinable() -> None:
    """The first read ends mid-join (``join_timeout_s`` 1 s < a ~3 s join); the next one reads.

    Before: the second read (and every one after it) got no partitions within 20 s.
    """
    with KafkaBroker() as broker:
        topic, group = f"leads.{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
        broker.create_topic(topic, 1)
        _produce(broker, topic, 5)
        first = _conn(broker, topic, group, join_timeout_s=1.0)
        try:
            assert list(first.read(topic, None)) == []  # gave up while joining
        finally:
            first.close()
        second = _conn(broker, topic, group, join_timeout_s=20.0)
        try:
            keys = [k for batch in second.read(topic, None) for k in batch.keys]
        finally:
            second.close()
        assert sorted(k.split("@")[0] for k in keys) == [f"L{i}" for i in range(5)]


_MEMBER = """
import sys
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2],
              "session.timeout.ms": 6000, "enable.auto.commit": False})
c.subscribe([sys.argv[3]])
while not c.assignment():
    c.poll(0.1)
print("assigned", flush=True)
while True:
    c.poll(0.1)
"""


def test_scheduled_reads_after_a_member_died_get_its_partitions() -> None:
    """Serve's runs after a SIGKILL: the dead member holds the partition past ``join_timeout_s``.

    Like a restarted ``junction serve`` reading on its schedule: the first read gives up while
    the group waits out the dead member's session, and its close waits for that join (the
    takeover) before leaving; the next read must get the partition.  (This order did not wedge
    tansu before either; it guards the close's wait on that path.)
    """
    import signal
    import subprocess
    import sys

    with KafkaBroker() as broker:
        topic, group = f"leads.{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
        broker.create_topic(topic, 1)
        _produce(broker, topic, 5)
        member = subprocess.Popen(
            [sys.executable, "-c", _MEMBER, broker.bootstrap, group, topic],
            stdout=subprocess.PIPE,
        )
        try:
            assert member.stdout is not None
            assert member.stdout.readline().strip() == b"assigned"
        finally:
            member.send_signal(signal.SIGKILL)
            member.wait(timeout=10)
        got: list[str] = []
        empty_reads = 0
        for _ in range(3):  # scheduled runs, each a read of its own on one connector
            conn = _conn(broker, topic, group, join_timeout_s=5.0)
            try:
                keys = [k for batch in conn.read(topic, None) for k in batch.keys]
            finally:
                conn.close()
            empty_reads += not keys
            got += keys
            if got:
                break
        assert sorted(k.split("@")[0] for k in got) == [f"L{i}" for i in range(5)]
        assert empty_reads <= 1, empty_reads
