"""The soak's stack: its config, the ``junction serve`` subprocess, and RSS sampling.

One config, four scored pipelines, each routed to the local webhook receiver:

* ``files``: CSV file drops in ``inbox/files`` (watched by ``serve``);
* ``api``: ``POST /api/v1/records/api`` with an API key and an ``Idempotency-Key``;
* ``hooks``: ``POST /hooks/soak`` signed per Standard Webhooks;
* ``kafka``: a topic on a tansu broker, read every 2 s by the ``kafka`` connector.

The push pipelines (``api``, ``hooks``) name a csv_file source on an inbox nobody writes to: a
pipeline needs a source, and pushes go through its mapping, rules, scorer and routes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = ("files", "api", "hooks", "kafka")
TOPIC = "soak.leads"

_PIPELINE = """\
  {name}:
    source: {source}
    mapping: csv.lead
    batch_size: 200
    workers: 0
    rules:
      - {{name: has_email, expr: "lead.email != null"}}
    scoring: {{model: lead-score}}
{archive}    routes:
      - when: "score.value >= 0.5"
        to: [webhook.hot]
      - otherwise: [webhook.cold]
"""

_CONFIG = """\
store: "{store}"
models_dir: {models}
pipelines:
{pipelines}channels:
  webhook.hot: {{url: "{sink}hot", secret: "{sink_secret}", timeout_s: {timeout}}}
  webhook.cold: {{url: "{sink}cold", secret: "{sink_secret}", timeout_s: {timeout}}}
delivery:
  schedule_s: [0.5, 1, 2, 4, 8, 15, 30, 30, 30, 30, 30, 30, 30, 30]
  lease_s: 10
  concurrency: 32
api:
  port: {port}
  signing_key: "{signing_key}"
  rate_limit: "10000/second"
  shutdown_grace_s: 10
  hooks:
    soak: {{pipeline: hooks, secret: "{hook_secret}"}}
