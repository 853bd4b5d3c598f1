"""kill -9 of the delivery worker after the receiver's 2xx, before the outcome is recorded
(RELIABILITY.md case 1): the restarted worker re-sends the same webhook-id, the receiver dedupes
it, and there is one logical delivery."""

from __future__ import annotations

from pathlib import Path

from junction.store.repo import Store
from outbound.webhook.config import generate_secret
from outbound.webhook.sink import WebhookSink, read_sink_file
from tests.integration.delivery_support import deliver_child, enqueue, kill_at_recording
from tests.integration.helpers import rows_of


def test_kill_after_2xx_before_recording_resends_the_same_id(
    tmp_path: Path, store_url: str
) -> None:
    secret = generate_secret()
    journal = tmp_path / "sink.jsonl"
    store = Store.open(store_url)
    try:
        enqueue(store, "webhook.crash", ["lead-42"])
    finally:
        store.close()
    marker = tmp_path / "recording"
    with WebhookSink(secret, journal) as sink:

        def received() -> None:
            # the receiver has the delivery (fsync'ed before its 2xx); the store does not
            assert [e["webhook_id"] for e in read_sink_file(journal)] == ["lead-42"]

        kill_at_recording(
            deliver_child(store_url, sink.url, secret, "hang", marker), marker, received
        )
        assert rows_of(store_url, "SELECT status, attempts FROM deliveries") == [("pending", 0)]
        assert rows_of(store_url, "SELECT count(*) FROM attempts") == [(0,)]

        again = deliver_child(store_url, sink.url, secret, "normal", tmp_path / "unused")
        assert again.wait(timeout=60) == 0, again.stderr.read().decode() if again.stderr else ""
        stats = sink.stats()
    # the same webhook-id arrived twice, verified both times; the receiver kept it once
    assert stats["verified"] == 2
    assert stats["unique"] == 1
    assert stats["duplicates"] == 1
    assert [e["webhook_id"] for e in read_sink_file(journal)] == ["lead-42"]
    # one logical delivery; the attempt the killed worker never recorded is the re-send's
    assert rows_of(store_url, "SELECT status, attempts FROM deliveries") == [("delivered", 1)]
    assert rows_of(store_url, "SELECT attempt_no, outcome FROM attempts") == [(1, "delivered")]
