"""Secret rotation with both signatures during the overlap (RELIABILITY.md case 39).

Receivers are the standardwebhooks library holding one secret each; the requests are the ones a
real HTTP server on 127.0.0.1 received from the WebhookChannel.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from junction.core.errors import ConfigError
from outbound.base import Delivery
from outbound.webhook import WebhookChannel, WebhookConfig, generate_secret
from outbound.webhook.config import PreviousSecret, secret_key_bytes

BODY = b'{"lead_id": "L-7", "score": 0.88}'


async def _capture(
    config: WebhookConfig, clock_values: list[float]
) -> list[tuple[dict[str, str], bytes]]:
    """Send one delivery per clock value and return what the receiver got."""
    got: list[tuple[dict[str, str], bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        got.append((dict(request.headers), await request.read()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    now = iter(clock_values)
    cfg = config.model_copy(update={"url": url})
    try:
        async with WebhookChannel(cfg, clock=lambda: next(now)) as channel:
            for i in range(len(clock_values)):
                await channel.send(Delivery(f"lead-7-v{i}", "webhook.sales", "lead.scored", BODY))
    finally:
        await runner.cleanup()
    return got


def _signatures(headers: dict[str, str]) -> list[str]:
    return headers["webhook-signature"].split(" ")


def test_overlap_signs_with_both_and_each_receiver_verifies_then_only_the_new_one() -> None:
    old, new = generate_secret(), generate_secret()
    real_now = time.time()
    # the overlap ends now: the channel's clock, not the load time, decides which secrets sign
    expires = datetime.fromtimestamp(real_now, tz=UTC)
    config = WebhookConfig(
        url="http://127.0.0.1:9/unused",
        secret=new,
        previous_secrets=[{"secret": old, "expires_at": expires.isoformat()}],
    )
    before, after = asyncio.run(_capture(config, [real_now - 60, real_now + 60]))

    headers, body = before
    assert len(_signatures(headers)) == 2
    assert all(sig.startswith("v1,") for sig in _signatures(headers))
    Webhook(old).verify(body, headers)  # a receiver still on the old secret
    Webhook(new).verify(body, headers)  # a receiver already on the new one

    headers, body = after
    assert len(_signatures(headers)) == 1
    Webhook(new).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(body, headers)


def test_plain_previous_secrets_sign_until_removed_and_mix_with_expiring_ones() -> None:
    old, older, new = generate_secret(), generate_secret(), generate_secret()
    config = WebhookConfig(
        url="http://127.0.0.1:9/unused",
        secret=new,
        previous_secrets=[
            old,
            {"secret": older, "expires_at": "2020-01-01T00:00:00+00:00"},  # long expired
        ],
    )
    [(headers, body)] = asyncio.run(_capture(config, [time.time()]))
    assert len(_signatures(headers)) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(older).verify(body, headers)
    assert config.active_secrets() == [new, old]
    assert config.active_secrets(now=0.0) == [new, old, older]


def test_expires_at_is_iso_8601_with_a_time_zone() -> None:
    old = generate_secret()
    parsed = WebhookConfig(
        url="https://crm.example/h",
        secret=generate_secret(),
        previous_secrets=[{"secret": old, "expires_at": "2026-12-03T09:00:00+01:00"}],
    ).previous_secrets[0]
    assert isinstance(parsed, PreviousSecret)
    assert parsed.expires_at == datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    with pytest.raises(ValidationError):  # a naive time is ambiguous across hosts
        WebhookConfig(
            url="https://crm.example/h",
            secret=generate_secret(),
            previous_secrets=[{"secret": old, "expires_at": "2026-12-03T09:00:00"}],
        )


@pytest.mark.parametrize(
    "previous",
    [
        "whsec_c2hvcnQ=",  # 5 bytes
        {"secret": "whsec_" + "A" * 28, "expires_at": "2030-01-01T00:00:00Z"},  # 21 bytes
        {"secret": "not-a-whsec", "expires_at": "2030-01-01T00:00:00Z"},
        {"secret": generate_secret(), "expires_at": "2030-01-01T00:00:00Z", "extra": 1},
    ],
)
def test_every_secret_is_checked_and_never_echoed(previous: object) -> None:
    with pytest.raises(ConfigError) as info:
        WebhookChannel(
            {
                "url": "https://crm.example/h",
                "secret": generate_secret(),
                "previous_secrets": [previous],
            }
        )
    shown = str(info.value)
    assert "c2hvcnQ" not in shown
    assert "not-a-whsec" not in shown
    assert "AAAA" not in shown


def test_secrets_are_at_least_24_bytes_and_distinct() -> None:
    assert len(secret_key_bytes(generate_secret())) >= 24
    with pytest.raises(ValueError, match="24"):
        generate_secret(16)
    same = generate_secret()
    with pytest.raises(ValidationError, match="differ"):
        WebhookConfig(url="https://crm.example/h", secret=same, previous_secrets=[same])
    with pytest.raises(ValidationError, match="differ"):
        WebhookConfig(
            url="https://crm.example/h",
            secret=same,
            previous_secrets=[{"secret": same, "expires_at": "2030-01-01T00:00:00Z"}],
        )


def test_rotation_config_reprs_hide_the_secrets() -> None:
    old, new = generate_secret(), generate_secret()
    config = WebhookConfig(
        url="https://crm.example/h",
        secret=new,
        previous_secrets=[{"secret": old, "expires_at": datetime.now(UTC) + timedelta(hours=24)}],
    )
    shown = repr(config) + str(config.model_dump()) + config.model_dump_json()
    for secret in (old, new):
        assert secret.removeprefix("whsec_") not in shown
