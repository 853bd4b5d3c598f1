"""The API in its own process, for the kill -9 tests of inbound hooks (RELIABILITY case 11).

``python -m tests.api.hook_child CONFIG MODE MARKER URLFILE`` serves the hub of ``CONFIG`` on
127.0.0.1 and writes its base URL to ``URLFILE``.  The first pushed batch writes ``MARKER`` and
blocks forever: before its store transaction (``before-commit``) or after it has committed,
before the HTTP answer (``after-commit``), so the test can SIGKILL the process in that window.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import junction.pipeline.push as push
from tests.api.harness import running_api


def main(argv: list[str]) -> int:
    config, mode, marker, urlfile = argv
    commit = push.write_pushed

    def hang(*args: Any, **kwargs: Any) -> Any:
        if mode == "after-commit":
            commit(*args, **kwargs)
        Path(marker).write_text(mode, encoding="utf-8")
        while True:
            time.sleep(60)

    push.write_pushed = hang  # the kill point: the one call that commits a pushed batch
    with running_api(Path(config)) as api:
        Path(urlfile).write_text(api.base_url, encoding="utf-8")
        while True:
            time.sleep(60)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
