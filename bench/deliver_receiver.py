"""The webhook receiver ``bench deliver`` posts to: a bare ASGI app under uvicorn (httptools,
uvloop), in its own process pinned to one CPU.

It answers every POST with an empty 200 (keep-alive), records each ``webhook-id`` under the first
path segment (``/hub/3`` → ``hub``), and checks the Standard Webhooks signature of one request in
``VERIFY_EVERY`` against ``BENCH_DELIVER_SECRET`` (all of them would make the receiver the
bottleneck).  ``GET /stats`` returns ``{phase: {"ids": [...], "bad_signatures": n}}``;
``POST /reset`` forgets everything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sys
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

VERIFY_EVERY = 16
_EMPTY_200 = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
_EMPTY_BODY = {"type": "http.response.body", "body": b""}


class Receiver:
    """Records webhook ids per phase; verifies a sample of signatures."""

    def __init__(self, secret: str) -> None:
        self.key = base64.b64decode(secret.removeprefix("whsec_"))
        self.ids: dict[str, list[str]] = defaultdict(list)
        self.bad: dict[str, int] = defaultdict(int)

    def _verify(self, headers: dict[bytes, bytes], body: bytes) -> bool:
        signed = headers[b"webhook-id"] + b"." + headers[b"webhook-timestamp"] + b"." + body
        want = base64.b64encode(hmac.new(self.key, signed, hashlib.sha256).digest())
        return any(
            hmac.compare_digest(want, part.partition(b",")[2])
            for part in headers.get(b"webhook-signature", b"").split(b" ")
            if part.startswith(b"v1,")
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        path = scope["path"]
        if scope["method"] == "POST" and path != "/reset":
            body = b"".join(chunks)
            headers = dict(scope["headers"])
            phase = path.split("/", 2)[1]
            ids = self.ids[phase]
            ids.append(headers.get(b"webhook-id", b"").decode())
            if len(ids) % VERIFY_EVERY == 0 and not self._verify(headers, body):
                self.bad[phase] += 1
            await send(_EMPTY_200)
            await send(_EMPTY_BODY)
            return
        if path == "/reset":
            self.ids.clear()
            self.bad.clear()
            answer = b"{}"
        else:
            answer = json.dumps(
                {p: {"ids": ids, "bad_signatures": self.bad[p]} for p, ids in self.ids.items()}
            ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(answer)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})


def main(argv: list[str]) -> None:
    """``python -m bench.deliver_receiver PORT CPU`` (secret in ``BENCH_DELIVER_SECRET``)."""
    import uvicorn

    port, cpu = int(argv[0]), int(argv[1])
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[cpu % len(cpus)]})
    except (AttributeError, OSError):
        pass
    uvicorn.run(
        Receiver(os.environ["BENCH_DELIVER_SECRET"]),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="on",
        backlog=4096,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
