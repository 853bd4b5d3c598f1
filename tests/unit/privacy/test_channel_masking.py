"""Messages to people mask personal data unless the route reveals it: Slack, SMS and email
subjects, through the real SDKs and the local fakes (tests/fakes)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from junction.core.errors import ConfigError
from junction.pipeline.config import Route
from outbound.base import Delivery, Receipt
from outbound.masking import mask_event
from outbound.slack import SlackChannel
from outbound.sms_twilio import TwilioSmsChannel
from tests.fakes.server import serve_app
from tests.fakes.slack import BOT_TOKEN, WEBHOOK_PATH, FakeSlack
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, TwilioFake
from tests.privacy_canaries import CANARY_EMAIL, CANARY_FIRST, CANARY_LAST, CANARY_PHONE

SENDER = "+14155550100"
ALERTS = "+14155550123"  # the sales rep's phone: a recipient, never masked
TEXT = (
    "Hot lead {{ record.first_name }} {{ record.last_name }}, {{ record.email }}, "
    "{{ record.phone }} ({{ score.grade }})"
)
MASKED = "Hot lead Q. V., z***@canary-pii.example, +14******179 (A)"
CLEAR = f"Hot lead {CANARY_FIRST} {CANARY_LAST}, {CANARY_EMAIL}, {CANARY_PHONE} (A)"
EVENT = {
    "type": "lead.scored",
    "record_id": "leads:L-1",
    "pipeline": "leads",
    "entity": "lead",
    "source_key": "L-1",
    "record": {
        "external_id": "L-1",
        "first_name": CANARY_FIRST,
        "last_name": CANARY_LAST,
        "email": CANARY_EMAIL,
        "phone": CANARY_PHONE,
        "company": "Initech",
    },
    "score": {"value": 0.91, "grade": "A"},
}


def delivery(channel: str, *, reveal: bool, event: dict[str, Any] | None = None) -> Delivery:
    return Delivery("d-1", channel, "lead.scored", orjson.dumps(event or EVENT), reveal_pii=reveal)


def run(channel: Any, d: Delivery) -> Receipt:
    async def go() -> Receipt:
        try:
            receipt: Receipt = await channel.send(d)
            return receipt
        finally:
            await channel.aclose()

    return asyncio.run(go())


@pytest.fixture
def slack() -> Iterator[tuple[FakeSlack, str]]:
    fake = FakeSlack()
    with serve_app(fake.app) as url:
        yield fake, url


@pytest.fixture
def twilio() -> Iterator[tuple[TwilioFake, str]]:
    fake = TwilioFake()
    with serve_app(fake.app()) as url:
        yield fake, url


def sms_channel(base: str, **over: Any) -> TwilioSmsChannel:
    return TwilioSmsChannel(
        {
            "account_sid": ACCOUNT_SID,
            "auth_token": AUTH_TOKEN,
            "from": SENDER,
            "to": [ALERTS],
            "templates": {"default": {"body": TEXT}},
            "timeout_s": 5,
            **over,
        }
    )


@pytest.mark.parametrize(("reveal", "expected"), [(False, MASKED), (True, CLEAR)])
def test_slack_webhook_message_is_masked_unless_the_route_reveals(slack, reveal, expected):
    fake, url = slack
    blocks = '[{"type": "section", "text": {"type": "mrkdwn", "text": "' + TEXT + '"}}]'
    channel = SlackChannel(
        {
            "webhook_url": f"{url}{WEBHOOK_PATH}",
            "templates": {"default": {"text": TEXT, "blocks": blocks}},
        }
    )
    assert isinstance(run(channel, delivery("slack.sales", reveal=reveal)), Receipt)
    (message,) = fake.messages
    assert message.body["text"] == expected
    assert message.body["blocks"][0]["text"]["text"] == expected
    raw = orjson.dumps(message.body).decode()
    assert (CANARY_EMAIL in raw) is reveal
    assert (CANARY_PHONE in raw) is reveal
    assert (CANARY_LAST in raw) is reveal


@pytest.mark.parametrize(("reveal", "expected"), [(False, MASKED), (True, CLEAR)])
def test_slack_bot_message_is_masked_unless_the_route_reveals(slack, reveal, expected):
    fake, url = slack
    channel = SlackChannel(
        {
            "bot_token": BOT_TOKEN,
            "channel": "C0SALES01",
            "api_base": f"{url}/api",
            "templates": {"default": {"text": TEXT}},
        }
    )
    run(channel, delivery("slack.sales", reveal=reveal))
    (message,) = fake.messages
    assert message.body["text"] == expected


@pytest.mark.parametrize(("reveal", "expected"), [(False, MASKED), (True, CLEAR)])
def test_sms_body_is_masked_unless_the_route_reveals(twilio, reveal, expected):
    fake, base = twilio
    receipt = run(sms_channel(base, api_base=base), delivery("sms_twilio.ops", reveal=reveal))
    assert isinstance(receipt, Receipt)
    (message,) = fake.messages
    assert message["to"] == ALERTS
    assert message["body"] == expected


def test_sms_to_the_lead_reaches_the_clear_number_with_a_masked_body(twilio):
    # masking changes what the message says, never who receives it
    fake, base = twilio
    channel = sms_channel(base, api_base=base, to=[], to_path="record.phone")
    run(channel, delivery("sms_twilio.ops", reveal=False))
    (message,) = fake.messages
    assert message["to"] == CANARY_PHONE
    assert message["body"] == MASKED


def test_digest_and_alert_events_are_masked_too():
    digest = {"type": "digest", "items": [EVENT, EVENT], "count": 2}
    masked = mask_event(digest)
    assert [i["record"]["email"] for i in masked["items"]] == ["z***@canary-pii.example"] * 2
    alert = {
        "type": "junction.alert",
        "kind": "delivery_dead",
        "subject": "sms_twilio.ops",
        "detail": {"error": f"number {CANARY_PHONE} unreachable; mail {CANARY_EMAIL}"},
    }
    shown = orjson.dumps(mask_event(alert)).decode()
    assert CANARY_PHONE not in shown
    assert CANARY_EMAIL not in shown
    assert "+14******179" in shown
    assert "sms_twilio.ops" in shown


def test_unknown_entity_is_masked_by_field_name():
    event = {
        "entity": "ticket",
        "record": {
            "requester_email": CANARY_EMAIL,
            "full_name": "Ann Smith",
            "mobile": "+447700900417",
        },
    }
    record = mask_event(event)["record"]
    assert record == {
        "requester_email": "z***@canary-pii.example",
        "full_name": "A. S.",
        "mobile": "+44*******417",
    }


def test_route_reveal_pii_defaults_to_false_and_parses():
    assert Route.model_validate({"when": "true", "to": ["slack.sales"]}).reveal_pii is False
    route = Route.model_validate({"when": "true", "to": ["slack.sales"], "reveal_pii": True})
    assert route.reveal_pii is True
    with pytest.raises(ValueError, match="reveal_pii"):
        Route.model_validate({"when": "true", "to": ["x"], "reveal_pii": "sometimes"})


def test_email_subject_is_masked_and_body_is_not():
    from outbound.email_sendgrid.config import SendGridEmailConfig
    from outbound.email_sendgrid.message import build_message

    config = SendGridEmailConfig.model_validate(
        {
            "api_key": "SG.test-key-0123456789",
            "from_email": "hub@example.com",
            "to": ["sales@example.com"],
            "templates": {
                "default": {"subject": "Lead {{ record.email }}", "text": "{{ record.email }}"}
            },
        }
    )
    masked = build_message(config, delivery("email_sendgrid.sales", reveal=False))
    assert masked.subject == "Lead z***@canary-pii.example"
    assert masked.text == CANARY_EMAIL
    clear = build_message(config, delivery("email_sendgrid.sales", reveal=True))
    assert clear.subject == f"Lead {CANARY_EMAIL}"


def test_an_unknown_template_is_still_a_config_error(slack):
    _fake, url = slack
    channel = SlackChannel({"webhook_url": f"{url}{WEBHOOK_PATH}"})
    d = Delivery("d-2", "slack.sales", "lead.scored", orjson.dumps(EVENT), template="nope")
    with pytest.raises(ConfigError):
        run(channel, d)
