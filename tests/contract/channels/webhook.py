"""Channel contract fixture: ``webhook`` against a verifying Standard Webhooks receiver.

The receiver is a FastAPI app on 127.0.0.1 (``serve_app``): it checks the ``authorization``
header and the ``webhook-signature`` on the raw body with the standardwebhooks library, records
every verified ``webhook-id`` as the idempotency key read off the wire, and then serves the faults
queued in ``Faults``: ``client_error`` → 422, ``server_error`` → 503, ``timeout`` (the contract's
``hang``) → no answer until the fixture ends.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from fastapi import FastAPI, Request, Response
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from outbound.base import Delivery
from tests.contract.channel_support import ChannelContract, faults_contract, lead_delivery
from tests.fakes.server import Faults, serve_app

SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
TOKEN = "Bearer rcv-token-4f1d9a7c0b2e"
HANG_S = 20.0  # the longest a hung request waits (the fixture's exit releases it sooner)


class Receiver:
    """A webhook receiver that verifies, records ids, and fails on demand."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.faults = Faults(delay_s=HANG_S)
        self.released = threading.Event()
        self._lock = threading.Lock()
        self._verifier = Webhook(SECRET)
        self.app = FastAPI()
        self.app.add_api_route("/hooks/lead", self.handle, methods=["POST"])

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        if request.headers.get("authorization") != TOKEN:
            return Response(status_code=401)
        try:
            self._verifier.verify(body, dict(request.headers))
        except WebhookVerificationError:
            return Response(status_code=401)
        with self._lock:
            self.ids.append(request.headers["webhook-id"])
        fault = self.faults.take(request.url.path)
        if fault == "client_error":
            problem = {"title": "Unprocessable", "detail": "lead has no owner"}
            return Response(orjson.dumps(problem), status_code=422, media_type="application/json")
        if fault == "server_error":
            return Response(b"upstream down", status_code=503)
        if fault == "timeout":
            waited = 0.0
            while not self.released.is_set() and waited < HANG_S:
                await asyncio.sleep(0.05)
                waited += 0.05
        return Response(b'{"status":"accepted"}', media_type="application/json")

    def seen_ids(self) -> list[str]:
        with self._lock:
            return list(self.ids)


RECORD = {"external_id": "L-1001", "email": "ada@example.com", "company": "Initech"}


def _delivery(delivery_id: str) -> Delivery:
    return lead_delivery(delivery_id, "webhook.sales", RECORD)


@contextmanager
def contract(tmp_path: Path) -> Iterator[ChannelContract]:
    """The webhook channel's contract inputs, against a live receiver."""
    receiver = Receiver()
    with serve_app(receiver.app) as base:
        options = {
            "url": f"{base}/hooks/lead",
            "secret": SECRET,
            "headers": {"authorization": TOKEN},
            "timeout_s": 5,
        }
        try:
            yield faults_contract(
                options,
                _delivery,
                receiver.seen_ids,
                receiver.faults,
                secrets=[SECRET, SECRET.removeprefix("whsec_"), TOKEN, TOKEN.split()[1]],
                bad_options=[
                    {**options, "secret": SECRET[:-4]},  # too short a key
                    {**options, "headers": {"authorization": TOKEN + "\r\nX-Evil: 1"}},
                ],
            )
        finally:
            receiver.released.set()
