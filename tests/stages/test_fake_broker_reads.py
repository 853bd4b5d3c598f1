"""The test broker's own reader: ``KafkaBroker.read_all`` reads a topic to its true end."""

from __future__ import annotations

import uuid

from tests.fakes.kafka_broker import KafkaBroker
from tests.stages.support import produce


def test_read_all_reads_past_the_last_batch_start(kafka_broker: KafkaBroker) -> None:
    """tansu's ListOffsets gives the last record batch's base offset plus one as the high
    watermark; a read that stopped there would miss most of a last batch bigger than one
    ``consume``, and a check on the log's contents would then pass without seeing it."""
    topic = f"readall-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, 2)
    sent = []
    for batch in range(3):  # three producer flushes: three record batches a partition
        messages = [(f"k{i % 7}", f"{batch}:{i}".encode()) for i in range(1400)]
        assert produce(kafka_broker.bootstrap, topic, messages) == len(messages)
        sent += [value for _, value in messages]
    got = kafka_broker.read_all(topic)
    assert sorted(m.value() for m in got) == sorted(sent)
    for partition in {m.partition() for m in got}:
        offsets = [m.offset() for m in got if m.partition() == partition]
        assert offsets == list(range(len(offsets)))
