"""The raw baseline of ``python -m bench kafka``: confluent-kafka consume + produce, no processing.

``python -m bench.kafka_raw BOOTSTRAP IN_TOPIC OUT_TOPIC GROUP COUNT SESSION_MS`` joins
``GROUP`` (with that ``session.timeout.ms``), reads ``IN_TOPIC`` from the start and produces
every message (key, value and headers unchanged) to ``OUT_TOPIC`` with the producer settings
the stage relay uses (idempotent, ``acks=all``), then flushes once it has forwarded ``COUNT``
messages and waits for SIGTERM (so the parent can read its CPU time), like a stage worker.
Exit status 0 when all were forwarded.
"""

from __future__ import annotations

import signal
import sys
import threading
import time

from confluent_kafka import Consumer, Producer

BATCH = 500


def forward(bootstrap: str, src: str, dst: str, group: str, count: int, session_ms: int) -> int:
    """Forward ``count`` messages from ``src`` to ``dst``; return how many were forwarded."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "session.timeout.ms": session_ms,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
        }
    )
    consumer.subscribe([src])
    done = 0
    deadline = time.monotonic() + 600
    try:
        while done < count and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=BATCH, timeout=0.5):
                if msg.error() is not None:
                    continue
                while True:
                    try:
                        producer.produce(
                            dst, value=msg.value(), key=msg.key(), headers=msg.headers()
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)
                done += 1
            producer.poll(0)
        producer.flush(60)
    finally:
        consumer.close()
    return done


def main(argv: list[str]) -> int:
    """Entry point: ``BOOTSTRAP IN_TOPIC OUT_TOPIC GROUP COUNT SESSION_MS``."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    bootstrap, src, dst, group, count, session_ms = argv
    done = forward(bootstrap, src, dst, group, int(count), int(session_ms))
    stop.wait(600)
    return 0 if done >= int(count) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
