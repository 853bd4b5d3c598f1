"""Webhook signing-secret rotation through the store (ADR-0023), against a real HTTP receiver.

The receiver is an aiohttp app on 127.0.0.1 that records raw headers and bodies; the test checks
them with the Standard Webhooks verification algorithm of RELIABILITY.md (C1), written out here so
nothing of the channel's own code judges its signatures.  Time is injected: the channel's clock
moves past the overlap instead of the test sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
from aiohttp import web
from sqlalchemy import select

from junction.core.errors import ConfigError
from junction.store import tables as t
from junction.store.channel_secrets import (
    StoreSigningKeys,
    list_secrets,
    load_secrets,
    parse_overlap,
    rotate_secret,
    webhook_options,
)
from junction.store.crypto_rows import enable_privacy
from junction.store.repo import Store
from outbound.base import Delivery
from outbound.webhook import WebhookChannel, WebhookConfig, generate_secret

CHANNEL = "webhook.sales"
BODY = b'{"lead_id": "L-1", "score": 0.91}'
HOUR = 3600.0


class Invalid(Exception):
    """The request does not verify (the reason is the message)."""


def sw_sign(secret: str, msg_id: str, ts: int, body: bytes) -> str:
    """RELIABILITY.md C1 ``sw_sign``."""
    assert "." not in msg_id
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, msg_id.encode() + b"." + str(ts).encode() + b"." + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def sw_verify(
    secrets: list[str], headers: Mapping[str, str], body: bytes, now: int, tol: int = 300
) -> str:
    """RELIABILITY.md C1 ``sw_verify``: the message id when one v1 signature matches."""
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, ts_s = h.get("webhook-id"), h.get("webhook-timestamp")
    sig_h = h.get("webhook-signature")
    if not (msg_id and ts_s and sig_h):
        raise Invalid("missing_header")
    try:
        ts = int(ts_s)
    except ValueError:
        raise Invalid("bad_timestamp") from None
    if ts < now - tol or ts > now + tol:
        raise Invalid("timestamp_out_of_tolerance")
    for part in sig_h.split(" "):
        ver, _, sig = part.partition(",")
        if ver != "v1":
            continue
        for s in secrets:
            exp = base64.b64decode(sw_sign(s, msg_id, ts, body).split(",", 1)[1])
            if hmac.compare_digest(exp, base64.b64decode(sig)):
                return msg_id
    raise Invalid("no_matching_signature")


def test_the_published_vector_verifies_with_this_algorithm() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    sig = sw_sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


class Receiver:
    """Records every request (headers, raw body) and answers 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        return web.Response(text="ok")


@contextlib.asynccontextmanager
async def receiving() -> AsyncIterator[tuple[Receiver, str]]:
    rx = Receiver()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", rx.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield rx, f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    finally:
        await runner.cleanup()


