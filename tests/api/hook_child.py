"""The API in its own process, for the kill -9 tests of inbound hooks (RELIABILITY cases 10, 11).

``python -m tests.api.hook_child CONFIG MODE MARKER URLFILE`` serves the hub of ``CONFIG`` on
127.0.0.1 and writes its base URL to ``URLFILE``.  The first pushed batch writes ``MARKER`` and
blocks forever: before its store transaction (``before-commit``) or after it has committed,
before the HTTP answer (``after-commit``), so the test can SIGKILL the process in that window.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

import junction.pipeline.push as push
from tests.api.harness import running_api
from tests.integration.delivery_support import kill_at_recording, wait_for_file

ROOT = Path(__file__).resolve().parents[2]


def kill_while_storing(
    config: Path, mode: str, work: Path, path: str, body: bytes, headers: dict[str, str]
) -> httpx.Response | httpx.HTTPError:
    """Serve ``config`` in a child process, POST ``body`` to ``path``, SIGKILL the child at its
    kill point (``mode``); return what the sender got (an error: there was no answer)."""
    marker, urlfile = work / f"{mode}.kill-point", work / f"{mode}.url"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.api.hook_child",
            str(config),
            mode,
            str(marker),
            str(urlfile),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    answers: list[httpx.Response | httpx.HTTPError] = []
    try:
        wait_for_file(urlfile, child, "serving")
        url = urlfile.read_text(encoding="utf-8") + path

        def send() -> None:
            try:
                answers.append(httpx.post(url, content=body, headers=headers, timeout=60))
            except httpx.HTTPError as exc:
                answers.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        kill_at_recording(child, marker)
        sender.join(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    [answer] = answers
    return answer


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
