"""Sink request handling: verify on raw bytes, limit size, dedupe durably, inject faults.

``SinkApp`` holds the state and the aiohttp handlers; ``outbound.webhook.sink`` runs it in a thread
or in the foreground.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from junction.core.errors import ConfigError
from outbound.webhook.config import secret_key_bytes
from outbound.webhook.journal import Journal

_OK = b'{"status":"accepted"}'
_DUP = b'{"status":"duplicate"}'


@dataclass
class SinkFaults:
    """Fault injection knobs; change them while the sink runs (plain attribute writes).

    Faults apply to verified requests only, so a bad signature is always a 401.
    """

    fail_first: int = 0  # answer 500 to the first N attempts of each webhook-id
    status: int | None = None  # answer this status (a 2xx still stores the delivery)
    retry_after: str | None = None  # Retry-After value sent with ``status``
    delay_s: float = 0.0  # wait this long before answering
    redirect_to: str | None = None  # answer 308 with this Location instead


@dataclass
class SinkStats:
    """Counters; ``received == verified + rejected`` once requests have finished."""

    received: int = 0
    verified: int = 0
    rejected: int = 0  # 401 bad signature, 413 too large, 400 not JSON
    unique: int = 0  # new deliveries appended to the file
    duplicates: int = 0  # verified again after being stored
    injected: int = 0  # answered with an injected fault


class SinkApp:
    """The sink's state and aiohttp handlers, independent of how the loop is run.

    Args:
        secret: The whsec_ secret requests must be signed with, or several (a rotation).
        out_path: The JSONL file of accepted deliveries.
        max_body_bytes: Larger bodies get 413 without being buffered.
        faults: Fault injection knobs.

    Raises:
        ConfigError: No secret, or a secret not in the whsec_ format.
    """

    def __init__(
        self,
        secret: str | Sequence[str],
        out_path: str | os.PathLike[str],
        *,
        max_body_bytes: int = 1_048_576,
        faults: SinkFaults | None = None,
    ) -> None:
        secrets_ = [secret] if isinstance(secret, str) else list(secret)
        if not secrets_:
            raise ConfigError("the webhook sink needs at least one secret")
        for value in secrets_:
            try:
                secret_key_bytes(value)
            except ValueError as exc:
                raise ConfigError(f"invalid sink secret: {exc}") from None
        self._verifiers = [Webhook(value) for value in secrets_]
        self.max_body_bytes = max_body_bytes
        self.faults = faults or SinkFaults()
        self.counters = SinkStats()
        self.journal = Journal(out_path)
        self._seen: set[str] = set()
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._attempts: dict[str, int] = {}

    def stats(self) -> dict[str, int]:
        """Return a snapshot of the counters."""
        return asdict(self.counters)

    async def start(self, host: str, port: int) -> tuple[web.AppRunner, int]:
        """Open the journal, bind and listen; return the runner and the bound port."""
        self._seen = self.journal.open()
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_get("/stats", self._handle_stats)
        app.router.add_post("/{tail:.*}", self._handle_post)
        # no access log: it would cost more than the handler and could record personal data
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        bound = int(runner.addresses[0][1])
        return runner, bound

    async def stop(self, runner: web.AppRunner) -> None:
        """Stop listening, flush pending lines and close the journal."""
        await runner.cleanup()
        await self.journal.drain()
        self.journal.close()

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.stats()), content_type="application/json")

    def _reject(self, status: int, reason: str) -> web.Response:
        self.counters.rejected += 1
        return web.Response(
            status=status, body=orjson.dumps({"error": reason}), content_type="application/json"
        )

    def _verify(self, body: bytes, headers: dict[str, str]) -> bool:
        for verifier in self._verifiers:
            try:
                verifier.verify(body, headers, json_parse=False)
            # ValueError: a malformed signature list, bad base64 or a body that is not UTF-8
            except (WebhookVerificationError, ValueError):
                continue
            return True
        return False

    async def _handle_post(self, request: web.Request) -> web.Response:
        self.counters.received += 1
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            return self._reject(413, "body_too_large")
        try:
            # reads chunk by chunk and stops past client_max_size (covers chunked bodies too)
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._reject(413, "body_too_large")
        get = request.headers.get
        headers = {
            "webhook-id": get("webhook-id", ""),
            "webhook-timestamp": get("webhook-timestamp", ""),
            "webhook-signature": get("webhook-signature", ""),
        }
        if not self._verify(body, headers):
            return self._reject(401, "invalid_signature")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._reject(400, "body_not_json")
        self.counters.verified += 1
        webhook_id = headers["webhook-id"]
        faults = self.faults
        if faults.delay_s > 0:
            await asyncio.sleep(faults.delay_s)
        if faults.redirect_to:
            self.counters.injected += 1
            return web.Response(status=308, headers={"Location": faults.redirect_to})
        status = faults.status
        if status is not None and not 200 <= status < 300:
            self.counters.injected += 1
            extra = {"Retry-After": faults.retry_after} if faults.retry_after else None
            return web.Response(status=status, headers=extra)
        if faults.fail_first > 0:
            attempt = self._attempts[webhook_id] = self._attempts.get(webhook_id, 0) + 1
            if attempt <= faults.fail_first:
                self.counters.injected += 1
                return web.Response(status=500, text="injected failure")
        # the sender's trace (W3C Trace Context), kept so a receiver can continue it (ADR-0022)
        trace = get("traceparent")
        return await self._store(webhook_id, doc, status or 200, trace)

    async def _store(
        self, webhook_id: str, doc: Any, status: int, trace: str | None = None
    ) -> web.Response:
        if webhook_id in self._seen:
            self.counters.duplicates += 1
            return web.Response(status=status, body=_DUP, content_type="application/json")
        pending = self._inflight.get(webhook_id)
        is_new = pending is None
        if pending is None:
            received_at = datetime.now(UTC).isoformat(timespec="milliseconds")
            entry = {"webhook_id": webhook_id, "received_at": received_at, "body": doc}
            if trace:
                entry["traceparent"] = trace[:55]  # version-00 traceparent is 55 characters
            line = orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE)
            pending = self.journal.append(line)
            # a concurrent retry of the same id waits on this write instead of adding a line
            self._inflight[webhook_id] = pending
            pending.add_done_callback(lambda fut: self._settle(webhook_id, fut))
        try:
            await asyncio.shield(pending)
        except OSError:
            return web.Response(status=500, text="could not store the delivery")
        if is_new:
            self.counters.unique += 1
            return web.Response(status=status, body=_OK, content_type="application/json")
        self.counters.duplicates += 1
        return web.Response(status=status, body=_DUP, content_type="application/json")

    def _settle(self, webhook_id: str, fut: asyncio.Future[None]) -> None:
        self._inflight.pop(webhook_id, None)
        if not fut.cancelled() and fut.exception() is None:
            self._seen.add(webhook_id)
