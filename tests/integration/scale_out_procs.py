"""Processes for the scale-out tests: a webhook receiver and a delivery worker.

``python -m tests.integration.scale_out_procs receiver PORT [DELAY_MS]`` answers every POST with
200 (after ``DELAY_MS``, a slow endpoint) and records each ``webhook-id`` with its arrival time;
``GET /stats`` returns them.

``python -m tests.integration.scale_out_procs deliver STORE BASE SECRET ENDPOINTS CONCURRENCY
LEASE_S`` runs the delivery loop exactly as ``junction serve`` runs it (``DeliveryService`` over
a ``TrackedOutbox``) with one ``WebhookChannel`` per endpoint (``webhook.e<k>`` posting to
``BASE/e<k>``), prints ``ready`` and delivers until SIGTERM; then it stops as the service does
(sends in flight finish, held leases are given back), prints ``delivered N`` and exits 0.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

Message = dict[str, Any]


class Receiver:
    """An ASGI app recording ``(webhook-id, arrival time)`` of every POST."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.ids: list[str] = []
        self.times: list[float] = []

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        while (await receive()).get("more_body"):
            pass
        if scope["method"] == "POST":
            self.ids.append(dict(scope["headers"]).get(b"webhook-id", b"").decode())
            self.times.append(time.time())
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            body = b""
        else:
            body = json.dumps({"ids": self.ids, "times": self.times}).encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def receiver(port: int, delay_s: float = 0.0) -> None:
    """Serve :class:`Receiver` on 127.0.0.1:``port`` until terminated."""
    import uvicorn

    uvicorn.run(
        Receiver(delay_s),
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


async def deliver(
    store_url: str, base: str, secret: str, endpoints: int, concurrency: int, lease_s: float
) -> int:
    """Deliver from the outbox at ``store_url`` until SIGTERM; return the exit code."""
    from junction.pipeline.config import DeliveryConfig
    from junction.serve.outbox import DeliveryService, TrackedOutbox
    from junction.store.repo import Store
    from outbound.egress import EgressPolicy
    from outbound.webhook import WebhookChannel, WebhookConfig

    egress = EgressPolicy(["127.0.0.0/8"])
    channels: dict[str, Any] = {
        f"webhook.e{k}": WebhookChannel(
            WebhookConfig.model_validate(
                {"url": f"{base}/e{k}", "secret": secret, "timeout_s": lease_s / 4}
            ),
            egress=egress,
        )
        for k in range(endpoints)
    }
    policy = DeliveryConfig(
        concurrency=concurrency,
        per_endpoint_concurrency=max(1, concurrency // endpoints),
        lease_s=lease_s,
        schedule_s=[60.0],
    )
    store = Store.open(store_url)
    outbox = TrackedOutbox(store)
    service = DeliveryService(outbox, channels, policy)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, service.stopping.set)
    service.start()
    print("ready", flush=True)
    await service.stopping.wait()
    finished = await service.stop(10.0)
    outbox.release_held()
    await service.aclose()
    store.close()
    print(f"delivered {service.worker.stats.delivered}", flush=True)
    return 0 if finished else 1


def main(argv: list[str]) -> int:
    """Dispatch on the first argument (``receiver`` or ``deliver``)."""
    if argv[0] == "receiver":
        receiver(int(argv[1]), float(argv[2]) / 1000 if len(argv) > 2 else 0.0)
        return 0
    store_url, base, secret, endpoints, concurrency, lease_s = argv[1:7]
    # plain asyncio, as ``junction serve`` runs
    return asyncio.run(
        deliver(store_url, base, secret, int(endpoints), int(concurrency), float(lease_s))
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
