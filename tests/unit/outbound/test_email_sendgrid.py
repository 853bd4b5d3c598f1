"""SendGridEmailChannel through the real sendgrid SDK against the local Mail Send fake."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from junction.core.errors import (
    AuthError,
    FatalError,
    RateLimitedError,
    RecordError,
    RemoteTimeoutError,
    UnavailableError,
)
from outbound.base import AddressedChannel, Delivery, Receipt, Recipient
from outbound.email_sendgrid import SendGridEmailChannel, SendGridEmailConfig
from outbound.email_sendgrid.classify import classify_status, error_messages, rate_limit_delay
from outbound.email_sendgrid.message import DELIVERY_HEADER, one_line
from tests.fakes.sendgrid import API_KEY, SendGridFake, served_fake

TEMPLATES = {
    "default": {
        "subject": "Lead {{ record.company }} scored {{ score.grade }}",
        "text": "{{ record.company }} <{{ record.email }}>: {{ score.value }}",
        "html": "<p>{{ record.company }}: {{ score.value }}</p>",
    },
    "digest": {
        "subject": "{{ count }} hot leads",
        "text": "{% for e in items %}{{ e.record.company }};{% endfor %}",
    },
    "plain": {"subject": "Plain {{ record.company }}", "text": "only text"},
}


@pytest.fixture(scope="module")
def fake() -> Iterator[SendGridFake]:
    with served_fake(hang_s=10.0) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(fake: SendGridFake) -> None:
    fake.faults.clear()
    fake.received.clear()


def options(fake: SendGridFake, **over: Any) -> dict[str, Any]:
    return {
        "api_key": API_KEY,
        "host": fake.base,
        "from_email": "Alerts@Junction.Example",
        "from_name": "Junction",
        "to": ["sales@example.com"],
        "templates": TEMPLATES,
        "timeout_s": 5,
        **over,
    }


def event(**record: Any) -> dict[str, Any]:
    return {
        "type": "lead.scored",
        "record_id": "leads:csv:L-1",
        "pipeline": "leads",
        "entity": "lead",
        "source_key": "L-1",
        "record": {"company": "Initech", "email": "ada@example.com", **record},
        "score": {"value": 0.91, "grade": "A", "top_factors": [["page_views", 0.4]]},
    }


def delivery(payload: dict[str, Any] | None = None, **kw: Any) -> Delivery:
    body = orjson.dumps(payload if payload is not None else event())
    return Delivery(kw.pop("delivery_id", "d-1"), "email_sendgrid.sales", "lead.scored", body, **kw)


def send(opts: dict[str, Any], d: Delivery) -> Receipt:
    async def go() -> Receipt:
        async with SendGridEmailChannel(opts) as channel:
            return await channel.send(d)

    return asyncio.run(go())


def send_error(opts: dict[str, Any], d: Delivery) -> Exception:
    try:
        send(opts, d)
    except Exception as exc:
        return exc
    pytest.fail("the send succeeded")


def test_a_202_gives_a_receipt_with_the_message_id(fake):
    receipt = send(options(fake), delivery())
    (got,) = fake.received
    assert receipt.status_code == 202
    assert receipt.remote_id == got.message_id
    assert receipt.remote_id
    assert receipt.delivery_id == "d-1"
    assert got.headers["authorization"] == f"Bearer {API_KEY}"


def test_templates_render_text_plain_and_html_escaped(fake):
    send(options(fake), delivery(event(company="<b>Tom & Jerry</b>")))
    body = fake.received[0].body
    assert body["subject"] == "Lead <b>Tom & Jerry</b> scored A"
    assert body["content"] == [
        {"type": "text/plain", "value": "<b>Tom & Jerry</b> <ada@example.com>: 0.91"},
        {"type": "text/html", "value": "<p>&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;: 0.91</p>"},
    ]
    assert body["from"] == {"email": "alerts@junction.example", "name": "Junction"}


def test_the_route_picks_the_template_and_digests_render_items(fake):
    digest = {
        "type": "digest",
        "pipeline": "leads",
        "items": [event(company="A1"), event(company="B2")],
    }
    send(options(fake), delivery(digest, template="digest"))
    body = fake.received[0].body
    assert body["subject"] == "2 hot leads"
    assert body["content"] == [{"type": "text/plain", "value": "A1;B2;"}]
    assert "record_id" not in body["custom_args"]


def test_an_unknown_template_is_fatal(fake):
    exc = send_error(options(fake), delivery(template="nope"))
    assert isinstance(exc, FatalError)
    assert exc.code == "unknown_template"
    assert fake.received == []


def test_a_missing_template_field_is_a_record_error(fake):
    payload = event()
    del payload["record"]["company"]
    exc = send_error(options(fake), delivery(payload))
    assert isinstance(exc, RecordError)
    assert "company" in exc.user_message


def test_custom_args_and_header_carry_the_delivery_id(fake):
    send(options(fake), delivery(delivery_id="dlv-42"))
    body = fake.received[0].body
    assert body["custom_args"] == {
        "delivery_id": "dlv-42",
        "pipeline": "leads",
        "record_id": "leads:csv:L-1",
    }
    assert body["headers"] == {DELIVERY_HEADER: "dlv-42"}
    assert fake.seen_ids() == ["dlv-42"]


def test_record_data_cannot_inject_headers(fake):
    evil = "Initech\r\nBcc: victim@example.com\n\0X-Evil: 1"
    send(options(fake, categories=["leads"]), delivery(event(company=evil)))
    body = fake.received[0].body
    # the subject is masked by default: the address shows as v***@example.com
    assert body["subject"] == "Lead Initech Bcc: v***@example.com X-Evil: 1 scored A"
    flat = orjson.dumps({k: v for k, v in body.items() if k != "content"}).decode()
    assert "\\r" not in flat
    assert "\\n" not in flat
    assert "\\u0000" not in flat
    assert all(p["to"] != [{"email": "victim@example.com"}] for p in body["personalizations"])


@pytest.mark.parametrize(
    "over",
    [
        {"from_name": "Junction\r\nBcc: evil@example.com"},
        {"categories": ["leads\nBcc: x"]},
        {"reply_to": "ops@example.com\r\nBcc: evil@example.com"},
        {"from_email": "alerts@example.com\nBcc: evil@example.com"},
        {"to": ["sales@example.com\r\n"]},
    ],
    ids=["from_name", "category", "reply_to", "from_email", "to"],
)
def test_config_refuses_control_characters(fake, over):
    with pytest.raises(ValidationError):
        SendGridEmailConfig.model_validate(options(fake, **over))


def test_one_line_strips_cr_lf_nul():
    assert one_line("a\r\nb\nc\rd\0e") == "a b c de"


def test_recipients_static_and_from_the_record(fake):
    channel = SendGridEmailChannel(options(fake, to=["Sales@Example.com"], to_path="record.email"))
    assert isinstance(channel, AddressedChannel)
    got = channel.recipients(delivery(event(email="Ada@Example.COM")))
    assert got == [Recipient("email", "sales@example.com"), Recipient("email", "ada@example.com")]
    # a malformed address in the record is skipped, the static one stays
    assert channel.recipients(delivery(event(email="not an address"))) == [
        Recipient("email", "sales@example.com")
    ]


def test_each_recipient_gets_their_own_personalization(fake):
    send(options(fake, to=["a@example.com", "b@example.com"]), delivery())
    people = fake.received[0].body["personalizations"]
    assert sorted(p["to"][0]["email"] for p in people) == ["a@example.com", "b@example.com"]
    assert all(len(p["to"]) == 1 for p in people)


def test_no_recipient_is_a_record_error(fake):
    channel = SendGridEmailChannel(options(fake, to=[], to_path="record.owner_email"))
    with pytest.raises(RecordError):
        channel.recipients(delivery())
    exc = send_error(options(fake, to=[], to_path="record.owner_email"), delivery())
    assert isinstance(exc, RecordError)


def test_config_needs_someone_to_write_to(fake):
    with pytest.raises(ValidationError):
        SendGridEmailConfig.model_validate(options(fake, to=[]))


def test_excluded_addresses_are_never_sent_to(fake):
    opts = options(fake, to=["a@example.com", "b@example.com"])
    send(opts, delivery(exclude=frozenset({"b@example.com"})))
    people = fake.received[0].body["personalizations"]
    assert [p["to"] for p in people] == [[{"email": "a@example.com"}]]


def test_everyone_excluded_sends_nothing(fake):
    opts = options(fake, to=["a@example.com"])
    exc = send_error(opts, delivery(exclude=frozenset({"a@example.com"})))
    assert isinstance(exc, RecordError)
    assert exc.code == "all_recipients_suppressed"
    assert fake.received == []


def test_templates_must_compile_and_have_a_default(fake):
    with pytest.raises(ValidationError):
        SendGridEmailConfig.model_validate(options(fake, templates={"x": TEMPLATES["plain"]}))
    broken = {"default": {"subject": "{{ oops", "text": "t"}}
    with pytest.raises(ValidationError):
        SendGridEmailConfig.model_validate(options(fake, templates=broken))


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        ("client_error", FatalError, "rejected"),
        ("server_error", UnavailableError, "unavailable"),
        ("rate_limit", RateLimitedError, "rate_limited"),
        ("expired_session", AuthError, "auth_error"),
    ],
)
def test_answers_are_classified(fake, fault, error, code):
    fake.faults.fail_next(fault, 1)
    exc = send_error(options(fake), delivery())
    assert type(exc) is error
    assert exc.code == code
    assert exc.context["status_code"] in (400, 500, 429, 401)
    assert API_KEY not in str(exc.to_dict()) + str(exc.details)


def test_a_400_keeps_sendgrids_messages_in_details(fake):
    fake.faults.fail_next("client_error", 1)
    exc = send_error(options(fake), delivery())
    assert isinstance(exc, FatalError)
    assert exc.details == "from: The from address does not match a verified Sender Identity."
    assert "details" not in exc.to_dict()


def test_a_429_carries_retry_after(fake):
    fake.faults.retry_after_s = 30
    fake.faults.fail_next("rate_limit", 1)
    exc = send_error(options(fake), delivery())
    assert isinstance(exc, RateLimitedError)
    assert exc.retry_after is not None
    assert 0 < exc.retry_after <= 31


def test_a_wrong_key_is_an_auth_error_without_the_key(fake):
    wrong = "SG.wrong-key.0000"
    exc = send_error(options(fake, api_key=wrong), delivery())
    assert isinstance(exc, AuthError)
    assert wrong not in repr(exc) + str(exc.to_dict()) + str(exc.details)


def test_no_answer_in_time_is_a_timeout(fake):
    fake.faults.fail_next("timeout", 1)
    exc = send_error(options(fake, timeout_s=0.3), delivery())
    assert isinstance(exc, RemoteTimeoutError)


def test_a_closed_port_is_unavailable(fake):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exc = send_error(options(fake, host=f"http://127.0.0.1:{port}"), delivery())
    assert isinstance(exc, UnavailableError)


@pytest.mark.parametrize(
    ("status", "headers", "error", "code"),
    [
        (202, {}, None, None),
        (403, {}, FatalError, "forbidden"),
        (413, {}, FatalError, "too_large"),
        (404, {}, FatalError, "rejected"),
        (408, {}, UnavailableError, "unavailable"),
        (503, {"Retry-After": "12"}, UnavailableError, "unavailable"),
        (200, {}, FatalError, "unexpected_status"),
        (302, {}, FatalError, "unexpected_status"),
    ],
)
def test_status_table(status, headers, error, code):
    got = classify_status(status, headers, b"", duration_ms=1.0)
    if error is None:
        assert got is None
    else:
        assert type(got) is error
        assert got.code == code


def test_rate_limit_delay_prefers_the_reset_header():
    assert rate_limit_delay({"X-RateLimit-Reset": "1000", "Retry-After": "5"}, now=990.0) == 10.0
    assert rate_limit_delay({"Retry-After": "5"}, now=990.0) == 5.0
    assert rate_limit_delay({}, now=990.0) is None


def test_error_messages_mask_addresses():
    body = b'{"errors":[{"message":"bad ada@example.com","field":"personalizations.0.to"}]}'
    assert error_messages(body) == "personalizations.0.to: bad <email>"
    assert error_messages(b"not json") is None


def test_secrets_stay_out_of_reprs_and_sdk_debug_logs(fake, caplog):
    caplog.set_level(logging.DEBUG)
    opts = options(fake)
    channel = SendGridEmailChannel(opts)
    shown = repr(channel) + repr(channel.config) + str(channel.config)

    async def go() -> None:
        await channel.send(delivery())
        await channel.aclose()

    asyncio.run(go())
    assert API_KEY not in shown + caplog.text
    assert "ada@example.com" not in caplog.text
    with pytest.raises(ValidationError) as info:
        SendGridEmailConfig.model_validate({**opts, "timeout_s": "x"})
    assert API_KEY not in str(info.value)


def test_aclose_twice_then_send_again(fake):
    async def go() -> Receipt:
        channel = SendGridEmailChannel(options(fake))
        await channel.send(delivery())
        await channel.aclose()
        await channel.aclose()
        try:
            return await channel.send(delivery(delivery_id="d-2"))
        finally:
            await channel.aclose()

    assert asyncio.run(go()).delivery_id == "d-2"
    assert fake.seen_ids() == ["d-1", "d-2"]
