"""Run ``junction serve`` as a real subprocess and watch its structured log lines."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.api.harness import SIGNING_KEY
from tests.integration.helpers import records_held

PIPELINE = """\
  {name}:
    source:
      connector: csv_file
      path: {inbox}/*.csv
      settle_seconds: {settle}
      require_done_marker: {marker}
      encoding: {encoding}
{schedule}    mapping: csv.lead
    batch_size: {batch}
    workers: 0
    rules:
      - {{name: has_email, expr: "lead.email != null"}}
    scoring: {{model: lead-score}}
    archive: {{processed: {inbox}/processed, failed: {inbox}/rejected}}
    routes:
      - when: "score.value >= {threshold}"
        to: [webhook.sales]
"""

CONFIG = """\
store: "{store}"
models_dir: {models}
pipelines:
{pipelines}channels:
  webhook.sales: {{url: "{url}", secret: "{secret}", timeout_s: {timeout}}}
delivery:
  schedule_s: [0.2, 0.5, 1, 2]
  lease_s: {lease}
  concurrency: {concurrency}
api:
  port: 0
  signing_key: "{signing_key}"
  shutdown_grace_s: {grace}
"""


def pipeline_yaml(
    name: str = "leads",
    *,
    inbox: str = "inbox",
    settle: float = 0,
    marker: bool = False,
    encoding: str = "auto",
    schedule: str | None = None,
    batch: int = 500,
    threshold: float = 0.5,
) -> str:
    """One CSV file-drop pipeline's YAML (scored, hot leads routed to ``webhook.sales``)."""
    return PIPELINE.format(
        name=name,
        inbox=inbox,
        settle=settle,
        marker=str(marker).lower(),
        encoding=encoding,
        schedule=f'      schedule: "{schedule}"\n' if schedule else "",
        batch=batch,
        threshold=threshold,
    )


def write_serve_config(
    root: Path,
    *,
    store: str,
    models: Path,
    pipelines: str | None = None,
    url: str = "http://127.0.0.1:9/",
    secret: str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    grace: float = 10,
    lease: float = 30,
    timeout: float = 5,
    concurrency: int = 50,
) -> Path:
    """Write ``junction.yaml`` under ``root`` (inbox folders created) and return its path."""
    body = pipelines if pipelines is not None else pipeline_yaml()
    for line in body.splitlines():
        if line.strip().startswith("path:"):
            folder = line.split("path:", 1)[1].strip().rsplit("/", 1)[0]
            (root / folder).mkdir(parents=True, exist_ok=True)
    path = root / "junction.yaml"
    path.write_text(
        CONFIG.format(
            store=store,
            models=models,
            pipelines=body,
            url=url,
            secret=secret,
            timeout=timeout,
            lease=lease,
            concurrency=concurrency,
            signing_key=SIGNING_KEY,
            grace=grace,
        ),
        encoding="utf-8",
    )
    return path


def drop(src: Path, inbox: Path, name: str | None = None) -> Path:
    """Drop a complete file atomically: copy under a hidden name, then rename into the inbox."""
    dest = inbox / (name or src.name)
    tmp = inbox / f".{dest.name}.part"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    return dest


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def signal_mid_file(serve: Serve, store_url: str, low: int, high: int, sig: int) -> float:
    """Send ``sig`` while the records stored are held still at ``low`` or more and fewer than
    ``high``; return when it went. (Polling a count that moves on could miss the window on a
    loaded machine: the test process starved while the service ran on past ``high``.)"""
    seen, deadline = 0, time.monotonic() + 30
    while time.monotonic() < deadline:
        with records_held(store_url) as stored:
            seen = stored()
            if low <= seen < high:
                serve.signal(sig)
                return time.monotonic()
        assert seen < high, f"{seen} records were stored before a poll saw {low}"
        time.sleep(0.01)
    pytest.fail(f"timed out after 30s waiting for {low} records stored ({seen} so far)")


class Serve:
    """A ``junction serve CONFIG`` subprocess; its JSON log lines are collected as they come."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.events: list[dict[str, Any]] = []
        self.text: list[str] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "junction.cli.main", "serve", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=Path(__file__).resolve().parents[2],
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port: int = 0

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self.text.append(line)
                if line.startswith("{"):
                    with contextlib.suppress(orjson.JSONDecodeError):
                        self.events.append(orjson.loads(line))

    def log(self) -> str:
        """Everything the process wrote to stderr so far."""
        with self._lock:
            return "\n".join(self.text)

    def find(self, event: str) -> list[dict[str, Any]]:
        """The log records whose event is ``event``."""
        with self._lock:
            return [e for e in self.events if e.get("event") == event]

    def phase(self, phase: str) -> dict[str, Any] | None:
        """The (last) record of a service phase, if logged."""
        with self._lock:
            found = [e for e in self.events if e.get("phase") == phase]
        return found[-1] if found else None

    def wait_event(self, event: str, timeout: float = 30) -> dict[str, Any]:
        """Wait for a log record with ``event``; fail with the log if the process dies first."""

        def seen() -> dict[str, Any] | None:
            found = self.find(event)
            if found:
                return found[-1]
            if self.proc.poll() is not None:
                self._reader.join(timeout=2)
                pytest.fail(f"serve exited ({self.proc.returncode}):\n{self.log()[-4000:]}")
            return None

        result: dict[str, Any] = wait_for(seen, timeout, f"log event {event!r}")
        return result

    def wait_ready(self, timeout: float = 60) -> Serve:
        """Wait until the service is listening and ready."""
        listen = self.wait_event("serve listening", timeout)
        self.port = int(listen["port"])
        self.wait_event("serve ready", timeout)
        return self

    @property
    def url(self) -> str:
        """The API's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, **kw: Any) -> httpx.Response:
        """GET ``path`` from the API."""
        with httpx.Client(base_url=self.url, timeout=10) as client:
            return client.get(path, **kw)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to the process."""
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; return the exit code."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 30) -> int:
        """Wait for the process to exit and its log to be read."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"serve did not exit within {timeout}s:\n{self.log()[-4000:]}")
        self._reader.join(timeout=5)
        return code

    def __enter__(self) -> Serve:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
