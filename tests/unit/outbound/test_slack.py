"""SlackChannel against the local Slack fake (incoming webhooks and chat.postMessage)."""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from junction.core.errors import (
    AuthError,
    BlockedAddressError,
    ConfigError,
    EndpointGoneError,
    FatalError,
    InvalidUrlError,
    RateLimitedError,
    RecordError,
    RemoteTimeoutError,
    RetryableError,
    UnavailableError,
)
from outbound.base import Delivery, Receipt
from outbound.egress import STANDARD_PORTS, EgressPolicy
from outbound.slack import SlackChannel, SlackConfig
from outbound.slack.escape import slack_escape
from tests.fakes.slack import BOT_TOKEN, WEBHOOK_PATH, FakeSlack

EVENT = {
    "type": "lead.scored",
    "record_id": "leads:L-1",
    "pipeline": "leads",
    "entity": "lead",
    "source_key": "L-1",
    "record": {"external_id": "L-1", "company": "Initech", "email": "ada@example.com"},
    "score": {"value": 0.91, "grade": "A", "top_factors": [["page_views", 0.42]]},
}
BLOCKS = (
    '[{"type": "section", "text": {"type": "mrkdwn", "text": "*{{ record.company }}* '
    'grade {{ score.grade }}"}},'
    ' {"type": "context", "elements": [{"type": "mrkdwn", "text": "score {{ score.value }}"}]}]'
)


@pytest.fixture
def fake() -> FakeSlack:
    return FakeSlack()


def delivery(did: str = "d-1", *, template: str | None = None, **record) -> Delivery:
    event = {**EVENT, "record": {**EVENT["record"], **record}}
    return Delivery(did, "slack.sales", "lead.scored", orjson.dumps(event), template=template)


def hook(url: str, **options) -> SlackChannel:
    return SlackChannel({"webhook_url": f"{url}{WEBHOOK_PATH}", **options})


def bot(url: str, **options) -> SlackChannel:
    defaults = {"bot_token": BOT_TOKEN, "channel": "C0SALES01", "api_base": f"{url}/api"}
    return SlackChannel({**defaults, **options})


def send(channel: SlackChannel, *deliveries: Delivery) -> list[Receipt | Exception]:
    async def run() -> list[Receipt | Exception]:
        out: list[Receipt | Exception] = []
        try:
            for d in deliveries:
                try:
                    out.append(await channel.send(d))
                except Exception as exc:
                    out.append(exc)
        finally:
            await channel.aclose()
        return out

    return asyncio.run(run())


# -- escaping ---------------------------------------------------------------------------------

ESCAPES = [
    ("<!channel>", "&lt;!channel&gt;"),
    ("<!here>", "&lt;!here&gt;"),
    ("<@U1>", "&lt;@U1&gt;"),
    ("<http://x|click>", "&lt;http://x|click&gt;"),
    ("Fish & Chips", "Fish &amp; Chips"),
    ("&lt;already&gt;", "&amp;lt;already&amp;gt;"),
    ("<!subteam^S1>", "&lt;!subteam^S1&gt;"),
    ("plain *bold* text", "plain *bold* text"),
]


@pytest.mark.parametrize(("raw", "escaped"), ESCAPES, ids=[e[0] for e in ESCAPES])
def test_slack_escape(raw, escaped):
    assert slack_escape(raw) == escaped


@pytest.mark.parametrize(("raw", "escaped"), ESCAPES, ids=[e[0] for e in ESCAPES])
def test_record_values_are_escaped_in_text_and_blocks(fake, url, raw, escaped):
    templates = {"default": {"text": "Lead {{ record.company }}", "blocks": BLOCKS}}
    (receipt,) = send(hook(url, templates=templates), delivery(company=raw))
    assert isinstance(receipt, Receipt)
    body = fake.messages[0].body
    assert body["text"] == f"Lead {escaped}"
    assert body["blocks"][0]["text"]["text"] == f"*{escaped}* grade A"


