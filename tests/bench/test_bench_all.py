"""``python -m bench all`` writes one Markdown report: every section, the machine facts, the sizes
and a goal line for every goal the issues state.  The benches that finish in seconds at
``--quick`` sizes run for real (e2e with encryption, the dlt peer, deliver, erp); the others are
left out with ``--only`` (a whole ``--quick`` run takes minutes on a loaded 2-core machine) and
must still have their section and goal lines, marked as not run.  Figures are never asserted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SECTIONS = [
    "## Machine",
    "## Sizes (quick)",
    "## Goals",
    "## End to end",
    "## Peer: dlt",
    "## Scoring API",
    "## Scoring engine",
    "## Signed webhook delivery",
    "## CRM initial sync",
    "## ERP and database reads",
    "## Kafka stages",
    "## Soak",
]

# (goal text, issue, whether this test runs its bench)
GOALS = [
    ("e2e hub / csv.DictReader ≥ 0.25", "2", True),
    ("e2e peak RSS (hub + workers) < 300 MB", "2", True),
    ("e2e --encrypt: encrypted ratio / plain ratio ≥ 0.8", "9", True),
    ("api throughput ≥ 5x the naive endpoint", "3", False),
    ("api p99 at 50 % load ≤ 20 ms", "3", False),
    ("score linear: single row ≥ 20x raw", "7", False),
    ("score linear: batch ≥ 0.5 of raw", "7", False),
    ("score trees: single row ≥ 20x raw", "7", False),
    ("score trees: batch ≥ 0.5 of raw", "7", False),
    ("deliver hub ≥ 0.5 of raw aiohttp", "6", True),
    ("deliver ≥ 3,000 deliveries/s", "6", True),
    ("erp commerceml ≥ 0.3 of raw iterparse", "5", True),
    ("erp odbc ≥ 0.5 of raw fetchmany", "5", True),
    ("kafka score role (1 process) ≥ 0.25 of raw, wall", "8", False),
    ("kafka score role (1 process) ≥ 0.25 of raw, steady", "8", False),
    ("kafka normalize,score fused (1 process), steady", "8", False),
    ("kafka scaling 1 → 2 processes, wall", "8", False),
]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_all_writes_one_report_with_every_section_and_goal(tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "all",
            "--quick",
            "--only",
            "e2e,dlt,deliver,erp",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=230,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = out.read_text(encoding="utf-8")
    for heading in SECTIONS:
        assert f"\n{heading}" in report, heading
    assert re.search(r"- cores: \d+", report)
    assert re.search(r"load average .* at start: [\d.]+, [\d.]+, [\d.]+", report)
    assert re.search(r"load average .* at end: [\d.]+, [\d.]+, [\d.]+", report)
    assert re.search(r"- Python 3\.\d+", report)
    assert re.search(r"- date: \d{4}-\d\d-\d\d", report)
    assert "| e2e | rows 5,000 |" in report

    goal_rows = [
        line for line in report.splitlines() if line.startswith("| ") and line.endswith(" |")
    ]
    goal_rows = goal_rows[goal_rows.index("| goal | issue | measured | verdict |") + 1 :]
    goal_rows = goal_rows[: len(GOALS)]
    for (text, issue, ran), row in zip(GOALS, goal_rows, strict=True):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0].startswith(text), (text, row)
        assert cells[1] == issue, row
        if ran:
            assert re.match(r"[\d,.]+", cells[2]), row  # a measured figure
            assert cells[3] in {"met", "NOT met"}, row
        else:
            assert (cells[2], cells[3]) == ("n/a", "not measured"), row

    # every bench that ran shows its figure beside a same-run baseline with the ratio
    assert re.search(
        r"\| hub rows/s \(plain\) \| [\d,]+ \| csv.DictReader rows/s \| [\d,]+ \|", report
    )
    assert re.search(r"\| hub deliveries/s \| [\d,]+ \| raw aiohttp", report)
    assert re.search(r"\| odbc connector rows/s .*\| pyodbc fetchmany rows/s \| [\d,]+ \|", report)
    assert "## Peer: dlt" in report
    dlt = report.split("## Peer: dlt", 1)[1].split("\n## ", 1)[0]
    assert "skipped: dlt is not installed" in dlt or re.search(r"\| dlt [\d.]+ rows/s", dlt)
    # api, score, crm, kafka, soak
    assert report.count("not run in this report (`--only`)") == 5
