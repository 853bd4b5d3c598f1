"""The ``email_sendgrid`` channel: each delivery becomes one email sent through SendGrid.

The SDK blocks (urllib), so sends run on the channel's own thread pool of ``max_in_flight``
threads: a slow SendGrid holds those threads only, never the event loop's default executor.
``timeout_s`` bounds each send as a whole: the caller gets a RemoteTimeoutError when it passes,
and the thread's slot stays taken until the SDK's socket timeout (the same value) ends it, so no
more than ``max_in_flight`` requests are ever open.  The channel never retries; SendGrid has no
idempotency key, so the worker's retry after a timeout may send a second copy (the
``delivery_id`` custom arg lets the reader's mail client or SendGrid's events tell them apart).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from junction.core.errors import InternalError, RemoteTimeoutError
from outbound.base import Delivery, Receipt, Recipient
from outbound.config_errors import validate_config
from outbound.email_sendgrid.client import SendGridClient, Sent
from outbound.email_sendgrid.config import SendGridEmailConfig
from outbound.email_sendgrid.message import build_message, event_recipients
from outbound.lifecycle import ClosesOnExit
from outbound.templates import event_context


class SendGridEmailChannel(ClosesOnExit):
    """Email through SendGrid's v3 Mail Send API, one personalization per recipient.

    Args:
        config: The channel config, or a mapping validated into one.

    Raises:
        ConfigError: ``config`` is a mapping that does not validate.
    """

    name: ClassVar[str] = "email_sendgrid"
    config_model: ClassVar[type[SendGridEmailConfig]] = SendGridEmailConfig
    # one Mail Send per delivery, whose events echo the delivery id (outbound.base)
    reported_sends: ClassVar[bool] = True

    def __init__(self, config: SendGridEmailConfig | Mapping[str, Any]) -> None:
        self.config = config = validate_config(SendGridEmailConfig, config, kind="email_sendgrid")
        self._client = SendGridClient(
            config.api_key.get_secret_value(), str(config.host), timeout_s=config.timeout_s
        )
        self._pool: ThreadPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"SendGridEmailChannel(host={str(self.config.host)!r})"

    def recipients(self, delivery: Delivery) -> list[Recipient]:
        """Everyone ``delivery`` would reach (before ``exclude``), as normalized addresses.

        Raises:
            RecordError: It names no valid address.
        """
        event = event_context(delivery.payload)
        return [Recipient("email", a) for a in event_recipients(self.config, event)]

    def _open(self) -> tuple[ThreadPoolExecutor, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None and not self._loop.is_closed():
                raise InternalError(
                    "email channel used from a second event loop; call aclose() first"
                )
            self._slots = asyncio.Semaphore(self.config.max_in_flight)
            self._loop = loop
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self.config.max_in_flight, thread_name_prefix="sendgrid"
            )
        assert self._slots is not None
        return self._pool, self._slots

    async def send(self, delivery: Delivery) -> Receipt:
        """Render and send one delivery; SendGrid's 202 gives a Receipt.

        Args:
            delivery: The message; addresses in ``delivery.exclude`` are never sent to.

        Returns:
            A Receipt with ``remote_id`` = SendGrid's X-Message-Id.

        Raises:
            RecordError: No recipient is left, or the template needs a field the event lacks.
            AuthError: 401 (the API key).
            FatalError: 400, 403, 413 and other 4xx, or a template the channel lacks.
            RateLimitedError: 429, with ``retry_after``.
            UnavailableError: 408, 5xx, or no connection.
            RemoteTimeoutError: No answer within ``timeout_s``.
        """
        message = build_message(self.config, delivery)
        pool, slots = self._open()
        await slots.acquire()
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        future = loop.run_in_executor(pool, self._client.send, message)

        def release(done: asyncio.Future[Sent]) -> None:
            if not done.cancelled():
                done.exception()  # retrieved: a late failure is not reported as unhandled
            slots.release()

        try:
            sent: Sent = await asyncio.wait_for(
                asyncio.shield(future), timeout=self.config.timeout_s
            )
        except TimeoutError:
            # the thread still holds its connection: its slot frees only when it ends
            future.add_done_callback(release)
            raise RemoteTimeoutError(
                "SendGrid did not answer within the timeout",
                context={"duration_ms": round((time.perf_counter() - started) * 1000.0, 3)},
            ) from None
        except BaseException:
            future.add_done_callback(release)
            raise
        slots.release()
        return Receipt(
            delivery_id=delivery.delivery_id,
            status_code=sent.status_code,
            remote_id=sent.message_id,
            duration_ms=sent.duration_ms,
            detail={"recipients": len(message.to), "excluded": len(delivery.exclude)},
        )

    async def aclose(self) -> None:
        """Let go of the worker threads; safe to call twice (a later send starts new ones)."""
        pool, self._pool = self._pool, None
        self._slots = None
        self._loop = None
        if pool is not None:
            # threads still waiting on SendGrid end at their socket timeout; do not block on them
            pool.shutdown(wait=False, cancel_futures=True)
