"""``python -m bench instructions``: callgrind counts the raw loop and the hub, plain and sealed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_counts_are_printed_per_row_with_both_quotients(tmp_path: Path) -> None:
    rows = 300
    data = ROOT / "bench" / "data" / f"leads-{rows}.csv"
    out = subprocess.run(
        [sys.executable, "-m", "bench", "instructions", "--rows", str(rows), "--encrypt"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    data.unlink(missing_ok=True)
    assert out.returncode == 0, out.stdout + out.stderr
    per_row = {
        m.group(1): float(m.group(2).replace(",", ""))
        for m in re.finditer(
            r"(raw csv\.DictReader|plain|encrypted)\s*: +([\d,]+) per row", out.stdout
        )
    }
    assert set(per_row) == {"raw csv.DictReader", "plain", "encrypted"}, out.stdout
    # the hub does far more per row than the raw loop, and sealing adds to it
    assert per_row["raw csv.DictReader"] < per_row["plain"] < per_row["encrypted"]
    quotient = float(re.search(r"plain / encrypted\s*: ([\d.]+)", out.stdout).group(1))  # type: ignore[union-attr]
    assert quotient == pytest.approx(per_row["plain"] / per_row["encrypted"], abs=0.001)
