"""Running a benchmark's measured part under callgrind, for the instruction-count benches.

``bench instructions`` and ``bench stage-instructions`` both run a child ``python -m <module>
--child ...`` under valgrind with instrumentation off at the start; the child switches it on
only around what it measures (``switch``) and prints one JSON line of what it ran; ``count``
returns the instructions collected and that line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

_COLLECTED = re.compile(r"Collected : (\d+)")
MISSING = "valgrind is not installed (apt-get install valgrind): nothing counted"


def available() -> bool:
    """Whether valgrind and ``callgrind_control`` are on the PATH."""
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


def switch(on: bool) -> None:
    """Switch callgrind's instrumentation of this process on or off."""
    subprocess.run(
        ["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],
        check=True,
        capture_output=True,
    )


def count(module: str, args: list[str], out: Path, label: str) -> tuple[int, dict[str, Any]]:
    """Instructions counted in ``python -m module --child *args`` under callgrind, and the
    JSON line it printed last; ``out`` names its output files (``out`` + ``.callgrind.out``
    and ``.valgrind.log``).

    Raises:
        SystemExit: the child failed, or valgrind reported no count (names ``label``).
    """
    log = out.with_name(out.name + ".valgrind.log")
    proc = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out.with_name(out.name + '.callgrind.out')}",
            f"--log-file={log}",
            sys.executable,
            "-m",
            module,
            "--child",
            *args,
        ],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dict layouts in every run
    )
    found = _COLLECTED.search(log.read_text()) if log.exists() else None
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"the {label} run failed under valgrind:\n{proc.stderr[-2000:]}")
    return int(found.group(1)), json.loads(proc.stdout.strip().splitlines()[-1])
