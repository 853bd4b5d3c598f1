"""SendGrid's signed event webhook: the verifier's known answers, then ``/callbacks/sendgrid``.

The known-answer vector (public key, signature, timestamp 1600112502 and payload) is the one in
sendgrid-python's ``test/unit/test_eventwebhook.py`` (MIT): its payload is
``json.dumps([...], sort_keys=True, separators=(",", ":")) + "\\r\\n"``, and without the trailing
CRLF it does not verify.  Requests through the API are signed with a local key pair made the way
SendGrid signs (``tests.fakes.sendgrid_events``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import select

from junction.api.verifiers.base import SignatureError, SignedRequest, VerifierSettings
from junction.api.verifiers.sendgrid import SendGridEventsVerifier
from junction.core.errors import ConfigError
from junction.core.pseudonym import Pseudonymizer
from junction.pipeline.state import state_dir
from junction.store import tables as t
from junction.store.suppressions import SuppressionList
from tests.api.harness import SIGNING_KEY, ApiHarness, running_api
from tests.fakes.sendgrid_events import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    EventSigner,
    event,
    events_body,
)
from tests.integration.helpers import insert_delivery

# sendgrid-python test/unit/test_eventwebhook.py
KAT_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw"
    "+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
)
KAT_SIGNATURE = (
    "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM"
    "="
)
KAT_TIMESTAMP = "1600112502"
KAT_EVENTS = [
    {
        "email": "hello@world.com",
        "event": "dropped",
        "reason": "Bounced Address",
        "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
        "sg_message_id": (
            "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0"
        ),
        "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
        "timestamp": 1600112492,
    }
]
KAT_BODY = (json.dumps(KAT_EVENTS, sort_keys=True, separators=(",", ":")) + "\r\n").encode()
# another valid P-256 key (sendgrid-nodejs's eventwebhook test key), not the one that signed
OTHER_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQG"
    "hHPTnlvFYPAZFceEu/1FwCM/QmGUhA=="
)
KAT_NOW = 1600112502.0 + 5
SIG, TS = SIGNATURE_HEADER.lower(), TIMESTAMP_HEADER.lower()


def verifier(key: str = KAT_PUBLIC_KEY, tolerance_s: int = 300) -> SendGridEventsVerifier:
    settings = VerifierSettings(
        source="sendgrid:email_sendgrid.sales",
        secret=None,
        tolerance_s=tolerance_s,
        options={"public_key": key},
    )
    return SendGridEventsVerifier(settings)


def signed(body: bytes, signature: str = KAT_SIGNATURE, ts: str = KAT_TIMESTAMP) -> SignedRequest:
    headers = {SIGNATURE_HEADER.lower(): signature, TIMESTAMP_HEADER.lower(): ts}
    return SignedRequest("POST", "https://hub.example/callbacks/sendgrid/sales", headers, body)


def reason(request: SignedRequest, v: SendGridEventsVerifier | None = None, **kw) -> str:
    with pytest.raises(SignatureError) as info:
        (v or verifier()).verify(request, now=kw.get("now", KAT_NOW))
    return info.value.reason


# --- the verifier, on SendGrid's own vector ---------------------------------------------------


def test_the_sdk_vector_verifies():
    verified = verifier().verify(signed(KAT_BODY), now=KAT_NOW)
    assert verified.timestamp == 1600112502.0
    assert verified.event_id is None


def test_the_body_without_its_crlf_fails():
    assert reason(signed(KAT_BODY.rstrip(b"\r\n"))) == "no_match"


def test_reserialized_json_fails():
    assert reason(signed(json.dumps(KAT_EVENTS).encode())) == "no_match"


def test_a_wrong_key_fails():
    assert reason(signed(KAT_BODY), verifier(OTHER_PUBLIC_KEY)) == "no_match"


def test_a_tampered_signature_fails():
    tampered = KAT_SIGNATURE[:-6] + ("A" if KAT_SIGNATURE[-6] != "A" else "B") + KAT_SIGNATURE[-5:]
    assert reason(signed(KAT_BODY, signature=tampered)) in ("no_match", "bad_signature")


def test_another_timestamp_fails():
    assert reason(signed(KAT_BODY, ts="1600112503"), now=KAT_NOW) == "no_match"


@pytest.mark.parametrize(
    ("now", "why"), [(KAT_NOW + 301, "too_old"), (1600112502.0 - 301, "too_new")]
)
def test_outside_the_replay_window_is_stale(now, why):
    with pytest.raises(SignatureError) as info:
        verifier().verify(signed(KAT_BODY), now=now)
    assert info.value.reason == why
    assert info.value.code == "stale_timestamp"


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "missing_header"),
        ({TS: KAT_TIMESTAMP}, "missing_header"),
        (
            {SIGNATURE_HEADER.lower(): KAT_SIGNATURE, TIMESTAMP_HEADER.lower(): "1e9"},
            "bad_timestamp",
        ),
        (
            {SIGNATURE_HEADER.lower(): "%%%", TIMESTAMP_HEADER.lower(): KAT_TIMESTAMP},
            "bad_signature",
        ),
        ({SIGNATURE_HEADER.lower(): "AAAA", TIMESTAMP_HEADER.lower(): KAT_TIMESTAMP}, "no_match"),
    ],
    ids=["none", "no_signature", "bad_timestamp", "not_base64", "not_der"],
)
def test_malformed_headers_are_refused(headers, why):
    request = SignedRequest("POST", "https://hub.example/x", headers, KAT_BODY)
    assert reason(request) == why


def test_a_body_that_is_not_utf8_is_refused():
    assert reason(signed(b"\xff\xfe" + KAT_BODY)) == "not_utf8"


def test_a_bad_key_is_a_config_error():
    with pytest.raises(ConfigError):
        verifier("bm90IGEga2V5")


# --- the route ---------------------------------------------------------------------------------

CONFIG = """\
store: "{store}"
models_dir: {models}
channels:
  email_sendgrid.sales:
    api_key: "SG.api-key-never-shown.x"
    from_email: alerts@junction.example
    to: [sales@example.com]
    templates: {{default: {{subject: "Lead", text: "Lead"}}}}
    event_public_key: "{public_key}"
  email_sendgrid.quiet:
    api_key: "SG.api-key-never-shown.x"
    from_email: alerts@junction.example
    to: [sales@example.com]
    templates: {{default: {{subject: "Lead", text: "Lead"}}}}
