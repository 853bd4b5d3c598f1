"""``python -m bench stage-instructions``: callgrind counts a stage worker's batch work by phase."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_each_phase_is_counted_per_record_and_summed() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "stage-instructions", "--records", "150", "--warm", "50"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    per = {
        m.group(1): float(m.group(2).replace(",", ""))
        for m in re.finditer(r"^(\w+)\s*: +([\d,]+) per record$", out.stdout, re.M)
    }
    assert list(per) == ["read", "roles", "relay", "write", "free", "total"], out.stdout
    # every phase does work for each record, and the phases are counted apart
    assert all(per[p] > 1_000 for p in ("read", "roles", "relay", "write")), per
    assert per["total"] == pytest.approx(sum(v for k, v in per.items() if k != "total"), abs=3)
    # reading validates a whole canonical message: far more than dropping it afterwards
    assert per["read"] > 5 * per["free"], per