class Clock:
    """The channel's injected wall clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _send(
    url: str, store: Store, old: str, clock: Clock, channel: str = CHANNEL
) -> WebhookChannel:
    ch = WebhookChannel(
        WebhookConfig(url=url, secret=old), clock=clock, signing_keys=StoreSigningKeys(store)
    )
    try:
        await ch.send(Delivery(f"d-{clock.now:.0f}", channel, "lead.scored", BODY))
    finally:
        await ch.aclose()
    return ch


def _sealed_store(url: str, tmp_path: Path) -> Store:
    store = Store.open(url)
    enable_privacy(store, kek=f"file:{tmp_path / 'kek'}")
    return store


def test_both_secrets_sign_during_the_overlap_and_only_the_new_after_even_across_a_restart(
    store_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    old = generate_secret()
    outsider = generate_secret()
    t0 = time.time()
    store = _sealed_store(store_url, tmp_path)
    try:
        config = WebhookConfig(url="http://127.0.0.1:9/hook", secret=old)
        out = rotate_secret(store, CHANNEL, config, overlap_s=24 * HOUR, now=t0)
    finally:
        store.close()
    new = out.secret
    assert new != old
    assert [origin for _id, origin, _at in out.retiring] == ["config"]
    assert out.retiring[0][2] == pytest.approx(t0 + 24 * HOUR)

    async def scenario(store: Store) -> list[tuple[dict[str, str], bytes]]:
        async with receiving() as (rx, url):
            for now in (t0 + 10, t0 + 24 * HOUR - 5, t0 + 24 * HOUR + 1):
                await _send(url, store, old, Clock(now))
            # a channel never rotated keeps signing with its config's secret alone
            await _send(url, store, old, Clock(t0 + 20), channel="webhook.other")
        return rx.requests

    # a restart: a new Store finds the encryption settings and the KEK file by itself
    restarted = Store.open(store_url)
    try:
        requests = asyncio.run(scenario(restarted))
    finally:
        restarted.close()
    assert len(requests) == 4
    (early, h1), (late, h2), (after, h3), (other, h4) = requests
    for headers, body, now in ((early, h1, t0 + 10), (late, h2, t0 + 24 * HOUR - 5)):
        assert len(headers["webhook-signature"].split(" ")) == 2
        # a receiver holding only the old, or only the new, secret verifies
        assert sw_verify([old], headers, body, int(now)) == headers["webhook-id"]
        assert sw_verify([new], headers, body, int(now)) == headers["webhook-id"]
        with pytest.raises(Invalid, match="no_matching_signature"):
            sw_verify([outsider], headers, body, int(now))
    now = int(t0 + 24 * HOUR + 1)
    assert len(after["webhook-signature"].split(" ")) == 1
    assert sw_verify([new], after, h3, now)
    with pytest.raises(Invalid, match="no_matching_signature"):
        sw_verify([old], after, h3, now)
    assert len(other["webhook-signature"].split(" ")) == 1
    assert sw_verify([old], other, h4, int(t0 + 20))
    # the secrets never reach a log line or the console
    printed = capsys.readouterr()
    for secret in (old, new):
        assert secret not in caplog.text
        assert secret.removeprefix("whsec_") not in printed.out + printed.err


def test_secrets_are_sealed_at_rest(store_url: str, tmp_path: Path) -> None:
    old = generate_secret()
    store = _sealed_store(store_url, tmp_path)
    try:
        config = WebhookConfig(url="http://127.0.0.1:9/hook", secret=old)
        out = rotate_secret(store, CHANNEL, config, overlap_s=HOUR)
        with store.begin() as conn:
            rows = conn.execute(select(t.channel_secrets)).mappings().all()
        assert len(rows) == 2
        dump = repr([dict(r) for r in rows])
        for secret in (old, out.secret):
            assert secret.removeprefix("whsec_") not in dump
            assert base64.b64decode(secret.removeprefix("whsec_")).hex() not in dump
        assert all(str(r["sealed"]).startswith("JX1:jx_channel_secrets:") for r in rows)
        # a sealed secret moved to another channel does not open
        with store.begin() as conn:
            conn.execute(
                t.channel_secrets.update()
                .where(t.channel_secrets.c.id == out.secret_id)
                .values(channel="webhook.elsewhere")
            )
        from junction.core.errors import DecryptionError

        with pytest.raises(DecryptionError):
            load_secrets(store)
    finally:
        store.close()


def test_rotating_again_during_the_overlap_and_with_no_overlap(tmp_path: Path) -> None:
    store = _sealed_store(f"sqlite:///{tmp_path / 'j.db'}", tmp_path)
    try:
        old = generate_secret()
        config = WebhookConfig(url="http://127.0.0.1:9/hook", secret=old)
        t0 = 1_800_000_000.0
        first = rotate_secret(store, CHANNEL, config, overlap_s=24 * HOUR, now=t0)
        second = rotate_secret(store, CHANNEL, config, overlap_s=HOUR, now=t0 + 60)
        # an earlier secret keeps its own end unless the new overlap ends sooner, as here
        found = load_secrets(store)[CHANNEL]
        assert found[0][1] == second.secret
        assert {s for _id, s, _at in found} == {old, first.secret, second.secret}
        assert {at for _id, _s, at in found[1:]} == {t0 + 60 + HOUR}
        # an emergency rotation (a leaked secret): nothing old signs any more
        third = rotate_secret(store, CHANNEL, config, overlap_s=0, now=t0 + 120)
        assert third.retiring == ()
        assert [(s, at) for _id, s, at in load_secrets(store)[CHANNEL]] == [(third.secret, None)]
        assert [s.origin for s in list_secrets(store, CHANNEL)] == ["rotated"]
    finally:
        store.close()


def test_rotation_needs_encryption_at_rest(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'plain.db'}")
    try:
        config = WebhookConfig(url="http://127.0.0.1:9/hook", secret=generate_secret())
        with pytest.raises(ConfigError) as err:
            rotate_secret(store, CHANNEL, config)
        assert err.value.code == "encryption_required"
        assert "privacy:" in err.value.user_message
        with store.begin() as conn:
            assert conn.execute(select(t.channel_secrets)).all() == []
    finally:
        store.close()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("24h", 86400.0), ("90m", 5400.0), ("2d", 172800.0), ("30s", 30.0), ("0", 0.0)],
)
def test_overlaps(text: str, seconds: float) -> None:
    assert parse_overlap(text) == seconds


@pytest.mark.parametrize("text", ["", "-1h", "1w", "31d", "h"])
def test_bad_overlaps(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_overlap(text)


def test_only_webhook_channels_have_a_secret() -> None:
    channels: dict[str, dict[str, object]] = {
        "slack.ops": {"url": "http://127.0.0.1:9/"},
        CHANNEL: {"url": "http://127.0.0.1:9/", "secret": generate_secret(), "max_in_flight": 4},
    }
    assert webhook_options(channels, CHANNEL).url is not None
    with pytest.raises(ConfigError) as err:
        webhook_options(channels, "slack.ops")
    assert err.value.code == "channel_not_signed"
    with pytest.raises(ConfigError) as err:
        webhook_options(channels, "webhook.nope")
    assert err.value.code == "channel_not_found"


def test_workers_see_a_rotation_within_the_refresh_and_keep_keys_through_a_hiccup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from junction.core.errors import UnavailableError
    from junction.store import channel_secrets
    from outbound.webhook.config import secret_key_bytes

    store = _sealed_store(f"sqlite:///{tmp_path / 'j.db'}", tmp_path)
    try:
        old = generate_secret()
        config = WebhookConfig(url="http://127.0.0.1:9/hook", secret=old)
        mono = Clock(100.0)
        keys = StoreSigningKeys(store, refresh_s=5.0, clock=mono)
        assert asyncio.run(keys.signing_keys(CHANNEL)) is None
        out = rotate_secret(store, CHANNEL, config, overlap_s=HOUR)
        mono.now += 4.9
        assert asyncio.run(keys.signing_keys(CHANNEL)) is None  # the cache is still fresh
        mono.now += 0.1
        got = asyncio.run(keys.signing_keys(CHANNEL))
        assert got is not None
        assert got[0] == (secret_key_bytes(out.secret), None)
        assert got[1] == (secret_key_bytes(old), out.retiring[0][2])

        def down(_store: Store) -> None:
            raise UnavailableError("the store is unavailable")

        monkeypatch.setattr(channel_secrets, "load_secrets", down)
        mono.now += 5
        assert asyncio.run(keys.signing_keys(CHANNEL)) == got
        # a process that never read the secrets cannot sign with guesses: it fails the send
        with pytest.raises(UnavailableError):
            asyncio.run(StoreSigningKeys(store).signing_keys(CHANNEL))
    finally:
        store.close()


def test_concurrent_rotations_leave_exactly_one_current_secret(
    store_url: str, tmp_path: Path
) -> None:
    import threading

    store = _sealed_store(store_url, tmp_path)
    try:
        config = WebhookConfig(url="http://127.0.0.1:9/hook", secret=generate_secret())
        start = threading.Barrier(4)
        outs = []
        errors: list[BaseException] = []

        def rotate() -> None:
            start.wait()
            try:
                outs.append(rotate_secret(store, CHANNEL, config, overlap_s=HOUR))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=rotate) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=60)
        assert errors == []
        secrets_ = {o.secret for o in outs}
        assert len(secrets_) == 4
        assert all(len(base64.b64decode(s.removeprefix("whsec_"))) >= 24 for s in secrets_)
        rows = list_secrets(store, CHANNEL)
        current = [r for r in rows if r.retires_at is None]
        assert len(current) == 1
        # the config's secret was stored once (by the first rotation), never twice
        assert [r.origin for r in rows].count("config") == 1
        assert len(rows) == 5
    finally:
        store.close()


def test_a_kek_rotation_rewraps_the_channel_secrets_key(tmp_path: Path) -> None:
    from junction.store.crypto import load_kek

    url = f"sqlite:///{tmp_path / 'j.db'}"
    store = _sealed_store(url, tmp_path)
    try:
        config = WebhookConfig(url="http://127.0.0.1:9/hook", secret=generate_secret())
        out = rotate_secret(store, CHANNEL, config, overlap_s=HOUR)
        privacy = store.privacy()
        assert privacy is not None
        new_source = f"file:{tmp_path / 'kek2'}"
        with store.begin() as conn:
            privacy.keyring.rotate(conn, load_kek(new_source), new_source=new_source)
    finally:
        store.close()
    (tmp_path / "kek").unlink()  # the old KEK is gone: only the new one can open anything
    reopened = Store.open(url)
    try:
        assert load_secrets(reopened)[CHANNEL][0][1] == out.secret
    finally:
        reopened.close()


def test_keys_status_counts_people_not_the_channel_secrets_key(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from junction.cli.keys import app as keys_cli

    url = f"sqlite:///{tmp_path / 'j.db'}"
    store = _sealed_store(url, tmp_path)
    try:
        config = WebhookConfig(url="http://127.0.0.1:9/h", secret=generate_secret())
        rotate_secret(store, CHANNEL, config, overlap_s=0)
    finally:
        store.close()
    cfg = tmp_path / "junction.yaml"
    cfg.write_text(
        f'store: "{url}"\nmodels_dir: {tmp_path / "models"}\n'
        f"privacy:\n  kek: file:{tmp_path / 'kek'}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(keys_cli, ["status", "-c", str(cfg)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # the console wraps long lines
    assert "0 data keys; 0 erased subjects; channel secrets sealed" in text
