"""``python -m bench kafka`` keeps working: its input is what the stage workers read, and a tiny
run (2,000 records, real tansu brokers, real ``junction worker`` processes) completes with every
output set equal to its input set.  Figures are printed, never asserted (they go to bench/)."""

from __future__ import annotations

import re

import orjson
import pytest

from bench import kafka as bench_kafka
from junction.pipeline.stages.topics import (
    HEADER_PIPELINE,
    HEADER_RECORD,
    Source,
    decode,
    subject_key,
)


def test_the_bench_input_is_what_the_normalize_role_reads() -> None:
    rows, sha = bench_kafka.source_rows(50)
    messages = bench_kafka.raw_messages(rows, sha, "bench")
    assert len(messages) == 50
    keys = set()
    for i, (key, value, headers) in enumerate(messages):
        item = decode(value, "raw", Source("b.raw.lead.v1", 0, i, value))
        assert item.pipeline == "bench"
        assert item.record == rows[i]
        assert key.decode() == subject_key(item.pipeline, item.key) == item.record_id
        assert dict(headers) == {
            HEADER_PIPELINE: b"bench",
            HEADER_RECORD: item.record_id.encode(),
        }
        keys.add(key)
    assert len(keys) == 50
    assert orjson.loads(messages[0][1])["version"] is None


@pytest.mark.slow
def test_a_tiny_run_completes_with_output_equal_to_input(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = bench_kafka.main(["--records", "2000", "--processes", "1,2"])
    out = capsys.readouterr().out
    assert code == 0, out
    runs = re.findall(r"^(raw before|hub x1|hub x2|raw after) *:.*output = input: (\w+)", out, re.M)
    assert runs == [
        ("raw before", "ok"),
        ("hub x1", "ok"),
        ("hub x2", "ok"),
        ("raw after", "ok"),
    ], out
    assert "hub x1 / best raw:" in out
    assert "scaling 1 → 2 processes:" in out
