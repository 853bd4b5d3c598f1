"""WebhookChannel against real HTTP servers on 127.0.0.1 (aiohttp apps and raw sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from aiohttp import web
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from junction.core.errors import (
    ConfigError,
    EndpointGoneError,
    FatalError,
    InternalError,
    JunctionError,
    RateLimitedError,
    RemoteTimeoutError,
    RetryableError,
    UnavailableError,
)
from junction.core.registry import Registry
from outbound.base import Delivery, OutboundChannel, Receipt
from outbound.webhook import WebhookChannel, WebhookConfig, generate_secret
from outbound.webhook.classify import parse_retry_after
from outbound.webhook.sink import WebhookSink

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
PAYLOAD = b'{"lead_id": "L-1", "email": "ada@example.com", "score": 0.91}'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Recorder:
    """An aiohttp app that records every request and answers with ``respond``."""

    def __init__(self, respond: Handler | None = None) -> None:
        self.requests: list[tuple[dict[str, str], bytes, str]] = []
        self.respond = respond

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append((dict(request.headers), body, request.path))
        if self.respond is not None:
            return await self.respond(request)
        return web.Response(text="ok")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


@contextlib.asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def make_channel(url: str, **kw) -> WebhookChannel:
    return WebhookChannel(WebhookConfig(url=url, secret=kw.pop("secret", VECTOR_SECRET), **kw))


def delivery(delivery_id: str = "lead-1-v1", payload: bytes = PAYLOAD, **kw) -> Delivery:
    return Delivery(delivery_id, "webhook.sales", "lead.scored", payload, **kw)


async def send_to(respond: Handler | None, **kw) -> tuple[Receipt | Exception, Recorder]:
    rec = Recorder(respond)
    async with serve_app(rec.app()) as base, make_channel(base + "/hook", **kw) as channel:
        try:
            result: Receipt | Exception = await channel.send(delivery())
        except Exception as exc:
            result = exc
    return result, rec


def answer(status: int, headers: dict[str, str] | None = None, text: str = "") -> Handler:
    async def respond(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers=headers, text=text)

    return respond


def assert_safe(exc: Exception) -> None:
    """No secret and no payload in anything a user or a log could see."""
    assert isinstance(exc, JunctionError)
    shown = " ".join([str(exc), repr(exc.to_dict()), str(getattr(exc, "details", ""))])
    for secret_part in (VECTOR_SECRET, VECTOR_SECRET.removeprefix("whsec_")):
        assert secret_part not in shown
    assert "ada@example.com" not in shown


def test_known_vector_signature_is_exact() -> None:
    async def run():
        rec = Recorder()
        async with serve_app(rec.app()) as base:
            cfg = WebhookConfig(url=base + "/", secret=VECTOR_SECRET)
            async with WebhookChannel(cfg, clock=lambda: float(VECTOR_TS)) as channel:
                await channel.send(delivery(VECTOR_ID, VECTOR_BODY))
        return rec

    rec = asyncio.run(run())
    headers, body, _ = rec.requests[0]
    assert body == VECTOR_BODY
    assert headers["webhook-id"] == VECTOR_ID
    assert headers["webhook-timestamp"] == str(VECTOR_TS)
    assert headers["webhook-signature"] == VECTOR_SIG


def test_request_headers_verify_with_standardwebhooks() -> None:
    result, rec = asyncio.run(
        send_to(None, headers={"x-tenant": "acme"}, timeout_s=5),
    )
    assert isinstance(result, Receipt)
    headers, body, path = rec.requests[0]
    assert path == "/hook"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("Junction/")
    assert headers["x-tenant"] == "acme"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
    assert Webhook(VECTOR_SECRET).verify(body, headers) == {
        "lead_id": "L-1",
        "email": "ada@example.com",
        "score": 0.91,
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)


def test_delivery_headers_are_sent_but_cannot_replace_signing_headers() -> None:
    async def run():
        rec = Recorder()
        async with serve_app(rec.app()) as base, make_channel(base) as channel:
            await channel.send(delivery(headers={"x-event": "lead.scored"}))
            with pytest.raises(InternalError):
                await channel.send(delivery(headers={"Webhook-Signature": "v1,forged"}))
        return rec

    rec = asyncio.run(run())
    assert len(rec.requests) == 1
    assert rec.requests[0][0]["x-event"] == "lead.scored"


def test_rotation_signs_with_every_active_secret() -> None:
    old, new = generate_secret(), generate_secret()
    result, rec = asyncio.run(send_to(None, secret=new, previous_secrets=[old]))
    assert isinstance(result, Receipt)
    headers, body, _ = rec.requests[0]
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(body, headers)  # a receiver still on the old secret
    Webhook(new).verify(body, headers)  # a receiver already on the new one
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)


def test_webhook_id_is_stable_and_timestamp_changes_between_attempts() -> None:
    now = [time.time()]

    async def run():
        rec = Recorder()
        async with serve_app(rec.app()) as base:
            cfg = WebhookConfig(url=base, secret=VECTOR_SECRET)
            async with WebhookChannel(cfg, clock=lambda: now[0]) as channel:
                await channel.send(delivery("lead-9-v1", attempt=1))
                now[0] += 7
                await channel.send(delivery("lead-9-v1", attempt=2))
        return rec

    (h1, b1, _), (h2, b2, _) = asyncio.run(run()).requests
    assert h1["webhook-id"] == h2["webhook-id"] == "lead-9-v1"
    assert int(h2["webhook-timestamp"]) - int(h1["webhook-timestamp"]) == 7
    assert h1["webhook-signature"] != h2["webhook-signature"]
    Webhook(VECTOR_SECRET).verify(b1, h1)
    Webhook(VECTOR_SECRET).verify(b2, h2)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_gives_a_receipt(status: int) -> None:
    result, _ = asyncio.run(send_to(answer(status)))
    assert isinstance(result, Receipt)
    assert result.status_code == status
    assert result.delivery_id == "lead-1-v1"
    assert result.duration_ms > 0


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (410, EndpointGoneError),
        (429, RateLimitedError),
        (408, UnavailableError),
        (500, UnavailableError),
        (502, UnavailableError),
        (503, UnavailableError),
        (504, UnavailableError),
        (599, UnavailableError),
        (301, RetryableError),
        (302, RetryableError),
        (307, RetryableError),
        (308, RetryableError),
        (400, FatalError),
        (401, FatalError),
        (403, FatalError),
        (404, FatalError),
        (422, FatalError),
    ],
)
def test_status_classification(status: int, expected: type[Exception]) -> None:
    headers = {"Location": "http://127.0.0.1:9/elsewhere"} if 300 <= status < 400 else None
    result, rec = asyncio.run(send_to(answer(status, headers, text="nope")))
    assert type(result) is expected
    assert isinstance(result, JunctionError)
    assert result.context["status_code"] == status
    assert result.context["duration_ms"] > 0
    assert len(rec.requests) == 1
    if 300 <= status < 400:
        assert "never followed" in result.user_message
    assert_safe(result)


def test_redirect_is_not_followed() -> None:
    async def run():
        target = Recorder()
        async with serve_app(target.app()) as target_base:
            redirect = answer(308, {"Location": target_base + "/stolen"})
            result, first = await send_to(redirect)
        return result, first, target

    result, first, target = asyncio.run(run())
    assert type(result) is RetryableError
    assert result.context["status_code"] == 308
    assert len(first.requests) == 1
    assert target.requests == []


def test_429_retry_after_seconds_and_http_date() -> None:
    result, _ = asyncio.run(send_to(answer(429, {"Retry-After": "120"})))
    assert isinstance(result, RateLimitedError)
    assert result.retry_after == 120

    when = datetime.fromtimestamp(time.time() + 90, tz=UTC)
    result, _ = asyncio.run(send_to(answer(429, {"Retry-After": format_datetime(when, True)})))
    assert isinstance(result, RateLimitedError)
    assert result.retry_after is not None
    assert 85 <= result.retry_after <= 91

    result, _ = asyncio.run(send_to(answer(429)))
    assert isinstance(result, RateLimitedError)
    assert result.retry_after is None


def test_503_honours_retry_after_and_500_does_not() -> None:
    result, _ = asyncio.run(send_to(answer(503, {"Retry-After": "30"})))
    assert isinstance(result, UnavailableError)
    assert result.retry_after == 30
    result, _ = asyncio.run(send_to(answer(500, {"Retry-After": "30"})))
    assert isinstance(result, UnavailableError)
    assert result.retry_after is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("17", 17.0),
        (" 5 ", 5.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: retry now
        ("soon", None),
        ("-3", None),
        ("", None),
        (None, None),
        ("99999999999", 7 * 86400.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date_is_relative_to_now() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412420.0) == 60.0


def test_abort_message_header_stops_retries() -> None:
    abort = {"webhook-delivery": "abort-message"}
    result, _ = asyncio.run(send_to(answer(500, abort)))
    assert type(result) is FatalError
    assert result.code == "abort_message"
    result, _ = asyncio.run(send_to(answer(429, abort)))
    assert type(result) is FatalError
    # a 2xx is a success: the receiver has the message, "do not retry" is moot
    result, _ = asyncio.run(send_to(answer(200, abort)))
    assert isinstance(result, Receipt)
    assert result.detail["webhook-delivery"] == "abort-message"


def test_slow_receiver_times_out_within_the_configured_timeout() -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.Response()

    started = time.monotonic()
    result, rec = asyncio.run(send_to(slow, timeout_s=0.3))
    elapsed = time.monotonic() - started
    assert isinstance(result, RemoteTimeoutError)
    assert 250 <= result.context["duration_ms"] < 1500
    assert elapsed < 2.5
    assert len(rec.requests) == 1
    assert_safe(result)


def test_timeout_measures_the_attempt_not_the_wait_for_a_connection() -> None:
    async def medium(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.2)
        return web.Response()

    async def run():
        rec = Recorder(medium)
        async with (
            serve_app(rec.app()) as base,
            make_channel(base, timeout_s=0.5, max_connections=1) as channel,
        ):
            # five queued on one connection: 1 s in all, yet each attempt is 0.2 s
            return await asyncio.gather(*(channel.send(delivery(f"d{i}")) for i in range(5)))

    receipts = asyncio.run(run())
    assert all(isinstance(r, Receipt) for r in receipts)


def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # nothing listens on the port any more

    async def run():
        async with make_channel(f"http://127.0.0.1:{port}/") as channel:
            with pytest.raises(UnavailableError) as info:
                await channel.send(delivery())
        return info.value

    err = asyncio.run(run())
    assert err.context["reason"] == "connect"
    assert "status_code" not in err.context
    assert err.context["duration_ms"] >= 0
    assert_safe(err)


async def _raw_server(reply: bytes) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if reply:
            writer.write(reply)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part", "truncated_response"),
        (b"", "disconnected"),
    ],
    ids=["truncated-200", "closed-without-answer"],
)
def test_truncated_or_missing_answer_is_unavailable(reply: bytes, reason: str) -> None:
    async def run():
        server, port = await _raw_server(reply)
        async with server, make_channel(f"http://127.0.0.1:{port}/") as channel:
            with pytest.raises(UnavailableError) as info:
                await channel.send(delivery())
        return info.value

    err = asyncio.run(run())
    assert err.context["reason"] == reason


def test_large_answer_is_read_only_up_to_the_cap() -> None:
    big = "x" * (512 * 1024)
    result, _ = asyncio.run(send_to(answer(200, text=big)))
    assert isinstance(result, Receipt)
    assert result.detail["body_excerpt"] == "x" * 1024


def test_error_answer_keeps_an_excerpt_in_internal_details_only() -> None:
    result, _ = asyncio.run(send_to(answer(400, text="field 'score' is not allowed")))
    assert isinstance(result, FatalError)
    assert "not allowed" in str(result.details)
    assert "not allowed" not in result.user_message


@pytest.mark.parametrize("bad_id", ["msg.1", "", "has space", "tab\tid", "nl\nid"])
def test_invalid_webhook_id_is_an_internal_error(bad_id: str) -> None:
    async def run():
        rec = Recorder()
        async with serve_app(rec.app()) as base, make_channel(base) as channel:
            with pytest.raises(InternalError):
                await channel.send(delivery(bad_id))
        return rec

    assert asyncio.run(run()).requests == []


def test_non_utf8_payload_is_an_internal_error() -> None:
    async def run():
        async with make_channel("http://127.0.0.1:9/") as channel:
            with pytest.raises(InternalError):
                await channel.send(delivery(payload=b"\xff\xfe"))

    asyncio.run(run())


def test_concurrent_sends_share_one_session_and_all_arrive() -> None:
    async def run():
        rec = Recorder()
        async with serve_app(rec.app()) as base, make_channel(base, max_connections=5) as channel:
            receipts = await asyncio.gather(*(channel.send(delivery(f"d-{i}")) for i in range(60)))
            session = channel._session
        return rec, receipts, session

    rec, receipts, session = asyncio.run(run())
    assert len(receipts) == 60
    assert sorted(h["webhook-id"] for h, _, _ in rec.requests) == sorted(
        f"d-{i}" for i in range(60)
    )
    assert session is not None
    assert session.closed


def test_aclose_is_idempotent_and_a_later_send_reopens() -> None:
    async def run():
        rec = Recorder()
        async with serve_app(rec.app()) as base:
            channel = make_channel(base)
            await channel.aclose()  # never opened
            await channel.send(delivery())
            await channel.aclose()
            await channel.aclose()
            await channel.send(delivery())
            await channel.aclose()
        return rec

    assert len(asyncio.run(run()).requests) == 2


def test_channel_survives_a_new_event_loop(tmp_path) -> None:
    with WebhookSink(VECTOR_SECRET, tmp_path / "sink.jsonl") as sink:
        channel = make_channel(sink.url)
        # the first loop ends without aclose(): the second must not reuse its dead session
        asyncio.run(channel.send(delivery("first")))
        asyncio.run(channel.send(delivery("second")))
        asyncio.run(channel.aclose())
        assert sink.stats()["unique"] == 2


def test_is_an_outbound_channel_registered_under_webhook() -> None:
    channel = make_channel("https://crm.example/hooks/lead")
    assert isinstance(channel, OutboundChannel)
    assert WebhookChannel.name == "webhook"
    assert WebhookChannel.config_model is WebhookConfig
    assert Registry().get("channels", "webhook") is WebhookChannel


def test_channel_accepts_a_mapping_and_reports_config_errors_without_secrets() -> None:
    channel = WebhookChannel({"url": "https://crm.example/h", "secret": VECTOR_SECRET})
    assert channel.config.timeout_s == 15
    assert channel.config.max_connections == 20
    with pytest.raises(ConfigError) as info:
        WebhookChannel({"url": "https://crm.example/h", "secret": "whsec_c2hvcnQ="})
    assert "secret" in info.value.user_message
    assert "c2hvcnQ" not in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("url", "ftp://crm.example/h"),
        ("url", "file:///etc/passwd"),
        ("url", "https://user:pw@crm.example/h"),
        ("secret", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),  # no prefix
        ("secret", "whsec_c2hvcnQ="),  # 5 bytes
        ("secret", "whsec_not*base64!"),
        ("previous_secrets", ["whsec_c2hvcnQ="]),
        ("timeout_s", 0),
        ("max_connections", 0),
        ("headers", {"webhook-signature": "v1,x"}),
        ("headers", {"Content-Type": "text/plain"}),
        ("headers", {"x-ok": "a\r\nx-injected: 1"}),
        ("headers", {"bad name": "v"}),
        ("allow_redirects", True),
    ],
)
def test_config_rejects(field: str, value: object) -> None:
    kwargs: dict[str, object] = {"url": "https://crm.example/h", "secret": VECTOR_SECRET}
    kwargs[field] = value
    with pytest.raises(ValidationError) as info:
        WebhookConfig.model_validate(kwargs)
    assert VECTOR_SECRET not in str(info.value)
    assert "c2hvcnQ" not in str(info.value)


def test_config_is_frozen_documented_and_masks_secrets() -> None:
    cfg = WebhookConfig(
        url="https://crm.example/h", secret=VECTOR_SECRET, headers={"authorization": "Bearer t0k"}
    )
    with pytest.raises(ValidationError):
        cfg.timeout_s = 3  # type: ignore[misc]
    assert VECTOR_SECRET not in repr(cfg)
    assert "t0k" not in repr(cfg)
    schema = WebhookConfig.model_json_schema()
    assert all(prop.get("description") for prop in schema["properties"].values())
    assert "allow_redirects" not in schema["properties"]


def test_generate_secret_is_valid_and_random() -> None:
    first, second = generate_secret(), generate_secret()
    assert first.startswith("whsec_")
    assert first != second
    WebhookConfig(url="https://crm.example/h", secret=first)
    with pytest.raises(ValueError, match="24"):
        generate_secret(16)