api:
  signing_key: "{signing_key}"
  max_body_bytes: 65536
"""


@pytest.fixture(scope="module")
def signer() -> EventSigner:
    return EventSigner()


def _api(root: Path, store: str, signer: EventSigner) -> Iterator[ApiHarness]:
    path = root / "junction.yaml"
    path.write_text(
        CONFIG.format(
            store=store,
            models=root / "state" / "models",
            public_key=signer.public_key_b64,
            signing_key=SIGNING_KEY,
        ),
        encoding="utf-8",
    )
    with running_api(path) as h:
        yield h


@pytest.fixture
def api(tmp_path: Path, store_url: str, signer: EventSigner) -> Iterator[ApiHarness]:
    yield from _api(tmp_path, store_url, signer)


@pytest.fixture
def api_sqlite(tmp_path: Path, signer: EventSigner) -> Iterator[ApiHarness]:
    yield from _api(tmp_path, f"sqlite:///{tmp_path / 'junction.db'}", signer)


def post(
    h: ApiHarness,
    body: bytes,
    headers: dict[str, str],
    channel: str = "sales",
) -> httpx.Response:
    with h.http() as client:
        return client.post(f"/callbacks/sendgrid/{channel}", content=body, headers=headers)


def post_signed(
    h: ApiHarness, signer: EventSigner, events: list[dict], channel: str = "sales"
) -> httpx.Response:
    body = events_body(events)
    return post(h, body, signer.headers(body), channel)


def suppressions(h: ApiHarness) -> SuppressionList:
    return SuppressionList(h.ctx.store, Pseudonymizer.load(state_dir(h.ctx.cfg)))


def add_delivery(h: ApiHarness, delivery_id: str, remote_id: str | None = None) -> None:
    insert_delivery(
        h.ctx.store,
        delivery_id,
        record_id="leads:csv:L-1",
        channel="email_sendgrid.sales",
        remote_id=remote_id,
    )


def remote_status(h: ApiHarness, delivery_id: str) -> str | None:
    with h.ctx.store.begin() as conn:
        return conn.execute(
            select(t.deliveries.c.remote_status).where(t.deliveries.c.id == delivery_id)
        ).scalar_one()


def test_signed_events_are_accepted_and_set_the_remote_status(api, signer):
    add_delivery(api, "dlv-1")
    add_delivery(api, "dlv-2", remote_id="MSG2")
    events = [
        event("delivered", "ada@example.com", delivery_id="dlv-1"),
        event("open", "bob@example.com", message_id="MSG2"),
    ]
    r = post_signed(api, signer, events)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 2, "duplicates": 0}
    assert remote_status(api, "dlv-1") == "delivered"
    assert remote_status(api, "dlv-2") == "open"


def test_a_late_event_never_moves_the_status_back(api, signer):
    add_delivery(api, "dlv-1")
    post_signed(api, signer, [event("bounce", "ada@example.com", delivery_id="dlv-1")])
    post_signed(api, signer, [event("processed", "ada@example.com", delivery_id="dlv-1")])
    assert remote_status(api, "dlv-1") == "bounce"


def test_a_duplicate_sg_event_id_counts_once(api, signer):
    add_delivery(api, "dlv-1")
    bounce = event("bounce", "ada@example.com", delivery_id="dlv-1")
    first = post_signed(api, signer, [bounce, bounce])
    assert first.json() == {"accepted": 1, "duplicates": 1}
    again = post_signed(api, signer, [bounce])  # SendGrid's retry of the same batch
    assert again.json() == {"accepted": 0, "duplicates": 1}
    with api.ctx.store.begin() as conn:
        kinds = conn.execute(select(t.events.c.kind)).scalars().all()
    assert kinds == ["suppression.added"]


def test_a_bounce_suppresses_the_address_for_later_deliveries(api, signer):
    sl = suppressions(api)
    assert sl.suppressed("email", ["Ada@Example.com"]) == set()
    r = post_signed(api, signer, [event("bounce", "Ada@Example.com")])
    assert r.json() == {"accepted": 1, "duplicates": 0}
    # the next delivery's check finds it, however the address is spelt
    assert sl.suppressed("email", ["ada@example.com", "bob@example.com"]) == {"ada@example.com"}
    entry = sl.entry("email", "ada@example.com")
    assert entry is not None
    assert entry["reason"] == "bounce"
    assert entry["source"] == "sendgrid:email_sendgrid.sales"
    with api.ctx.store.begin() as conn:
        row = conn.execute(select(t.events)).one()
    assert row.kind == "suppression.added"
    assert row.subject == "email_sendgrid.sales"
    assert "ada@example.com" not in row.detail.lower()
    assert orjson.loads(row.detail)["address"] == sl.key("email", "ada@example.com")


@pytest.mark.parametrize("kind", ["dropped", "spamreport", "unsubscribe", "group_unsubscribe"])
def test_opt_outs_and_drops_suppress(api, signer, kind):
    post_signed(api, signer, [event(kind, "ada@example.com")])
    assert suppressions(api).suppressed("email", ["ada@example.com"]) == {"ada@example.com"}


@pytest.mark.parametrize(
    "ev",
    [
        event("delivered", "ada@example.com"),
        event("open", "ada@example.com"),
        event("bounce", "ada@example.com", type="blocked"),
    ],
    ids=["delivered", "open", "blocked"],
)
def test_other_events_do_not_suppress(api, signer, ev):
    assert post_signed(api, signer, [ev]).status_code == 200
    assert suppressions(api).suppressed("email", ["ada@example.com"]) == set()


def test_the_kat_through_the_api_is_stale(api):
    headers = {SIGNATURE_HEADER: KAT_SIGNATURE, TIMESTAMP_HEADER: KAT_TIMESTAMP}
    r = post(api, KAT_BODY, headers)
    assert r.status_code == 401
    assert r.json()["code"] == "stale_timestamp"


def test_unsigned_wrongly_signed_and_stripped_bodies_are_401(api, signer):
    body = events_body([event("bounce", "ada@example.com")])
    assert post(api, body, {}).status_code == 401
    other = EventSigner()
    assert post(api, body, other.headers(body)).json()["code"] == "invalid_signature"
    stripped = post(api, body.rstrip(b"\r\n"), signer.headers(body))
    assert stripped.status_code == 401
    stale = post(api, body, signer.headers(body, timestamp=int(time.time()) - 301))
    assert stale.json()["code"] == "stale_timestamp"
    assert suppressions(api).suppressed("email", ["ada@example.com"]) == set()


def test_unknown_channels_and_channels_without_a_key_are_404(api, signer):
    body = events_body([event("bounce", "ada@example.com")])
    assert post(api, body, signer.headers(body), "nosuch").status_code == 404
    assert post(api, body, signer.headers(body), "quiet").json()["code"] == "events_not_enabled"
    assert post(api, body, signer.headers(body), "webhook.sales").status_code == 404
    full = post(api, body, signer.headers(body), "email_sendgrid.sales")
    assert full.json() == {"accepted": 1, "duplicates": 0}


def test_a_verified_body_that_is_not_an_event_array_is_422(api, signer):
    body = b'{"event": "bounce"}'
    r = post(api, body, signer.headers(body))
    assert r.status_code == 422
    assert r.json()["code"] == "unexpected_shape"


def test_a_body_over_the_limit_is_413(api, signer):
    body = events_body([event("open", "ada@example.com", pad="x" * 70_000)])
    assert post(api, body, signer.headers(body)).status_code == 413


def test_a_store_failure_is_503_and_the_retry_applies_everything(api_sqlite, signer):
    h = api_sqlite
    body = events_body([event("bounce", "ada@example.com")])
    with h.ctx.store.begin() as conn:
        t.inbound_events.drop(conn)
    r = post(h, body, signer.headers(body))
    assert r.status_code == 503
    assert r.headers["retry-after"]
    assert suppressions(h).suppressed("email", ["ada@example.com"]) == set()
    with h.ctx.store.begin() as conn:
        t.inbound_events.create(conn)
    again = post(h, body, signer.headers(body))
    assert again.json() == {"accepted": 1, "duplicates": 0}
    assert suppressions(h).suppressed("email", ["ada@example.com"]) == {"ada@example.com"}
