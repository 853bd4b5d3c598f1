"""ASGI middleware: request bodies over a limit are answered 413 before they are buffered.

A declared ``Content-Length`` over the limit is refused before the app reads a byte (and before
a client waiting on ``Expect: 100-continue`` is told to send); a body without one (chunked) is
counted as it streams in and cut off at the limit.  Limits are per exact path (each inbound hook
has its own) with a default for every other route.  No byte past the limit reaches the app.

How the connection ends: a body of unknown or very large size, or one the client holds back
(``Expect: 100-continue``), is cut off with ``Connection: close``.  A declared body at most
``drain_bytes`` over the limit keeps the connection: the server reads and discards the rest (the
app never sees it), so the client, which is still sending, reliably reads the 413 rather than a
reset from a socket closed under its unread upload.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from junction.core.logging import get_logger

log = get_logger(__name__)


DRAIN_BYTES = 1_048_576


def _declared_length(scope: Scope) -> tuple[int | None, bool]:
    length: int | None = None
    expects = False
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            # the HTTP parser has already refused malformed or conflicting values
            length = int(value)
        elif name == b"expect" and value.lower() == b"100-continue":
            expects = True
    return length, expects


class BodyLimitMiddleware:
    """Refuse request bodies larger than their path's limit with a 413 problem."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        default_limit: int,
        path_limits: Mapping[str, int] | None = None,
        drain_bytes: int = DRAIN_BYTES,
    ) -> None:
        """``path_limits`` maps exact paths (e.g. ``/hooks/partner``) to their own limit."""
        self.app = app
        self.default_limit = default_limit
        self.path_limits = dict(path_limits or {})
        self.drain_bytes = drain_bytes

    def limit_for(self, path: str) -> int:
        """The body limit that applies to ``path``."""
        return self.path_limits.get(path, self.default_limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self.limit_for(path)
        declared, expects_continue = _declared_length(scope)
        if declared is not None and declared > limit:
            log.info("request body refused", path=path, declared=declared, limit=limit)
            close = expects_continue or declared - limit > self.drain_bytes
            await _send_413(scope, send, limit, close=close)
            return

        received = 0
        refused = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    log.info("request body cut off", path=path, received=received, limit=limit)
                    if not started:
                        await _send_413(scope, send, limit, close=True)
                    # the app sees a client that went away; whatever it answers is dropped
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise
            # the app failed because we cut its body off (it saw a disconnect); 413 is answered


async def _send_413(scope: Scope, send: Send, limit: int, *, close: bool) -> None:
    body: dict[str, object] = {
        "type": "https://junction.dev/problems/body_too_large",
        "title": "Payload Too Large",
        "status": 413,
        "detail": f"the request body is larger than {limit} bytes",
        "code": "body_too_large",
    }
    request_id = scope.get("state", {}).get("request_id")
    if request_id:
        body["request_id"] = request_id
    raw = orjson.dumps(body)
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(raw)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": raw})
