"""The confluent-kafka side of the Kafka channel: an asyncio face on one idempotent Producer.

``ProducerClient.produce`` hands a record to librdkafka and awaits its delivery report.  A daemon
thread polls the producer; each report resolves the sender's asyncio future through
``loop.call_soon_threadsafe``.  Concurrent sends share the one producer, which is how librdkafka
batches: fifty sends in flight at once go out as a few produce requests.

Failures are translated here (the one place confluent-kafka is imported):

- ``_MSG_TIMED_OUT``, ``_TIMED_OUT``, ``REQUEST_TIMED_OUT`` → RemoteTimeoutError;
- ``_TRANSPORT``, ``_ALL_BROKERS_DOWN``, ``NOT_ENOUGH_REPLICAS(_AFTER_APPEND)``,
  ``LEADER_NOT_AVAILABLE``, ``NOT_LEADER_FOR_PARTITION``, purged on close, any other
  ``retriable()`` → UnavailableError;
- ``_QUEUE_FULL`` or ``BufferError`` (the local queue is full) → RateLimitedError (retry_after);
- ``*_AUTHORIZATION_FAILED``, ``SASL_AUTHENTICATION_FAILED``, ``_AUTHENTICATION`` → AuthError;
- producer-level (``fatal()``, ``PRODUCER_FENCED``, ``OUT_OF_ORDER_SEQUENCE_NUMBER``,
  ``UNKNOWN_PRODUCER_ID``, ``INVALID_PRODUCER_EPOCH``) → UnavailableError, producer replaced;
- ``MSG_SIZE_TOO_LARGE``, ``INVALID_RECORD``, ``UNKNOWN_TOPIC_OR_PART``, ``_UNKNOWN_TOPIC``,
  ``TOPIC_EXCEPTION``, ``POLICY_VIOLATION`` and anything else not retriable → FatalError.

A producer-level error says the producer instance is unusable, not that the message is bad, so
the message is retryable and the next send gets a fresh producer (a fresh producer id).  The same
happens after a delivery timeout: librdkafka's idempotence state is unsure then (a broker that
came back empty, as tansu's memory storage does, fences the old producer forever).  Messages name
the topic and the error code only; librdkafka's own text goes to ``details``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from junction.core.errors import (
    AuthError,
    ConfigError,
    FatalError,
    JunctionError,
    RateLimitedError,
    RemoteTimeoutError,
    UnavailableError,
)

# librdkafka's local queue is full: the broker is slow or away; back off briefly
QUEUE_FULL_RETRY_S = 0.5
# the future waits this much past message.timeout.ms: librdkafka's own report should come first
REPORT_GRACE_S = 5.0
POLL_INTERVAL_S = 0.05

_TIMEOUT_CODES = frozenset(
    {KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT}
)
_UNAVAILABLE_CODES = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.KAFKA_STORAGE_ERROR,
        KafkaError._PURGE_QUEUE,
        KafkaError._PURGE_INFLIGHT,
        KafkaError._DESTROY,
    }
)
_AUTH_CODES = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._AUTHENTICATION,
    }
)
_PRODUCER_CODES = frozenset(
    {
        KafkaError.PRODUCER_FENCED,
        KafkaError._FENCED,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.INVALID_PRODUCER_ID_MAPPING,
        KafkaError._GAPLESS_GUARANTEE,
        KafkaError._FATAL,
    }
)
_FATAL_MESSAGES = {
    KafkaError.MSG_SIZE_TOO_LARGE: "the message is larger than the producer or broker allows",
    KafkaError.INVALID_RECORD: "the broker rejected the record as invalid",
    KafkaError.UNKNOWN_TOPIC_OR_PART: "the topic does not exist and is not auto-created",
    KafkaError._UNKNOWN_TOPIC: "the topic does not exist and is not auto-created",
    KafkaError._UNKNOWN_PARTITION: "the partition does not exist",
    KafkaError.TOPIC_EXCEPTION: "the topic name is not valid on this cluster",
    KafkaError.RECORD_LIST_TOO_LARGE: "the batch is larger than the broker allows",
    KafkaError.POLICY_VIOLATION: "the broker's policy rejected the record",
}

_log = logging.getLogger("outbound.kafka.librdkafka")
# settings whose values never go into an error's details (librdkafka may quote a bad value)
_SECRET_SETTINGS = ("sasl.password", "ssl.key.password")


@dataclass(frozen=True, slots=True)
class Delivered:
    """Where the broker stored one record."""

    topic: str
    partition: int
    offset: int


def replaces_producer(err: KafkaError) -> bool:
    """Whether ``err`` leaves the producer instance unusable or unsure (replace it)."""
    return bool(err.fatal()) or err.code() in _PRODUCER_CODES or err.code() in _TIMEOUT_CODES


def classify(err: KafkaError, *, topic: str, duration_ms: float) -> JunctionError:
    """Translate one librdkafka error into the taxonomy (see the module table).

    Args:
        err: The error from a delivery report or a synchronous ``produce``.
        topic: The topic the record was for (kept in ``context``).
        duration_ms: How long the attempt took.

    Returns:
        The error to raise.
    """
    code = err.code()
    name = err.name()
    ctx: dict[str, object] = {
        "topic": topic,
        "kafka_error": name,
        "duration_ms": round(duration_ms, 3),
    }
    details = err.str()
    if code in _TIMEOUT_CODES:
        return RemoteTimeoutError(
            f"Kafka did not acknowledge the record for {topic!r} in time ({name}); will retry",
            details=details,
            context=ctx,
        )
    if code == KafkaError._QUEUE_FULL:
        return RateLimitedError(
            "the Kafka producer's local queue is full; will retry shortly",
            retry_after=QUEUE_FULL_RETRY_S,
            details=details,
            context=ctx,
        )
    if code in _AUTH_CODES:
        return AuthError(
            f"Kafka refused the credentials or ACLs for {topic!r} ({name}); fix the channel's "
            "security settings or the topic's ACLs",
            details=details,
            context=ctx,
        )
    if err.fatal() or code in _PRODUCER_CODES:
        return UnavailableError(
            f"the Kafka producer became unusable ({name}); a new producer takes the retry",
            details=details,
            context=ctx,
            code="producer_reset",
        )
    if code in _UNAVAILABLE_CODES or err.retriable():
        return UnavailableError(
            f"Kafka is unavailable for {topic!r} ({name}); will retry",
            details=details,
            context=ctx,
        )
    reason = _FATAL_MESSAGES.get(code, "Kafka rejected the record")
    return FatalError(f"{reason} ({name}, topic {topic!r})", details=details, context=ctx)


class _Handle:
    """One librdkafka producer and the thread that serves its callbacks."""

    def __init__(self, conf: dict[str, Any], on_error: Any) -> None:
        self.producer = Producer({**conf, "error_cb": on_error, "logger": _log})
        self.retired = False
        self.closed = False
        self._close_lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="junction-kafka-poll", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(POLL_INTERVAL_S)
            if self.retired and len(self.producer) == 0:
                # a replaced producer lingers only until its own sends are settled
                self.close()
                return

    def stop(self) -> None:
        """Stop serving callbacks from the thread (flush and close still serve them)."""
        self._stop.set()
        if self.thread is not threading.current_thread():
            self.thread.join(timeout=5)

    def close(self) -> None:
        """Close the producer once (it has nothing left to send by then)."""
        with self._close_lock:
            if self.closed:
                return
            self.closed = True
            self.producer.close()


class ProducerClient:
    """An idempotent producer behind an async ``produce``.

    Args:
        conf: librdkafka settings (secrets revealed; never logged).
        timeout_s: The delivery timeout (``message.timeout.ms``) in seconds.
        close_timeout_s: How long ``aclose`` waits for records in flight.

    The producer is created at once, so its producer id is being acquired (librdkafka checks
    every 500 ms until a broker is up) before the first record needs it.

    Raises:
        ConfigError: librdkafka refuses the settings.
    """

    def __init__(self, conf: dict[str, Any], *, timeout_s: float, close_timeout_s: float) -> None:
        self._conf = conf
        self._timeout_s = timeout_s
        self._close_timeout_s = close_timeout_s
        self._lock = threading.Lock()
        self._current: _Handle | None = None
        self._retiring: list[_Handle] = []
        # the last authentication failure librdkafka reported (it reaches only error_cb: the
        # records themselves just time out), cleared by the next acknowledged record
        self._auth_error: KafkaError | None = None
        self._secrets = [str(conf[k]) for k in _SECRET_SETTINGS if conf.get(k)]
        self._handle()

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "**********")
        return text

    def _handle(self) -> _Handle:
        with self._lock:
            if self._current is None:
                try:
                    self._current = _Handle(self._conf, self._on_error)
                except KafkaException as exc:
                    err = exc.args[0]
                    text = err.str() if isinstance(err, KafkaError) else str(exc)
                    raise ConfigError(
                        "librdkafka refused the Kafka channel's producer settings",
                        details=self._scrub(text),
                    ) from None
            return self._current

    def _retire(self, handle: _Handle, *, replace: bool = True) -> None:
        with self._lock:
            if handle.retired:
                return
            handle.retired = True
            self._retiring = [h for h in self._retiring if h.thread.is_alive()]
            self._retiring.append(handle)
            if self._current is not handle:
                return
            self._current = None
        if replace:
            # start the successor now: it acquires its producer id while the worker backs off
            with contextlib.suppress(ConfigError):
                self._handle()

    def _on_error(self, err: KafkaError) -> None:
        # runs on a poll thread: broker-down and transport errors only matter through the
        # delivery reports; a fatal error means this producer can send nothing more
        if err.code() in _AUTH_CODES:
            self._auth_error = err
        if err.fatal():
            with self._lock:
                current = self._current
            if current is not None:
                # no new producer from inside a librdkafka callback; the next send makes one
                self._retire(current, replace=False)

    async def produce(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
    ) -> Delivered:
        """Produce one record and wait for the broker's acknowledgement.

        Args:
            topic: The target topic.
            key: The message key (None: no key).
            value: The message value.
            headers: Message headers.

        Returns:
            Where the record was stored.

        Raises:
            JunctionError: Classified as in the module table.
        """
        loop = asyncio.get_running_loop()
        handle = self._handle()
        future: asyncio.Future[tuple[KafkaError | None, int, int]] = loop.create_future()
        started = time.perf_counter()
        try:
            handle.producer.produce(
                topic,
                value=value,
                key=key,
                headers=list(headers),
                on_delivery=functools.partial(_report, loop, future),
            )
        except BufferError:
            raise RateLimitedError(
                "the Kafka producer's local queue is full; will retry shortly",
                retry_after=QUEUE_FULL_RETRY_S,
                context={"topic": topic},
            ) from None
        except KafkaException as exc:
            err = exc.args[0]
            if not isinstance(err, KafkaError):  # pragma: no cover - librdkafka always sets it
                raise
            raise self._failed(err, handle, topic, started) from None
        try:
            err, partition, offset = await asyncio.wait_for(
                future, timeout=self._timeout_s + REPORT_GRACE_S
            )
        except TimeoutError:
            self._retire(handle)
            raise RemoteTimeoutError(
                f"no delivery report from Kafka for {topic!r} within the timeout; will retry",
                context={"topic": topic, "duration_ms": _ms(started)},
            ) from None
        if err is not None:
            auth_error = self._auth_error
            if auth_error is not None and err.code() in _TIMEOUT_CODES:
                # the record timed out because the brokers refused our credentials
                err = auth_error
            raise self._failed(err, handle, topic, started)
        self._auth_error = None
        return Delivered(topic=topic, partition=partition, offset=offset)

    def _failed(
        self, err: KafkaError, handle: _Handle, topic: str, started: float
    ) -> JunctionError:
        if replaces_producer(err):
            self._retire(handle)
        error = classify(err, topic=topic, duration_ms=_ms(started))
        if error.details:
            error.details = self._scrub(error.details)
        return error

    async def aclose(self) -> None:
        """Wait (bounded) for records in flight, fail the rest as retryable, stop the producers.

        Safe to call twice; a later ``produce`` starts a new producer.
        """
        with self._lock:
            handles = [h for h in (self._current, *self._retiring) if h is not None]
            self._current = None
            self._retiring = []
        for handle in handles:
            await asyncio.to_thread(handle.stop)
        deadline = time.monotonic() + self._close_timeout_s
        for handle in handles:
            if handle.closed:
                continue
            remaining = max(0.0, deadline - time.monotonic())
            left = await asyncio.to_thread(handle.producer.flush, remaining)
            if left:
                # what is still queued is failed now (retryable) instead of being lost silently
                handle.producer.purge(in_queue=True, in_flight=True)
                await asyncio.to_thread(handle.producer.flush, 1.0)
            handle.close()
        # the reports resolved futures through call_soon_threadsafe; let them run
        await asyncio.sleep(0)


def _report(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[tuple[KafkaError | None, int, int]],
    err: KafkaError | None,
    msg: Any,
) -> None:
    # called on a librdkafka poll thread (or inside flush): hand the outcome to the sender's loop
    partition = msg.partition() if msg is not None else -1
    offset = msg.offset() if msg is not None and err is None else -1
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(_settle, future, (err, partition, offset))


def _settle(
    future: asyncio.Future[tuple[KafkaError | None, int, int]],
    outcome: tuple[KafkaError | None, int, int],
) -> None:
    if not future.done():
        future.set_result(outcome)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)
