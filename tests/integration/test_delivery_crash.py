"""kill -9 of the delivery worker after the receiver's 2xx, before the outcome is recorded
(RELIABILITY.md case 1): the restarted worker re-sends the same webhook-id, the receiver dedupes
it, and there is one logical delivery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from junction.store.repo import Store
from outbound.webhook.config import generate_secret
from outbound.webhook.sink import WebhookSink, read_sink_file
from tests.integration.delivery_support import enqueue
from tests.integration.helpers import rows_of

ROOT = Path(__file__).resolve().parents[2]


def _child(
    store_url: str, url: str, secret: str, mode: str, marker: Path, *channels: Path
) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.deliver_child",
            store_url,
            url,
            secret,
            mode,
            str(marker),
            *map(str, channels),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"worker exited ({proc.returncode}) before the kill point:\n{err[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail("the worker never reached the recording step")
        time.sleep(0.02)


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
        proc = _child(store_url, sink.url, secret, "hang", marker)
        try:
            _wait_for(marker, proc)
            # the receiver has the delivery (fsync'ed before its 2xx); the store does not
            assert [e["webhook_id"] for e in read_sink_file(journal)] == ["lead-42"]
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert rows_of(store_url, "SELECT status, attempts FROM deliveries") == [("pending", 0)]
        assert rows_of(store_url, "SELECT count(*) FROM attempts") == [(0,)]

        again = _child(store_url, sink.url, secret, "normal", tmp_path / "unused")
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
