"""kill -9 of the delivery worker after SendGrid's 202, before the send is recorded (RELIABILITY
case 59), through the real sendgrid SDK, the local SendGrid fake and the API's signed event
webhook, on SQLite and PostgreSQL.

The delivery id travels in the message's ``custom_args`` (and its ``X-Junction-Delivery-Id``
header). When SendGrid's event about the message has arrived before the restarted worker takes
the delivery up again, the worker records it delivered and does not send it again. When no event
has arrived yet, it sends once more: the duplicate is bounded to one per crash and carries the
same delivery id, by which a receiver (or SendGrid's event stream) tells the two apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from junction.store.repo import Store
from tests.api.harness import ApiHarness, running_channels_api
from tests.contract.channels.email_sendgrid import options_for
from tests.fakes.sendgrid import SendGridFake
from tests.fakes.sendgrid_events import EventSigner, event, events_body
from tests.integration.delivery_support import deliver_child, enqueue, kill_at_recording
from tests.integration.helpers import rows_of

CH = "email_sendgrid.sales"
DID = "leads:L-7:email_sendgrid_sales"
PAYLOAD = {
    "type": "lead.scored",
    "record_id": "leads:L-7",
    "pipeline": "leads",
    "record": {"company": "Initech", "email": "peter@initech.example"},
    "score": {"value": 0.91, "grade": "A"},
}


@pytest.fixture
def hub(tmp_path: Path, store_url: str, fake: SendGridFake, signer: EventSigner) -> Iterator[Any]:
    """The API (for SendGrid's events) and the channel options the worker processes use."""
    options = {**options_for(fake.base), "event_public_key": signer.public_key_b64}
    channels = tmp_path / "channels.json"
    channels.write_text(json.dumps({CH: options}), encoding="utf-8")
    with running_channels_api(tmp_path, store_url, {CH: options}) as api:
        yield api, channels


def send_and_kill(api: ApiHarness, channels: Path, fake: SendGridFake, tmp_path: Path) -> None:
    """A worker sends the delivery, SendGrid answers 202, the worker dies before recording it."""
    store_url = api.ctx.cfg.store
    store = Store.open(store_url)
    try:
        enqueue(store, CH, [DID], payload=PAYLOAD)
    finally:
        store.close()
    marker = tmp_path / "recording"

    def accepted() -> None:  # SendGrid answered 202; the store has not recorded it
        assert [r.delivery_id for r in fake.accepted()] == [DID]

    kill_at_recording(
        deliver_child(store_url, "-", "-", "hang", marker, channels), marker, accepted
    )
    assert rows_of(store_url, "SELECT status, attempts FROM deliveries") == [("pending", 0)]


def restart(api: ApiHarness, channels: Path, tmp_path: Path) -> None:
    again = deliver_child(api.ctx.cfg.store, "-", "-", "normal", tmp_path / "unused", channels)
    assert again.wait(timeout=60) == 0, again.stderr.read().decode() if again.stderr else ""


def post_events(api: ApiHarness, signer: EventSigner, events: list[dict[str, Any]]) -> None:
    body = events_body(events)
    with httpx.Client(base_url=api.base_url, timeout=30) as h:
        r = h.post("/callbacks/sendgrid/sales", content=body, headers=signer.headers(body))
    assert r.status_code == 200, r.text


def test_a_send_sendgrid_reported_is_recorded_not_sent_again(
    hub: Any, fake: SendGridFake, signer: EventSigner, tmp_path: Path
) -> None:
    api, channels = hub
    send_and_kill(api, channels, fake, tmp_path)
    [sent] = fake.accepted()
    assert sent.headers.get("authorization")  # the SDK's own request, not a copy
    assert sent.body["custom_args"]["delivery_id"] == DID
    # SendGrid's first event about the message names it by the delivery id it echoes
    message_id = sent.message_id
    post_events(
        api,
        signer,
        [event("processed", "sales@example.com", delivery_id=DID, message_id=message_id)],
    )
    store_url = api.ctx.cfg.store
    assert rows_of(store_url, "SELECT remote_status FROM deliveries") == [("processed",)]
    restart(api, channels, tmp_path)
    assert [r.delivery_id for r in fake.accepted()] == [DID]  # not sent a second time
    assert rows_of(store_url, "SELECT status, attempts FROM deliveries") == [("delivered", 1)]
    [(n, outcome, note)] = rows_of(store_url, "SELECT attempt_no, outcome, error FROM attempts")
    assert (n, outcome) == (1, "delivered")
    assert "reported by the provider (processed)" in note


def test_without_an_event_the_resend_is_one_duplicate_with_the_same_delivery_id(
    hub: Any, fake: SendGridFake, tmp_path: Path
) -> None:
    api, channels = hub
    send_and_kill(api, channels, fake, tmp_path)
    restart(api, channels, tmp_path)
    accepted = fake.accepted()
    assert [r.delivery_id for r in accepted] == [DID, DID]  # at most one duplicate per crash
    assert {r.headers.get("x-junction-delivery-id") for r in accepted} <= {DID, None}
    store_url = api.ctx.cfg.store
    assert rows_of(store_url, "SELECT status, attempts FROM deliveries") == [("delivered", 1)]
    assert rows_of(store_url, "SELECT attempt_no, outcome FROM attempts") == [(1, "delivered")]
