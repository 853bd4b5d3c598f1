"""Twilio's callbacks over real HTTP: signatures, status changes once, opt-outs; both stores.

Requests are signed by the twilio SDK's own ``RequestValidator.compute_signature`` on the public
URL (``https://hub.example.com/...``), as Twilio signs them, and delivered to the hub on
127.0.0.1 (``tests.fakes.twilio.post_signed``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import orjson
import pytest
from sqlalchemy import select, text

from junction.api.verifiers.base import SignatureError, SignedRequest, VerifierSettings
from junction.api.verifiers.registry import default_verifiers
from junction.api.verifiers.twilio import TwilioVerifier
from junction.core.errors import ConfigError
from junction.core.pseudonym import Pseudonymizer
from junction.pipeline.state import state_dir
from junction.store import tables as t
from junction.store.suppressions import SuppressionList
from outbound.base import Delivery, Receipt
from outbound.sms_twilio import TwilioSmsChannel
from tests.api.harness import ApiHarness, running_api, write_api_config
from tests.fakes.server import serve_app
from tests.fakes.twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    TwilioFake,
    inbound_params,
    post_signed,
    signature,
    status_params,
)
from tests.integration.helpers import insert_delivery

CHANNEL = "sms_twilio.ops"
PUBLIC = "https://hub.example.com"
STATUS_URL = f"{PUBLIC}/callbacks/twilio/{CHANNEL}/status"
INBOUND_URL = f"{PUBLIC}/callbacks/twilio/{CHANNEL}/inbound"
LEAD = "+14155550123"
OUR_NUMBER = "+14155550100"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'

# the Twilio docs' known-answer vector (RELIABILITY.md C5)
KAT_TOKEN = "12345"
KAT_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
KAT_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
KAT_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="

CHANNEL_YAML = (
    f"  {CHANNEL}:\n"
    f'    account_sid: "{ACCOUNT_SID}"\n'
    f'    auth_token: "{AUTH_TOKEN}"\n'
    f'    from: "{OUR_NUMBER}"\n'
    "    to_path: record.phone\n"
    '    templates: {default: {body: "Hot lead {{ record.name }}"}}\n'
    f'    public_url: "{PUBLIC}"\n'
)


@pytest.fixture
def hub(tmp_path: Path, store_url: str, models_dir: Path) -> Iterator[ApiHarness]:
    path = write_api_config(tmp_path, store=store_url, models=models_dir)
    config = path.read_text(encoding="utf-8")
    path.write_text(config.replace("channels:\n", "channels:\n" + CHANNEL_YAML, 1), "utf-8")
    with running_api(path) as h:
        yield h


def _suppressions(hub: ApiHarness) -> SuppressionList:
    return SuppressionList(hub.ctx.store, Pseudonymizer.load(state_dir(hub.ctx.cfg)))


def _delivery(hub: ApiHarness, delivery_id: str, *, remote_id: str | None = None) -> None:
    insert_delivery(hub.ctx.store, delivery_id, channel=CHANNEL, remote_id=remote_id)


def _remote_status(hub: ApiHarness, delivery_id: str) -> tuple[str | None, str | None]:
    c = t.deliveries.c
    with hub.ctx.store.begin() as conn:
        row = conn.execute(select(c.remote_status, c.remote_id).where(c.id == delivery_id)).one()
    return row[0], row[1]


def _events(hub: ApiHarness, kind: str) -> list[dict[str, object]]:
    c = t.events.c
    with hub.ctx.store.begin() as conn:
        rows = conn.execute(select(c.subject, c.detail).where(c.kind == kind)).all()
    return [{"subject": r[0], **orjson.loads(r[1])} for r in rows]


def _inbound_events(hub: ApiHarness) -> list[str]:
    c = t.inbound_events.c
    with hub.ctx.store.begin() as conn:
        rows = conn.execute(select(c.event_id).where(c.source == f"twilio:{CHANNEL}")).all()
    return sorted(r[0] for r in rows)


def _message(sid: str = "SM" + "1" * 32, to: str = LEAD) -> dict[str, str]:
    return {"account_sid": ACCOUNT_SID, "sid": sid, "to": to, "from": OUR_NUMBER}


# --- the verifier ---------------------------------------------------------------------------


def _verifier(token: str = KAT_TOKEN, public_url: str | None = None) -> TwilioVerifier:
    options = {} if public_url is None else {"public_url": public_url}
    return TwilioVerifier(VerifierSettings(source="twilio:test", secret=token, options=options))


def _form(url: str, params: dict[str, str], sig: str | None) -> SignedRequest:
    headers = {} if sig is None else {"x-twilio-signature": sig}
    return SignedRequest("POST", url, headers, urlencode(params).encode())


def test_known_answer_vector():
    assert signature(KAT_TOKEN, KAT_URL, KAT_PARAMS) == KAT_SIGNATURE
    _verifier().verify(_form(KAT_URL, KAT_PARAMS, KAT_SIGNATURE), now=0)


@pytest.mark.parametrize(
    "received",
    [
        pytest.param(KAT_URL, id="as-signed"),
        pytest.param("https://mycompany.com:443/myapp.php?foo=1&bar=2", id="with-443"),
    ],
)
def test_vector_with_and_without_the_default_port(received):
    _verifier().verify(_form(received, KAT_PARAMS, KAT_SIGNATURE), now=0)


@pytest.mark.parametrize(
    "public_url",
    [
        pytest.param("https://mycompany.com", id="public-without-port"),
        pytest.param("https://mycompany.com:443", id="public-with-443"),
        pytest.param("https://mycompany.com/", id="public-trailing-slash"),
    ],
)
def test_vector_behind_a_proxy(public_url):
    # the hub received plain http on its own address; the public URL is what Twilio signed
    received = "http://127.0.0.1:8080/myapp.php?foo=1&bar=2"
    verifier = _verifier(public_url=public_url)
    verifier.verify(_form(received, KAT_PARAMS, KAT_SIGNATURE), now=0)
    with pytest.raises(SignatureError):
        _verifier().verify(_form(received, KAT_PARAMS, KAT_SIGNATURE), now=0)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param({"Digits": "1235"}, "no_match", id="tampered-param"),
        pytest.param({"Extra": ""}, "no_match", id="added-param"),
    ],
)
def test_vector_tampered(change, reason):
    with pytest.raises(SignatureError) as err:
        _verifier().verify(_form(KAT_URL, {**KAT_PARAMS, **change}, KAT_SIGNATURE), now=0)
    assert err.value.reason == reason


def test_missing_signature_and_shared_key_scheme():
    with pytest.raises(SignatureError) as err:
        _verifier().verify(_form(KAT_URL, KAT_PARAMS, None), now=0)
    assert err.value.reason == "missing_header"
    request = SignedRequest(
        "POST",
        KAT_URL,
        {
            "x-twilio-signature": KAT_SIGNATURE,
            "x-twilio-webhooks-signature-settings": "key=k1,algorithm=HMAC_SHA256",
        },
        urlencode(KAT_PARAMS).encode(),
    )
    with pytest.raises(SignatureError) as err:
        _verifier().verify(request, now=0)
    assert err.value.reason == "unsupported_algorithm"


def test_json_body_with_body_sha256():
    body = orjson.dumps({"MessageSid": "SM1", "MessageStatus": "delivered"})
    url = f"https://mycompany.com/hook?bodySHA256={hashlib.sha256(body).hexdigest()}"
    sig = signature(KAT_TOKEN, url, None)  # the URL alone is signed
    _verifier().verify(SignedRequest("POST", url, {"x-twilio-signature": sig}, body), now=0)
    tampered = body.replace(b"delivered", b"failed")
    with pytest.raises(SignatureError):
        _verifier().verify(SignedRequest("POST", url, {"x-twilio-signature": sig}, tampered), now=0)


def test_the_verifier_is_registered_for_hooks():
    settings = VerifierSettings(
        source="sms", secret=KAT_TOKEN, options={"public_url": "https://mycompany.com"}
    )
    verifier = default_verifiers.build("twilio", settings)
    received = "http://127.0.0.1:8080/myapp.php?foo=1&bar=2"
    verifier.verify(_form(received, KAT_PARAMS, KAT_SIGNATURE), now=0)
    with pytest.raises(ConfigError):
        default_verifiers.build("twilio", VerifierSettings(source="sms", secret=None))
    with pytest.raises(ConfigError):
        default_verifiers.build(
            "twilio", VerifierSettings(source="sms", secret="x", options={"public_url": "ftp:x"})
        )


def test_repeated_form_names_are_all_signed():
    pairs = [("MediaUrl", "https://a.example/2"), ("MediaUrl", "https://a.example/1")]
    url = "https://mycompany.com/hook"
    expected = "MediaUrlhttps://a.example/1MediaUrlhttps://a.example/2"
    sig = base64.b64encode(
        hmac.new(KAT_TOKEN.encode(), (url + expected).encode(), "sha1").digest()
    ).decode()
    request = SignedRequest("POST", url, {"x-twilio-signature": sig}, urlencode(pairs).encode())
    _verifier().verify(request, now=0)


# --- the routes -----------------------------------------------------------------------------


def test_status_callback_sets_remote_status_once(hub):
    _delivery(hub, "d-1")
    message = _message()
    url = f"{STATUS_URL}?delivery_id=d-1"
    for _ in range(2):  # Twilio retries: the replay changes nothing
        r = post_signed(hub.base_url, url, status_params(message, "sent"))
        assert r.status_code == 204, r.text
    assert _remote_status(hub, "d-1") == ("sent", None)
    r = post_signed(hub.base_url, url, status_params(message, "delivered"))
    assert r.status_code == 204
    assert _remote_status(hub, "d-1") == ("delivered", None)
    # a late "queued" (Twilio does not promise order) does not undo "delivered"
    r = post_signed(hub.base_url, url, status_params(message, "queued"))
    assert r.status_code == 204
    assert _remote_status(hub, "d-1") == ("delivered", None)
    sid = message["sid"]
    assert _inbound_events(hub) == [f"{sid}:delivered", f"{sid}:queued", f"{sid}:sent"]


def test_status_callback_without_delivery_id_maps_by_sid(hub):
    sid = "SM" + "2" * 32
    _delivery(hub, "d-2", remote_id=sid)
    r = post_signed(hub.base_url, STATUS_URL, status_params(_message(sid), "undelivered"))
    assert r.status_code == 204
    assert _remote_status(hub, "d-2") == ("undelivered", sid)


def test_signature_signed_with_the_default_port(hub):
    _delivery(hub, "d-3")
    url = f"{STATUS_URL}?delivery_id=d-3"
    with_port = url.replace(PUBLIC, PUBLIC + ":443")
    r = post_signed(hub.base_url, url, status_params(_message(), "sent"), signed_url=with_port)
    assert r.status_code == 204
    assert _remote_status(hub, "d-3")[0] == "sent"


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        pytest.param({"X-Twilio-Signature": ""}, AUTH_TOKEN, id="missing-header"),
        pytest.param({"X-Twilio-Signature": "AAAA"}, AUTH_TOKEN, id="wrong-signature"),
        pytest.param({}, "another-accounts-token", id="wrong-token"),
    ],
)
def test_unsigned_callbacks_are_refused(hub, headers, token):
    _delivery(hub, "d-4")
    url = f"{STATUS_URL}?delivery_id=d-4"
    r = post_signed(
        hub.base_url, url, status_params(_message(), "sent"), token=token, headers=headers
    )
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    assert _remote_status(hub, "d-4") == (None, None)
    r = post_signed(
        hub.base_url,
        INBOUND_URL,
        inbound_params(LEAD, OUR_NUMBER, "STOP"),
        token=token,
        headers=headers,
    )
    assert r.status_code == 403
    assert not _suppressions(hub).suppressed("phone", [LEAD])


def test_signed_for_another_path_is_refused(hub):
    params = inbound_params(LEAD, OUR_NUMBER, "STOP")
    r = post_signed(hub.base_url, INBOUND_URL, params, signed_url=STATUS_URL)
    assert r.status_code == 403


def test_json_status_callback_with_body_sha256(hub):
    _delivery(hub, "d-5")
    body = orjson.dumps({"MessageSid": "SM" + "5" * 32, "MessageStatus": "delivered"})
    digest = hashlib.sha256(body).hexdigest()
    public = f"{STATUS_URL}?delivery_id=d-5&bodySHA256={digest}"
    local = public.replace(PUBLIC, hub.base_url)
    headers = {"X-Twilio-Signature": signature(AUTH_TOKEN, public, None)}
    headers["content-type"] = "application/json"
    with httpx.Client(timeout=30, trust_env=False) as http:
        bad = http.post(local, content=body.replace(b"delivered", b"failed"), headers=headers)
        ok = http.post(local, content=body, headers=headers)
    assert bad.status_code == 403
    assert ok.status_code == 204
    assert _remote_status(hub, "d-5")[0] == "delivered"


def test_unknown_or_other_channels_are_404(hub):
    for name in ("sms_twilio.nope", "webhook.sales"):
        url = f"{PUBLIC}/callbacks/twilio/{name}/status"
        r = post_signed(hub.base_url, url, status_params(_message(), "sent"))
        assert r.status_code == 404


def test_status_21610_suppresses_the_recipient(hub):
    _delivery(hub, "d-6")
    message = _message(to="+1 415 555 0123")
    params = status_params(message, "failed", error_code=21610)
    r = post_signed(hub.base_url, f"{STATUS_URL}?delivery_id=d-6", params)
    assert r.status_code == 204
    suppressions = _suppressions(hub)
    assert suppressions.suppressed("phone", [LEAD, "+14155550124"]) == {LEAD}
    entry = suppressions.entry("phone", LEAD)
    assert entry is not None
    assert (entry["reason"], entry["source"]) == ("stop", f"twilio:{CHANNEL}")
    (event,) = _events(hub, "suppression.added")
    assert event["subject"] == CHANNEL
    assert event["address"] == suppressions.key("phone", LEAD)
    assert "4155550123" not in orjson.dumps(event).decode()
    # another failure code suppresses nobody
    other = status_params(_message("SM" + "7" * 32, to="+14155550124"), "failed", error_code=30003)
    assert post_signed(hub.base_url, STATUS_URL, other).status_code == 204
    assert suppressions.suppressed("phone", ["+14155550124"]) == set()


@pytest.mark.parametrize("keyword", ["STOP", " stop ", "Unsubscribe", "quit", "STOPALL", "cancel"])
def test_stop_reply_suppresses_and_start_lifts(hub, keyword):
    suppressions = _suppressions(hub)
    stop = inbound_params(LEAD, OUR_NUMBER, keyword)
    r = post_signed(hub.base_url, INBOUND_URL, stop)
    assert r.status_code == 200
    assert r.text == EMPTY_TWIML
    assert r.headers["content-type"].startswith("text/xml")
    assert suppressions.suppressed("phone", [LEAD]) == {LEAD}
    (event,) = _events(hub, "suppression.added")
    assert event["reason"] == "stop"
    assert LEAD[1:] not in orjson.dumps(event).decode()
    r = post_signed(hub.base_url, INBOUND_URL, inbound_params(LEAD, OUR_NUMBER, "Start"))
    assert r.status_code == 200
    assert suppressions.suppressed("phone", [LEAD]) == set()
    assert len(_events(hub, "suppression.lifted")) == 1
    # a late redelivery of the STOP is applied once only: the START stands
    assert post_signed(hub.base_url, INBOUND_URL, stop).status_code == 200
    assert suppressions.suppressed("phone", [LEAD]) == set()


@pytest.mark.parametrize("body", ["Stop by at 5?", "thanks", "", "STOP STOP"])
def test_other_replies_change_nothing(hub, body):
    r = post_signed(hub.base_url, INBOUND_URL, inbound_params(LEAD, OUR_NUMBER, body))
    assert r.status_code == 200
    assert r.text == EMPTY_TWIML
    assert _suppressions(hub).suppressed("phone", [LEAD]) == set()


def test_a_store_failure_answers_503_so_twilio_retries(tmp_path, models_dir):
    store = f"sqlite:///{tmp_path / 'junction.db'}"
    path = write_api_config(tmp_path, store=store, models=models_dir)
    config = path.read_text(encoding="utf-8")
    path.write_text(config.replace("channels:\n", "channels:\n" + CHANNEL_YAML, 1), "utf-8")
    with running_api(path) as h:
        with h.ctx.store.begin() as conn:
            conn.execute(text("DROP TABLE inbound_events"))
        r = post_signed(h.base_url, STATUS_URL, status_params(_message(), "sent"))
        assert r.status_code == 503
        assert r.headers["retry-after"]
        r = post_signed(h.base_url, INBOUND_URL, inbound_params(LEAD, OUR_NUMBER, "STOP"))
        assert r.status_code == 503


def test_the_channels_own_callback_url_maps_back_to_its_delivery(hub):
    """End to end: the channel sends through the fake, Twilio's callback finds the delivery."""
    fake = TwilioFake()
    _delivery(hub, "d-e2e")
    options = {**hub.ctx.cfg.channels[CHANNEL]}
    with serve_app(fake.app()) as api_base:
        channel = TwilioSmsChannel({**options, "api_base": api_base})
        delivery = Delivery(
            "d-e2e",
            CHANNEL,
            "lead.scored",
            orjson.dumps({"record": {"name": "Ada", "phone": LEAD}}),
        )

        async def go() -> Receipt:
            try:
                return await channel.send(delivery)
            finally:
                await channel.aclose()

        receipt = asyncio.run(go())
    (message,) = fake.messages
    assert message["status_callback"] == f"{STATUS_URL}?delivery_id=d-e2e"
    r = post_signed(hub.base_url, message["status_callback"], status_params(message, "delivered"))
    assert r.status_code == 204
    assert _remote_status(hub, "d-e2e") == ("delivered", None)
    assert receipt.remote_id == message["sid"]