def test_template_literal_markup_is_kept(fake, url):
    templates = {"default": {"text": "<!here> {{ record.company }} <https://crm.example|open>"}}
    send(hook(url, templates=templates), delivery(company="<!channel>"))
    assert fake.messages[0].body["text"] == "<!here> &lt;!channel&gt; <https://crm.example|open>"


def test_values_cannot_break_out_of_block_json(fake, url):
    company = 'x"}, {"type": "section", "text": {"type": "mrkdwn", "text": "<!channel>'
    templates = {"default": {"text": "t", "blocks": BLOCKS}}
    (receipt,) = send(hook(url, templates=templates), delivery(company=company + "\\\n"))
    assert isinstance(receipt, Receipt)
    blocks = fake.messages[0].body["blocks"]
    assert len(blocks) == 2
    assert blocks[0]["text"]["text"] == "*" + slack_escape(company) + "\\\n* grade A"


def test_tojson_in_blocks_escapes_every_string(fake, url):
    blocks = (
        '[{"type": "section", "fields": [{% for k, v in record|dictsort %}'
        '{"type": "mrkdwn", "text": {{ (k ~ ": " ~ v) | tojson }}}'
        "{% if not loop.last %},{% endif %}{% endfor %}]}]"
    )
    templates = {"default": {"text": "t", "blocks": blocks}}
    send(hook(url, templates=templates), delivery(company="<@U1> & co"))
    fields = fake.messages[0].body["blocks"][0]["fields"]
    assert {"type": "mrkdwn", "text": "company: &lt;@U1&gt; &amp; co"} in fields


def test_invalid_block_json_is_a_record_error(fake, url):
    templates = {
        "default": {"text": "t", "blocks": '[{"type": "section", "text": {{ score.value }'}
    }
    with pytest.raises(ConfigError, match="does not compile"):
        hook(url, templates=templates)  # does not even compile
    templates = {"default": {"text": "t", "blocks": '[{"type": "divider"},]'}}
    (error,) = send(hook(url, templates=templates), delivery())
    assert isinstance(error, RecordError)
    templates = {"default": {"text": "t", "blocks": '{"type": "divider"}'}}
    (error,) = send(hook(url, templates=templates), delivery())
    assert isinstance(error, RecordError)
    assert fake.messages == []


def test_missing_field_is_a_record_error(fake, url):
    templates = {"default": {"text": "{{ record.no_such_field }}"}}
    (error,) = send(hook(url, templates=templates), delivery())
    assert isinstance(error, RecordError)
    assert "no_such_field" in error.user_message


# -- metadata, templates, digests ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["webhook", "api"])
def test_metadata_carries_the_delivery_id(fake, url, mode):
    channel = hook(url) if mode == "webhook" else bot(url)
    first, second, again = send(channel, delivery("d-1"), delivery("d-2"), delivery("d-1"))
    assert all(isinstance(r, Receipt) for r in (first, second, again))
    assert fake.seen_ids() == ["d-1", "d-2", "d-1"]
    assert fake.messages[0].body["metadata"] == {
        "event_type": "junction_delivery",
        "event_payload": {"delivery_id": "d-1"},
    }
    body = fake.messages[0].body
    # bare "@channel" in a value has no <...> to escape: Slack is told not to link names
    assert (body["parse"], body["link_names"], body["unfurl_links"]) == ("none", False, False)


def test_chat_post_message_receipt_and_auth_header(fake, url):
    (receipt,) = send(bot(url), delivery())
    assert isinstance(receipt, Receipt)
    assert receipt.status_code == 200
    assert receipt.remote_id == "C0SALES01:1700000000.000001"
    msg = fake.messages[0]
    assert msg.headers["authorization"] == f"Bearer {BOT_TOKEN}"
    assert msg.headers["content-type"].startswith("application/json")
    assert msg.body["channel"] == "C0SALES01"
    assert msg.body["text"] == "lead.scored: leads:L-1 scored 0.91 (A)"