"""


def write_config(
    root: Path,
    *,
    store: str,
    models: Path,
    sink_url: str,
    sink_secret: str,
    hook_secret: str,
    bootstrap: str,
    port: int,
    signing_key: str,
    timeout_s: float = 3.0,
) -> Path:
    """Write ``root/junction.yaml`` (inbox folders created) and return its path."""
    parts = []
    for name in PIPELINES:
        inbox = root / "inbox" / name
        inbox.mkdir(parents=True, exist_ok=True)
        if name == "kafka":
            source = (
                f'{{connector: kafka, bootstrap_servers: "{bootstrap}", topics: [{TOPIC}], '
                f'group_id: junction-soak, schedule: "* * * * * */2", idle_timeout_s: 1.0, '
                f"poll_timeout_s: 0.1, "
                f"timeout_s: 5}}"
            )
            archive = ""
        else:
            source = f"{{connector: csv_file, path: {inbox}/*.csv, settle_seconds: 0}}"
            archive = f"    archive: {{processed: {inbox}/processed, failed: {inbox}/rejected}}\n"
        parts.append(_PIPELINE.format(name=name, source=source, archive=archive))
    path = root / "junction.yaml"
    path.write_text(
        _CONFIG.format(
            store=store,
            models=models,
            pipelines="".join(parts),
            sink=sink_url.rstrip("/") + "/",
            sink_secret=sink_secret,
            hook_secret=hook_secret,
            port=port,
            signing_key=signing_key,
            timeout=timeout_s,
        ),
        encoding="utf-8",
    )
    return path


def log_digest(path: Path, lines: int = 80) -> str:
    """The last ``lines`` lines of serve's log that are not librdkafka's own, for a failed soak.

    The hub's own events (runs, schedule fires, failed joins, client errors) say what went
    wrong; librdkafka's own lines repeat a refused connection many times a second while a
    broker is away and would push them out.
    """
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    kept = [line[:400] for line in text.splitlines() if line.strip() and "[thrd:" not in line]
    return "\n".join(kept[-lines:])


def rss_bytes(pid: int) -> int | None:
    """Resident set size of ``pid`` (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class ServeProcess:
    """``junction serve CONFIG`` as a subprocess; its stderr goes to a log file.

    Readiness is ``GET /readyz`` answering 200 (the port is fixed in the config, so clients
    keep their URL across restarts).
    """

    def __init__(self, config: Path, port: int, log_path: Path, env: dict[str, str]) -> None:
        self.config, self.port, self.log_path, self.env = config, port, log_path, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.incarnation = 0
        self.started_at = 0.0
        self._log = log_path.open("ab")

    @property
    def pid(self) -> int | None:
        """The running process's id."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self, timeout_s: float = 90.0) -> float:
        """Start it and wait until it is ready; return the seconds that took."""
        t0 = time.monotonic()
        self.incarnation += 1
        self._log.write(f"--- incarnation {self.incarnation} ---\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "junction.cli.main", "serve", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env=self.env,
            cwd=self.config.parent,
        )
        self.started_at = time.monotonic()
        self.wait_ready(timeout_s)
        return time.monotonic() - t0

    def wait_ready(self, timeout_s: float) -> None:
        """Wait until ``/readyz`` answers 200.

        Raises:
            RuntimeError: It exited, or was not ready in time (its log's tail is quoted).
        """
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.port}/readyz"
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"junction serve exited: {self.tail()}")
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(url, timeout=1.0) as r,
            ):
                if r.status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"junction serve was not ready in {timeout_s:.0f} s: {self.tail()}")

    def kill(self) -> None:
        """SIGKILL it (no shutdown of any kind) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, wait (SIGKILL past ``timeout_s``); return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def tail(self, chars: int = 3000) -> str:
        """The end of its log."""
        self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def close(self) -> None:
        """Kill it if still running and close the log."""
        self.kill()
        self._log.close()


@dataclass
class RssSample:
    """One RSS reading of the serve process."""

    t: float  # seconds since the soak started
    incarnation: int
    uptime_s: float  # seconds since this incarnation started
    rss: int


@dataclass
class RssSampler:
    """Samples the serve process's RSS every ``every_s`` in a thread."""

    serve: ServeProcess
    t0: float
    every_s: float = 2.0
    samples: list[RssSample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RssSampler:
        """Start sampling."""
        self._thread = threading.Thread(target=self._run, name="soak-rss", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            pid = self.serve.pid
            if pid is None:
                continue
            rss = rss_bytes(pid)
            if rss is not None:
                now = time.monotonic()
                self.samples.append(
                    RssSample(
                        now - self.t0,
                        self.serve.incarnation,
                        now - self.serve.started_at,
                        rss,
                    )
                )

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def reconcile_cli(config: Path, pipeline: str, keys: Path | None, env: dict[str, str]) -> dict:  # type: ignore[type-arg]
    """Run ``junction reconcile CONFIG --pipeline P [--keys F] --json``; its JSON and exit code."""
    cmd = [
        sys.executable,
        "-m",
        "junction.cli.main",
        "reconcile",
        str(config),
        "--pipeline",
        pipeline,
        "--json",
    ]
    if keys is not None:
        cmd += ["--keys", str(keys)]
    done = subprocess.run(cmd, capture_output=True, env=env, cwd=config.parent, timeout=300)
    try:
        doc = orjson.loads(done.stdout)
    except orjson.JSONDecodeError:
        doc = {"clean": False, "error": (done.stdout + done.stderr).decode(errors="replace")[-800:]}
    doc["exit_code"] = done.returncode
    return dict(doc)


def serve_env(root: Path) -> dict[str, str]:
    """The environment of ``serve`` and the CLI: loopback allowed past the egress policy."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUNCTION_")}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "PYTHONFAULTHANDLER": "1",  # SIGABRT dumps every thread's stack into serve.log
            "JUNCTION_EGRESS_ALLOW": "127.0.0.0/8,::1/128",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env
