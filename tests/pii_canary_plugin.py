"""Suite-wide check: no canary personal data (tests/privacy_canaries.py) in any log line, ever.

Every log line of the session lands in one file, whatever captures or swallows it on the way:

* structlog lines (``junction.core.logging``) are appended to the file named by
  ``JUNCTION_LOG_TEE``, in this process and in every subprocess the tests spawn (they inherit the
  variable; the autouse fixture puts it back after ``_clean_env`` clears ``JUNCTION_*``);
* standard-library records (SDKs, uvicorn, SQLAlchemy, junction's own ``logging`` users) reach a
  handler on the root logger installed before any test, which writes them there too.

The metric labels of this process (``junction.core.metrics.REGISTRY``) are checked as well.

When the session ends the file is searched for every canary (emails case-insensitively, phones
with and without ``+``); a hit fails the session (exit status 1) and prints where it was.
Set ``JUNCTION_PII_CANARY_KEEP=1`` to keep the file for reading afterwards.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from junction.core.logging import TEE_ENV
from tests.privacy_canaries import needles

KEEP_ENV = "JUNCTION_PII_CANARY_KEEP"
SHOW_HITS = 20


class _Sink(logging.Handler):
    """Every standard-library record that reaches the root logger, as one line in the file."""

    def __init__(self, path: Path) -> None:
        super().__init__(logging.NOTSET)
        self.path = path
        self.setFormatter(logging.Formatter("stdlib %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a record that cannot format: keep its raw parts
            line = f"stdlib {record.name}: {record.msg!r} {record.args!r}"
        with self.path.open("a", encoding="utf-8", errors="backslashreplace") as f:
            f.write(line.replace("\n", "\\n") + "\n")


class CanaryCheck:
    """The session's log file, its sink, and the check at the end."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="junction-pii-canary-"))
        self.path = self.folder / "session.log"
        self.path.touch()
        self.sink = _Sink(self.path)
        self.hits: list[str] = []

    def start(self) -> None:
        os.environ[TEE_ENV] = str(self.path)
        logging.getLogger().addHandler(self.sink)

    def scan(self) -> list[str]:
        """The log lines holding a canary (each line once, with the canary it holds)."""
        wanted = [n.lower() for n in needles()]
        hits = []
        with self.path.open(encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                low = line.lower()
                found = [w for w in wanted if w in low]
                if found:
                    hits.append(f"line {n}: {found[0]!r} in {line.strip()[:300]}")
        return hits + scan_metrics(wanted)

    def stop(self) -> None:
        logging.getLogger().removeHandler(self.sink)
        if os.environ.get(TEE_ENV) == str(self.path):
            del os.environ[TEE_ENV]
        if os.environ.get(KEEP_ENV) != "1":
            shutil.rmtree(self.folder, ignore_errors=True)


def scan_metrics(wanted: list[str]) -> list[str]:
    """The metric samples of this process whose labels hold a canary."""
    if "junction.core.metrics" not in sys.modules:
        return []
    from junction.core.metrics import REGISTRY

    hits = []
    for family in REGISTRY.collect():
        for sample in family.samples:
            labels = " ".join(f"{k}={v}" for k, v in sample.labels.items()).lower()
            found = [w for w in wanted if w in labels]
            if found:
                hits.append(f"metric {sample.name}: {found[0]!r} in labels {labels[:300]}")
    return hits


_check: CanaryCheck | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _check
    if _check is None and not hasattr(config, "workerinput"):
        _check = CanaryCheck()
        _check.start()


@pytest.fixture(autouse=True)
def _log_tee(_clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep ``JUNCTION_LOG_TEE`` set in every test (``_clean_env`` clears ``JUNCTION_*``)."""
    if _check is not None:
        monkeypatch.setenv(TEE_ENV, str(_check.path))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _check is None:
        return
    _check.hits = _check.scan()
    if _check.hits and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _check is None:
        return
    hits = _check.hits
    if hits:
        terminalreporter.section("personal data in the logs", sep="=", red=True, bold=True)
        terminalreporter.write_line(
            f"{len(hits)} log line(s) hold canary personal data in clear "
            f"(set {KEEP_ENV}=1 to keep {_check.path}):"
        )
        for hit in hits[:SHOW_HITS]:
            terminalreporter.write_line(f"  {hit}")
    else:
        lines = sum(1 for _ in _check.path.open(encoding="utf-8", errors="replace"))
        terminalreporter.write_line(f"pii canary check: {lines} log lines, no canary in clear")


def pytest_unconfigure(config: pytest.Config) -> None:
    global _check
    if _check is not None:
        _check.stop()
        _check = None