def test_route_template_and_digest(fake, url):
    templates = {
        "default": {"text": "one {{ record_id }}"},
        "hot": {"text": "HOT {{ record.company }}"},
        "digest": {"text": "{{ count }}: {% for i in items %}{{ i.record.company }};{% endfor %}"},
    }
    digest = {
        "type": "digest",
        "pipeline": "leads",
        "items": [EVENT, {**EVENT, "record": {"company": "<!everyone>"}}],
    }
    results = send(
        hook(url, templates=templates),
        delivery(template="hot"),
        Delivery("d-digest", "slack.sales", "digest", orjson.dumps(digest)),
        delivery(template="missing"),
    )
    assert isinstance(results[0], Receipt)
    assert isinstance(results[1], Receipt)
    assert isinstance(results[2], ConfigError)
    assert [m.body["text"] for m in fake.messages] == [
        "HOT Initech",
        "2: Initech;&lt;!everyone&gt;;",
    ]


def test_builtin_digest_and_alert_templates(fake, url):
    # the configured default reads record fields, which digests and alerts do not have
    templates = {"default": {"text": "Lead {{ record.company }}"}}
    digest = {"type": "digest", "items": [EVENT, {"record_id": "leads:L-2"}]}
    alert = {
        "type": "junction.alert",
        "kind": "endpoint.disabled",
        "subject": "webhook.sales",
        "detail": {"failing_for_s": 86400, "last_error": "<!channel> down"},
        "at": 1700000000.0,
    }
    results = send(
        hook(url, templates=templates),
        Delivery("d-digest", "slack.sales", "digest", orjson.dumps(digest)),
        Delivery("alert:1:slack_ops", "slack.ops", "junction.alert", orjson.dumps(alert)),
    )
    assert all(isinstance(r, Receipt) for r in results)
    assert [m.body["text"] for m in fake.messages] == [
        "2 deliveries:\n• lead.scored: leads:L-1 (A)\n• item: leads:L-2\n",
        "Junction alert: endpoint.disabled (webhook.sales)\n• failing_for_s: 86400"
        "\n• last_error: &lt;!channel&gt; down",
    ]


# -- error mapping: incoming webhook -------------------------------------------------------------

WEBHOOK_ANSWERS = [
    (400, "invalid_payload", FatalError, "slack_invalid_payload"),
    (400, "no_text", FatalError, "slack_no_text"),
    (403, "action_prohibited", FatalError, "slack_action_prohibited"),
    (403, "invalid_token", AuthError, "auth_error"),
    (404, "channel_not_found", FatalError, "slack_channel_not_found"),
    (404, "no_service", EndpointGoneError, "endpoint_gone"),
    (410, "channel_is_archived", EndpointGoneError, "endpoint_gone"),
    (500, "rollup_error", UnavailableError, "unavailable"),
]


@pytest.mark.parametrize(
    ("status", "body", "error", "code"), WEBHOOK_ANSWERS, ids=[a[1] for a in WEBHOOK_ANSWERS]
)
def test_webhook_error_mapping(fake, url, status, body, error, code):
    fake.answer_next(status, body)
    (result,) = send(hook(url), delivery())
    assert type(result) is error
    assert result.code == code
    assert result.context["status_code"] == status
    assert WEBHOOK_PATH not in str(result.to_dict())


def test_webhook_rate_limit_honours_retry_after(fake, url):
    fake.faults.fail_next("rate_limit", 1)
    first, second = send(hook(url), delivery("d-1"), delivery("d-2"))
    assert isinstance(first, RateLimitedError)
    assert first.retry_after == 7.0
    assert isinstance(second, Receipt)


def test_webhook_redirect_is_not_followed(fake, url):
    fake.answer_next(302, "", Location="http://127.0.0.1:1/elsewhere")
    (result,) = send(hook(url), delivery())
    assert type(result) is RetryableError
    assert result.code == "redirect_not_followed"
    assert len(fake.messages) == 1


# -- error mapping: chat.postMessage ------------------------------------------------------------

API_ERRORS = [
    ("ratelimited", RateLimitedError),
    ("invalid_auth", AuthError),
    ("not_authed", AuthError),
    ("token_revoked", AuthError),
    ("channel_not_found", FatalError),
    ("not_in_channel", FatalError),
    ("is_archived", FatalError),
    ("msg_too_long", FatalError),
    ("internal_error", UnavailableError),
    ("fatal_error", UnavailableError),
    ("service_unavailable", UnavailableError),
    ("something_new", FatalError),
]


