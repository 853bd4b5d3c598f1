"""Issue 8's scale-out proof: 100,000 records through three stage worker processes.

Three ``junction worker --role normalize,score`` processes share the raw topic's partitions
(one consumer group) and one PostgreSQL store.  Mid-stream one is SIGKILLed and a replacement
started, and later a fourth consumer joins.  Afterwards:

- the output set equals the input set: every record id is on the scored topic or (for the
  invalid rows of the messy export) in quarantine, never both, never neither;
- no effect is duplicated: one record row and one score row per record, one relay row per
  output message (the store's unique keys would refuse a second, so the counts must match the
  input exactly), and the scored topic repeats at most the batches the killed worker had in
  flight (published but not yet marked);
- per-key order: each lead's four versions leave in the order they came in.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from sqlalchemy import create_engine, text

from junction.store.repo import Store
from tests.fakes.kafka_broker import KafkaBroker
from tests.integration.helpers import UNPUBLISHED_RELAY
from tests.stages.support import produce, raw_messages, read_topic, start_worker, write_config

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(600)]

SUBJECTS = 25_000
VERSIONS = 4
TOTAL = SUBJECTS * VERSIONS
BATCH = 500
PARTITIONS = 6


def _count(url: str, sql: str) -> int:
    eng = create_engine(url)
    try:
        with eng.connect() as conn:
            return int(conn.execute(text(sql)).scalar() or 0)
    finally:
        eng.dispose()


def _done(url: str) -> int:
    return _count(url, "SELECT count(*) FROM scores") + _count(
        url, "SELECT count(*) FROM quarantine"
    )


def _wait_for(url: str, at_least: int, procs: list, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    n = _done(url)
    while n < at_least and time.monotonic() < deadline:
        dead = [p for p in procs if p.poll() not in (None, -signal.SIGKILL)]
        assert not dead, f"a worker exited with {dead[0].returncode}"
        time.sleep(0.25)
        n = _done(url)
    return n


def test_100k_records_three_workers_kill_and_join(
    tmp_path: Path, pg_url: str, models_dir: Path, kafka_broker: KafkaBroker
) -> None:
    prefix = f"so{tmp_path.name[-6:].replace('_', '')}"
    cfg = write_config(
        tmp_path,
        store=pg_url,
        bootstrap=kafka_broker.bootstrap,
        models=models_dir,
        prefix=prefix,
        partitions=PARTITIONS,
        batch=BATCH,
    )
    Store.open(pg_url).close()  # migrate once, before the workers start
    raw_topic = f"{prefix}.raw.lead.v1"
    kafka_broker.create_topic(raw_topic, PARTITIONS)
    messages = raw_messages(SUBJECTS, VERSIONS)
    assert produce(kafka_broker.bootstrap, raw_topic, messages) == TOTAL

    logs = [tmp_path / f"worker{i}.log" for i in range(5)]
    procs = [start_worker(cfg, "normalize,score", log=logs[i]) for i in range(3)]
    try:
        at_kill = _wait_for(pg_url, TOTAL // 4, procs, 300)
        assert 0 < at_kill < TOTAL, "the kill must land mid-stream"
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        procs.append(start_worker(cfg, "normalize,score", log=logs[3]))  # the restart
        at_join = _wait_for(pg_url, TOTAL // 2, procs, 300)
        assert at_join < TOTAL, "the new consumer must join mid-stream"
        procs.append(start_worker(cfg, "normalize,score", log=logs[4]))  # a consumer added
        finished = _wait_for(pg_url, TOTAL, procs, 400)
        assert finished == TOTAL, f"only {finished} of {TOTAL} records were processed"
        out = read_topic(
            kafka_broker.bootstrap,
            f"{prefix}.scored.lead.v1",
            expect=_count(pg_url, "SELECT count(*) FROM scores"),
        )
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:  # a stuck worker must not hide the result
                p.kill()

    input_ids = [orjson_id(v) for _, v in messages]
    quarantined = {
        k.removeprefix("leads:")
        for (k,) in _rows(pg_url, "SELECT record_key FROM quarantine WHERE pipeline = 'leads'")
    }
    out_ids = [v["record_id"] for _, _, _, v in out]
    # the output set equals the input set (less the invalid rows, quarantined with their bytes)
    assert set(out_ids) | {f"leads:{k}" for k in quarantined} == set(input_ids)
    assert not set(out_ids) & {f"leads:{k}" for k in quarantined}
    assert len(quarantined) < TOTAL // 100  # the messy export's invalid rows, ~0.5 %
    # no effect duplicated: exactly one record, score and relay row per record that went on
    good = len(set(out_ids))
    assert _count(pg_url, "SELECT count(*) FROM records") == good
    assert _count(pg_url, "SELECT count(DISTINCT record_id) FROM scores") == good
    assert _count(pg_url, "SELECT count(*) FROM scores") == good
    assert _count(pg_url, "SELECT count(*) FROM stage_relay") == good
    assert _count(pg_url, UNPUBLISHED_RELAY) == 0
    resent = len(out_ids) - good
    assert resent <= BATCH * PARTITIONS, f"{resent} messages sent twice"
    # per-key order: each lead's versions, first appearances, in input order; one partition
    by_key: dict[str, list[str]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    seen: set[str] = set()
    for part, _, key, value in out:
        partitions[key].add(part)
        if value["record_id"] not in seen:
            seen.add(value["record_id"])
            by_key[key].append(value["version"])
    assert all(len(p) == 1 for p in partitions.values())
    assert all(vs == sorted(vs) for vs in by_key.values())
    assert sum(len(vs) for vs in by_key.values()) == good
    # the restarted worker and the added one took part
    assert "partitions assigned" in logs[3].read_text(errors="replace")
    assert "partitions assigned" in logs[4].read_text(errors="replace")


def orjson_id(value: bytes) -> str:
    return str(orjson.loads(value)["record_id"])


def _rows(url: str, sql: str) -> list[tuple]:
    eng = create_engine(url)
    try:
        with eng.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql)).all()]
    finally:
        eng.dispose()
