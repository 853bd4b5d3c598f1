"""``python -m bench kafka`` keeps working: its input is what the stage workers read, and a tiny
run (2,000 records, real tansu brokers, real ``junction worker`` processes) completes with every
output set equal to its input set.  Figures are printed, never asserted (they go to bench/)."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from bench import kafka as bench_kafka
from junction.pipeline.stages.topics import (
    HEADER_PIPELINE,
    HEADER_RECORD,
    HEADER_STAGE,
    Source,
    decode,
    subject_key,
)
from mappings.engine import compile_mapping, load_spec
from schemas.lead import Lead


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


def test_the_score_role_input_is_what_the_normalize_role_writes() -> None:
    rows, sha = bench_kafka.source_rows(50)
    raw = bench_kafka.raw_messages(rows, sha, "bench")
    canonical = bench_kafka.canonical_messages(rows, sha, "bench")
    mapping = compile_mapping(load_spec("csv.lead"))
    assert [m[0] for m in canonical] == [m[0] for m in raw]  # the same keys, in order
    for i, (_key, value, headers) in enumerate(canonical):
        item = decode(value, "canonical", Source("b.canonical.lead.v1", 0, i, value))
        assert item.record_id == raw[i][0].decode()
        assert item.entity == "lead"
        assert item.schema_version == "lead.v1"
        # the record is the canonical lead the mapping makes of the raw row
        assert Lead.model_validate(item.record or {}) == mapping.apply(rows[i])
        assert dict(headers)[HEADER_STAGE] == b"canonical"


@pytest.mark.slow
def test_a_tiny_run_completes_with_output_equal_to_input(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = bench_kafka.main(["--records", "2000", "--processes", "1,2"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert _runs(out) == [
        "raw (raw) before",
        "raw (canonical) before",
        "score x1",
        "score x2",
        "normalize,score x1",
        "normalize,score x2",
        "raw (raw) after",
        "raw (canonical) after",
    ], out
    assert "score x1 / best raw:" in out
    assert "score scaling 1 → 2 processes:" in out
    assert "normalize,score scaling 1 → 2 processes:" in out


@pytest.mark.slow
def test_repeated_runs_report_the_medians_of_their_rounds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    figures: dict[str, Any] = {}
    code = bench_kafka.run(
        records=2000,
        processes=[1],
        store=None,
        keep=False,
        raw_only=False,
        figures=figures,
        role_sets=["score"],
        repeat=3,
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert _runs(out) == [
        "raw (canonical) before",
        "score x1 #1",
        "raw (canonical) after #1",
        "score x1 #2",
        "raw (canonical) after #2",
        "score x1 #3",
        "raw (canonical) after #3",
    ], out
    rounds = [figures[f"score x1 #{i}"] for i in (1, 2, 3)]
    for figure in ("rate", "steady_rate", "per_cpu_second"):
        assert figures["score x1"][figure] == sorted(r[figure] for r in rounds)[1]
    assert figures["score x1"]["exact"] is True
    best_steady = max(v["steady_rate"] for k, v in figures.items() if k.startswith("raw"))
    steady = figures["score x1"]["steady_rate"] / best_steady
    assert "score x1 (medians of 3) / best raw: " in out
    assert f"{steady:.3f} steady" in out


def _runs(out: str) -> list[str]:
    """The labels of the measured runs a bench printed, each checked for output = input."""
    lines = re.findall(r"^(\S.*?) *: .*output = input: (\w+)", out, re.M)
    assert all(check == "ok" for _, check in lines), out
    return [label for label, _ in lines]
