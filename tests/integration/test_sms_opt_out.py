"""Opt-outs end to end: the delivery worker, the suppression gate and the real Twilio SMS channel
(the twilio SDK) against the local Twilio fake."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from junction.pipeline.config import DeliveryConfig
from junction.pipeline.suppression_gate import SuppressionGate
from outbound.sms_twilio import TwilioSmsChannel
from tests.fakes.server import serve_app
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, TwilioFake
from tests.integration.delivery_support import enqueue, run_worker
from tests.integration.helpers import rows_of

CH = "sms_twilio.oncall"
STOPPED = "+14155550199"
LEAD = "+14155550123"


@pytest.fixture
def fake() -> TwilioFake:
    return TwilioFake(stopped={STOPPED})


@pytest.fixture
def api_base(fake: TwilioFake) -> Iterator[str]:
    with serve_app(fake.app()) as url:
        yield url


def _channel(api_base: str, **over: Any) -> TwilioSmsChannel:
    options = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "from": "+14155550100",
        "to_path": "record.phone",
        "templates": {"default": {"body": "Hot lead {{ record.name }}"}},
        "public_url": "https://hub.example.com",
        "api_base": api_base,
        **over,
    }
    clock = options.pop("clock", time.time)
    return TwilioSmsChannel(options, clock=clock)


def _payload(phone: Any) -> dict[str, Any]:
    return {"type": "lead.scored", "record_id": "r", "record": {"name": "Ada", "phone": phone}}


def _status(store_url: str, delivery_id: str) -> str:
    [(status,)] = rows_of(store_url, f"SELECT status FROM deliveries WHERE id = '{delivery_id}'")
    return str(status)


def test_a_stop_rejection_suppresses_the_number_for_every_later_delivery(
    store, store_url, suppressions, fake, api_base
):
    gate = SuppressionGate(suppressions)
    enqueue(store, CH, ["first"], payload=_payload(STOPPED))
    run_worker(store, {CH: _channel(api_base)}, DeliveryConfig(), drain_wait_s=0, gates=[gate])
    assert _status(store_url, "first") == "dead"  # Twilio answered 21610
    assert suppressions.suppressed("phone", [STOPPED]) == {STOPPED}
    assert suppressions.entry("phone", STOPPED)["reason"] == "stop"
    asked = fake.requests
    enqueue(store, CH, ["later"], payload=_payload("+1 (415) 555-0199"))
    run_worker(store, {CH: _channel(api_base)}, DeliveryConfig(), drain_wait_s=0, gates=[gate])
    assert _status(store_url, "later") == "suppressed"
    assert fake.requests == asked  # Twilio was not even asked
    assert fake.messages == []


def test_a_suppressed_recipient_is_left_out_and_the_others_are_texted(
    store, store_url, suppressions, fake, api_base
):
    suppressions.add("phone", LEAD, reason="stop", source="twilio:sms_twilio.oncall")
    enqueue(store, CH, ["both"], payload=_payload([LEAD, "+14155550124"]))
    run_worker(
        store,
        {CH: _channel(api_base)},
        DeliveryConfig(),
        drain_wait_s=0,
        gates=[SuppressionGate(suppressions)],
    )
    assert _status(store_url, "both") == "delivered"
    assert [m["to"] for m in fake.messages] == ["+14155550124"]
    assert fake.seen_ids() == ["both"]


def test_quiet_hours_defer_without_spending_an_attempt(store, store_url, fake, api_base):
    night = datetime(2026, 1, 15, 12, 0, tzinfo=UTC).timestamp()  # 04:00 in Los Angeles
    channel = _channel(
        api_base,
        quiet_hours={"start": "21:00", "end": "08:00", "default_timezone": "America/Los_Angeles"},
        clock=lambda: night,
    )
    enqueue(store, CH, ["night"], payload=_payload(LEAD))
    run_worker(store, {CH: channel}, DeliveryConfig(schedule_s=[]), drain_wait_s=0)
    [(status, attempts, due)] = rows_of(
        store_url, "SELECT status, attempts, next_attempt_at FROM deliveries WHERE id = 'night'"
    )
    assert (status, attempts) == ("pending", 0)
    assert due > time.time() + 3 * 3600  # until 08:00 in Los Angeles, four hours on
    assert fake.messages == []
