"""A local Slack speaking both posting wire formats: incoming webhooks and ``chat.postMessage``.

* ``POST /services/T000/B000/XXXX`` (an incoming webhook): a JSON body with ``text`` and/or
  ``blocks``; answers ``200 ok`` (text/html, as Slack does) or a 4xx with Slack's plain-text
  error code (``invalid_payload``, ``no_text``, ``channel_is_archived`` ...).
* ``POST /api/chat.postMessage``: ``Authorization: Bearer <token>`` and a JSON body with
  ``channel``; answers HTTP 200 with ``{"ok": true, "channel", "ts", "message"}`` or
  ``{"ok": false, "error": ...}`` (``invalid_auth``, ``channel_not_found``, ``no_text`` ...).

``Faults`` (``tests.fakes.server``) is consulted after a message is read: ``client_error`` →
webhook 400 ``invalid_payload`` / API ``{"ok": false, "error": "invalid_arguments"}``;
``server_error`` → webhook 500 ``rollup_error`` / API 503 ``service_unavailable``;
``rate_limit`` → 429 + Retry-After (API body ``ratelimited``); ``timeout`` (the contract's
``hang``) → the answer waits until ``release()`` or ``HANG_S``.  ``answer_next`` queues one
exact answer (status, body) for the error-mapping tests.  Every message Slack would have accepted
(and every faulted one, which a real server may have posted) is kept in ``messages``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response

from tests.fakes.server import Faults

WEBHOOK_PATH = "/services/T000/B000/XXXX"
BOT_TOKEN = "xoxb-000000000000-0000000000000-fakefakefakefakefake0000"
CHANNELS = {"C0SALES01": "sales", "C0ARCHIVE": "old-leads"}
ARCHIVED = {"C0ARCHIVE"}
HANG_S = 20.0


@dataclass
class Received:
    """One message as Slack received it."""

    mode: str  # "webhook" or "api"
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def delivery_id(self) -> str | None:
        """The delivery id from the message metadata, as a receiver reads it for dedupe."""
        meta = self.body.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("event_payload"), dict):
            value = meta["event_payload"].get("delivery_id")
            return value if isinstance(value, str) else None
        return None


@dataclass
class FakeSlack:
    """The fake's state and its FastAPI app (``app``)."""

    token: str = BOT_TOKEN
    faults: Faults = field(default_factory=lambda: Faults(delay_s=HANG_S, retry_after_s=7.0))
    messages: list[Received] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    _answers: list[tuple[int, bytes, dict[str, str]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    app: FastAPI = field(init=False)

    def __post_init__(self) -> None:
        self.app = FastAPI()
        self.app.add_api_route(WEBHOOK_PATH, self.webhook, methods=["POST"])
        self.app.add_api_route("/api/chat.postMessage", self.post_message, methods=["POST"])

    def answer_next(self, status: int, body: str | dict[str, Any], **headers: str) -> None:
        """Answer the next request with exactly this (after recording it)."""
        raw = json.dumps(body).encode() if isinstance(body, dict) else body.encode()
        with self._lock:
            self._answers.append((status, raw, headers))

    def release(self) -> None:
        """Let every hanging request answer now."""
        self.released.set()

    def seen_ids(self) -> list[str]:
        """The delivery ids read off the received messages' metadata, in order."""
        with self._lock:
            return [m.delivery_id for m in self.messages if m.delivery_id is not None]

    def _queued(self) -> tuple[int, bytes, dict[str, str]] | None:
        with self._lock:
            return self._answers.pop(0) if self._answers else None

    def _record(self, mode: str, body: dict[str, Any], request: Request) -> None:
        with self._lock:
            self.messages.append(Received(mode, body, dict(request.headers)))

    async def _hang(self) -> None:
        waited = 0.0
        while not self.released.is_set() and waited < HANG_S:
            await asyncio.sleep(0.05)
            waited += 0.05

    async def webhook(self, request: Request) -> Response:
        """An incoming webhook: bound to one channel, answers in plain text."""
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _text(400, "invalid_payload")
        if not isinstance(body, dict):
            return _text(400, "invalid_payload")
        self._record("webhook", body, request)
        queued = self._queued()
        if queued is not None:
            return Response(queued[1], status_code=queued[0], headers=queued[2])
        fault = self.faults.take(request.url.path)
        if fault == "client_error":
            return _text(400, "invalid_payload")
        if fault == "server_error":
            return _text(500, "rollup_error")
        if fault == "rate_limit":
            return _text(429, "rate_limited", {"Retry-After": str(int(self.faults.retry_after_s))})
        if fault == "timeout":
            await self._hang()
        if not body.get("text") and not body.get("blocks"):
            return _text(400, "no_text")
        if "blocks" in body and not _valid_blocks(body["blocks"]):
            return _text(400, "invalid_blocks")
        return _text(200, "ok")

    async def post_message(self, request: Request) -> Response:
        """chat.postMessage: Bearer auth, JSON in, ``{"ok": ...}`` out (HTTP 200 on errors)."""
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return _api(
                {
                    "ok": False,
                    "error": "not_authed"
                    if "authorization" not in request.headers
                    else "invalid_auth",
                }
            )
        if not request.headers.get("content-type", "").startswith("application/json"):
            return _api({"ok": False, "error": "invalid_form_data"})
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _api({"ok": False, "error": "invalid_json"})
        if not isinstance(body, dict):
            return _api({"ok": False, "error": "invalid_json"})
        self._record("api", body, request)
        queued = self._queued()
        if queued is not None:
            return Response(
                queued[1], status_code=queued[0], headers=queued[2], media_type="application/json"
            )
        fault = self.faults.take(request.url.path)
        if fault == "client_error":
            return _api({"ok": False, "error": "invalid_arguments"})
        if fault == "server_error":
            return _api({"ok": False, "error": "service_unavailable"}, status=503)
        if fault == "rate_limit":
            return _api(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(int(self.faults.retry_after_s))},
            )
        if fault == "timeout":
            await self._hang()
        channel = body.get("channel")
        if channel not in CHANNELS:
            return _api({"ok": False, "error": "channel_not_found"})
        if channel in ARCHIVED:
            return _api({"ok": False, "error": "is_archived"})
        if not body.get("text") and not body.get("blocks"):
            return _api({"ok": False, "error": "no_text"})
        if "blocks" in body and not _valid_blocks(body["blocks"]):
            return _api({"ok": False, "error": "invalid_blocks"})
        if len(body.get("text") or "") > 40_000:
            return _api({"ok": False, "error": "msg_too_long"})
        ts = f"1700000000.{next(self._ts):06d}"
        message = {
            "type": "message",
            "subtype": "bot_message",
            "text": body.get("text", ""),
            "ts": ts,
            "bot_id": "B0FAKE",
        }
        if "blocks" in body:
            message["blocks"] = body["blocks"]
        if "metadata" in body:
            message["metadata"] = body["metadata"]
        return _api({"ok": True, "channel": channel, "ts": ts, "message": message})


def _valid_blocks(blocks: Any) -> bool:
    return isinstance(blocks, list) and all(
        isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks
    )


def _text(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    return Response(text, status_code=status, media_type="text/html", headers=headers)


def _api(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(body), status_code=status, media_type="application/json", headers=headers
    )
