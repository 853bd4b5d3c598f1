"""A failed soak prints what ``junction serve`` said last, without librdkafka's chatter (issue 11).

CI once lost a failed soak's output: only the report's verdict said that Kafka stalled, not why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import bench.soak as soak
from bench.soak_stack import log_digest

LOG = """\
--- incarnation 1 ---
{"pipeline": "kafka", "event": "schedule fired", "level": "info"}
2026-12-03 07:39:54,401 [ERROR] connectors.kafka.librdkafka: FAIL [thrd:GroupCoordinator]: refused
2026-12-03 07:39:54,402 [WARNING] connectors.kafka.librdkafka: Kafka client error _ALL_BROKERS_DOWN
{"event": "no partitions assigned within join_timeout_s; read ends", "level": "info"}
"""


def test_the_digest_keeps_the_hubs_lines_and_drops_librdkafkas_own(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    log.write_text(LOG, encoding="utf-8")
    digest = log_digest(log).splitlines()
    assert digest[0] == "--- incarnation 1 ---"
    assert not any("[thrd:" in line for line in digest)
    assert any("_ALL_BROKERS_DOWN" in line for line in digest)
    assert digest[-1].endswith('"level": "info"}')
    assert "join_timeout_s" in digest[-1]
    assert log_digest(log, lines=1).splitlines() == digest[-1:]
    assert log_digest(tmp_path / "missing.log") == ""


def test_a_failed_soak_prints_the_serve_log_tail(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken_run(self: Any, figures: dict[str, Any]) -> None:
        (self.work / "serve.log").write_text(LOG, encoding="utf-8")
        raise RuntimeError("Kafka input did not resume")

    monkeypatch.setattr(soak._Soak, "run", broken_run)
    figures: dict[str, Any] = {}
    assert soak.run(minutes=0.1, figures=figures) == 1
    out = capsys.readouterr().out
    assert "junction serve log, last lines" in out
    assert "no partitions assigned within join_timeout_s" in out
    assert "[thrd:" not in out
    assert "join_timeout_s" in figures["serve_log"]
    assert figures["problems"] == ["RuntimeError: Kafka input did not resume"]