@pytest.mark.parametrize(("code", "error"), API_ERRORS, ids=[a[0] for a in API_ERRORS])
def test_api_error_mapping(fake, url, code, error):
    fake.answer_next(200, {"ok": False, "error": code})
    (result,) = send(bot(url), delivery())
    assert type(result) is error
    assert result.context["slack_error"] == code
    assert code in result.user_message
    assert BOT_TOKEN not in str(result.to_dict())


def test_api_real_refusals_from_the_fake(fake, url):
    results = send(bot(url, channel="C0NOPE"), delivery())
    assert isinstance(results[0], FatalError)
    assert results[0].context["slack_error"] == "channel_not_found"
    (archived,) = send(bot(url, channel="C0ARCHIVE"), delivery())
    assert archived.context["slack_error"] == "is_archived"
    (denied,) = send(bot(url, bot_token="xoxb-wrong"), delivery())
    assert isinstance(denied, AuthError)
    assert "xoxb-wrong" not in repr(denied) + str(denied.to_dict())


def test_api_http_429_with_retry_after(fake, url):
    fake.faults.fail_next("rate_limit", 1)
    (result,) = send(bot(url), delivery())
    assert isinstance(result, RateLimitedError)
    assert result.retry_after == 7.0


def test_api_5xx_and_non_json_answers_are_retryable(fake, url):
    fake.faults.fail_next("server_error", 1)
    fake_results = send(bot(url), delivery())
    assert isinstance(fake_results[0], UnavailableError)
    fake.answer_next(200, "<html>proxy error</html>")
    (garbled,) = send(bot(url), delivery())
    assert isinstance(garbled, UnavailableError)


def test_hang_is_a_timeout(fake, url):
    fake.faults.fail_next("timeout", 1)
    try:
        (result,) = send(bot(url, timeout_s=0.3), delivery())
    finally:
        fake.release()
    assert isinstance(result, RemoteTimeoutError)
    assert "Slack" in result.user_message


def test_connection_refused_is_unavailable():
    (result,) = send(SlackChannel({"webhook_url": "http://127.0.0.1:9/services/T/B/X"}), delivery())
    assert isinstance(result, UnavailableError)
    assert "127.0.0.1:9" not in str(result.to_dict()) + repr(result)


# -- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "webhook_url": "https://hooks.slack.example/services/T/B/SECRETPART",
            "bot_token": "xoxb-1",
        },
        {"bot_token": "xoxb-SECRETPART"},
        {"webhook_url": "ftp://hooks.slack.example/services/T/B/SECRETPART"},
        {"webhook_url": "https://user:SECRETPART@hooks.slack.example/x"},
        {"bot_token": "xoxb-SECRETPART\r\nx: y", "channel": "C1"},
        {"webhook_url": "https://h.example/SECRETPART", "templates": {"other": {"text": "x"}}},
        {"webhook_url": "https://h.example/SECRETPART", "channel": "C1"},
    ],
    ids=["none", "both", "no-channel", "scheme", "userinfo", "crlf", "no-default", "hook-channel"],
)
def test_bad_config_is_refused_without_echoing_secrets(options):
    with pytest.raises(ConfigError) as caught:
        SlackChannel(options)
    assert "SECRETPART" not in str(caught.value) + repr(caught.value)


def test_repr_hides_credentials():
    channel = SlackChannel({"webhook_url": "https://hooks.slack.example/services/T/B/SECRETPART"})
    shown = repr(channel) + repr(channel.config) + str(channel.config)
    assert "SECRETPART" not in shown
    channel = SlackChannel({"bot_token": "xoxb-SECRETPART", "channel": "C1"})
    assert "SECRETPART" not in repr(channel) + repr(channel.config)


def test_config_schema_exports():
    schema = SlackConfig.model_json_schema()
    for name in ("webhook_url", "bot_token"):
        assert {"format": "password", "type": "string", "writeOnly": True} in schema["properties"][
            name
        ]["anyOf"]
    assert json.dumps(schema)


