"""Bounces end to end: the delivery worker sends through the real sendgrid SDK to the local fake,
SendGrid's signed event webhook reports a bounce, and every later delivery to that address is
suppressed (or sent without it) by the worker's suppression gate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from junction.core.pseudonym import Pseudonymizer
from junction.pipeline.config import DeliveryConfig
from junction.pipeline.state import state_dir
from junction.pipeline.suppression_gate import SuppressionGate
from junction.store.suppressions import SuppressionList
from outbound.email_sendgrid import SendGridEmailChannel
from tests.api.harness import ApiHarness, running_channels_api
from tests.contract.channels.email_sendgrid import options_for
from tests.fakes.sendgrid import SendGridFake
from tests.fakes.sendgrid_events import EventSigner, event, events_body
from tests.integration.delivery_support import enqueue, run_worker
from tests.integration.helpers import rows_of

CH = "email_sendgrid.sales"


@pytest.fixture
def hub_api(
    tmp_path: Path, store_url: str, fake: SendGridFake, signer: EventSigner
) -> Iterator[ApiHarness]:
    options = {
        **options_for(fake.base),
        "to": [],
        "to_path": "record.email",
        "event_public_key": signer.public_key_b64,
    }
    with running_channels_api(tmp_path, store_url, {CH: options}) as h:
        yield h


def _payload(email: Any) -> dict[str, Any]:
    return {
        "type": "lead.scored",
        "record_id": "leads:csv:L-1",
        "pipeline": "leads",
        "record": {"company": "Initech", "email": email},
        "score": {"value": 0.9, "grade": "A"},
    }


def _send_all(h: ApiHarness, sl: SuppressionList) -> None:
    channel = SendGridEmailChannel(h.ctx.cfg.channels[CH])
    run_worker(
        h.ctx.store, {CH: channel}, DeliveryConfig(), drain_wait_s=0, gates=[SuppressionGate(sl)]
    )


def _row(store_url: str, delivery_id: str) -> tuple[Any, ...]:
    [row] = rows_of(
        store_url,
        f"SELECT status, remote_id, remote_status FROM deliveries WHERE id = '{delivery_id}'",
    )
    return row


def test_a_bounce_suppresses_the_address_for_later_deliveries(hub_api, store_url, fake, signer):
    h = hub_api
    sl = SuppressionList(h.ctx.store, Pseudonymizer.load(state_dir(h.ctx.cfg)))
    enqueue(h.ctx.store, CH, ["first"], payload=_payload("ada@example.com"))
    _send_all(h, sl)
    (mail,) = fake.accepted()
    assert _row(store_url, "first") == ("delivered", mail.message_id, None)

    # SendGrid reports the bounce; the event names the message only by sg_message_id
    body = events_body([event("bounce", "ada@example.com", message_id=mail.message_id)])
    with httpx.Client(base_url=h.base_url) as client:
        r = client.post(f"/callbacks/sendgrid/{CH}", content=body, headers=signer.headers(body))
    assert r.json() == {"accepted": 1, "duplicates": 0}
    assert _row(store_url, "first")[2] == "bounce"

    enqueue(h.ctx.store, CH, ["later"], payload=_payload("Ada@Example.com"))
    enqueue(h.ctx.store, CH, ["both"], payload=_payload(["ada@example.com", "bob@example.com"]))
    _send_all(h, sl)
    assert _row(store_url, "later")[0] == "suppressed"
    assert _row(store_url, "both")[0] == "delivered"
    assert fake.seen_ids() == ["first", "both"]  # SendGrid was never asked for "later"
    people = fake.accepted()[-1].body["personalizations"]
    assert [p["to"] for p in people] == [[{"email": "bob@example.com"}]]