# -- egress (SSRF) ---------------------------------------------------------------------------


def test_egress_refuses_a_loopback_literal_before_sending(fake, url):
    channel = SlackChannel({"webhook_url": f"{url}{WEBHOOK_PATH}"}, egress=EgressPolicy())
    (result,) = send(channel, delivery())
    assert isinstance(result, BlockedAddressError)
    assert fake.messages == []


def test_egress_refuses_a_name_resolving_to_loopback(fake, url):
    api_base = url.replace("127.0.0.1", "localhost") + "/api"
    channel = bot(url, api_base=api_base)
    channel = SlackChannel(channel.config, egress=EgressPolicy())
    (result,) = send(channel, delivery())
    assert isinstance(result, BlockedAddressError)
    assert fake.messages == []
    allowed = SlackChannel(channel.config, egress=EgressPolicy(["127.0.0.0/8", "::1/128"]))
    (receipt,) = send(allowed, delivery())
    assert isinstance(receipt, Receipt)


def test_egress_port_policy_is_a_typed_config_error(url):
    with pytest.raises(InvalidUrlError) as caught:
        SlackChannel(
            {"webhook_url": f"{url}{WEBHOOK_PATH}"},
            egress=EgressPolicy(allowed_ports=STANDARD_PORTS),
        )
    assert WEBHOOK_PATH not in str(caught.value)


def test_a_long_answer_is_read_whole(fake, url):
    # chat.postMessage echoes the message: a long text makes an answer of many network chunks
    templates = {"default": {"text": "{{ record.company }}"}}
    (receipt,) = send(bot(url, templates=templates), delivery(company="x" * 39_000))
    assert isinstance(receipt, Receipt)
    assert receipt.remote_id == "C0SALES01:1700000000.000001"


# -- the fake speaks Slack's wire format: the real slack_sdk against it ------------------------


def test_fake_answers_the_real_web_client(fake, url):
    client = WebClient(token=BOT_TOKEN, base_url=f"{url}/api/")
    meta = {"event_type": "junction_delivery", "event_payload": {"delivery_id": "sdk-1"}}
    resp = client.chat_postMessage(
        channel="C0SALES01", text="hi", blocks=[{"type": "divider"}], metadata=meta
    )
    assert resp["ok"] is True
    assert resp["channel"] == "C0SALES01"
    assert resp["message"]["metadata"] == meta
    assert fake.seen_ids() == ["sdk-1"]
    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel="C0NOPE", text="x")
    assert refused.value.response["error"] == "channel_not_found"
    with pytest.raises(SlackApiError) as unauthed:
        WebClient(token="xoxb-wrong", base_url=f"{url}/api/").chat_postMessage(
            channel="C0SALES01", text="x"
        )
    assert unauthed.value.response["error"] == "invalid_auth"
    fake.faults.fail_next("rate_limit", 1)
    with pytest.raises(SlackApiError) as limited:
        client.chat_postMessage(channel="C0SALES01", text="x")
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["retry-after"] == "7"


def test_fake_answers_the_real_webhook_client(fake, url):
    client = WebhookClient(f"{url}{WEBHOOK_PATH}")
    resp = client.send(text="hi", blocks=[{"type": "divider"}])
    assert (resp.status_code, resp.body) == (200, "ok")
    resp = client.send_dict({"unfurl_links": False})
    assert (resp.status_code, resp.body) == (400, "no_text")


@pytest.mark.parametrize(
    "options",
    [
        {"webhook_url": "file:///etc/SECRETPART"},
        {"webhook_url": "https://user:SECRETPART@hooks.slack.example/x"},
        {"bot_token": "xoxb-1", "channel": "C1", "api_base": "gopher://h.example/SECRETPART"},
    ],
    ids=["file", "userinfo", "gopher"],
)
def test_refused_url_shapes_are_invalid_url_errors(options):
    with pytest.raises(InvalidUrlError) as caught:
        SlackChannel(options)
    assert "SECRETPART" not in str(caught.value) + repr(caught.value)
