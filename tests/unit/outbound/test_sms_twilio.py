"""The Twilio SMS channel with the real twilio SDK against the local Twilio fake.

Covers the segment table (GSM-7 basic and extension characters, UCS-2 with Cyrillic and emoji),
quiet hours across zones, midnight and a daylight-saving change, E.164 normalization, the error
classification of every Twilio answer, recipients and exclusions, templates and redaction.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, time
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import orjson
import pytest

from junction.core.errors import (
    AuthError,
    ConfigError,
    DeferredError,
    FatalError,
    RateLimitedError,
    RecipientRejectedError,
    RecordError,
    RemoteTimeoutError,
    UnavailableError,
)
from outbound.base import AddressedChannel, Delivery, Recipient
from outbound.sms_twilio import TwilioSmsChannel, TwilioSmsConfig
from outbound.sms_twilio.client import TwilioSender
from outbound.sms_twilio.phones import to_e164, zone_of_number
from outbound.sms_twilio.quiet_hours import QuietWindow, parse_clock
from outbound.sms_twilio.segments import count_segments
from tests.fakes.server import serve_app
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, TwilioFake

LEAD = "+14155550123"
OTHER = "+14155550124"
LONDON = "+442079460958"
SENDER = "+14155550100"
CALLBACK = "https://hub.example.com/callbacks/twilio/sms_twilio.ops/status"


# --- segments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "encoding", "characters", "units", "segments"),
    [
        pytest.param("", "GSM-7", 0, 0, 0, id="empty"),
        pytest.param("a" * 160, "GSM-7", 160, 160, 1, id="gsm-160-one"),
        pytest.param("a" * 161, "GSM-7", 161, 161, 2, id="gsm-161-two"),
        pytest.param("a" * 306, "GSM-7", 306, 306, 2, id="gsm-306-two"),
        pytest.param("a" * 307, "GSM-7", 307, 307, 3, id="gsm-307-three"),
        pytest.param("Grüße à Çà £5 @ Ñ", "GSM-7", 17, 17, 1, id="gsm-basic-accents"),
        pytest.param("€" * 80, "GSM-7", 80, 160, 1, id="euro-counts-two"),
        pytest.param("€" * 81, "GSM-7", 81, 162, 2, id="euro-81-two"),
        pytest.param("^" + "a" * 159, "GSM-7", 160, 161, 2, id="caret-pushes-over"),
        pytest.param("{}[]~|\\", "GSM-7", 7, 14, 1, id="extension-table"),
        # an escape pair is never split: the € opens segment 2, and 152 a's spill into a third
        pytest.param("a" * 152 + "€" + "a" * 152, "GSM-7", 305, 306, 3, id="escape-not-split"),
        pytest.param("Привет", "UCS-2", 6, 6, 1, id="cyrillic"),
        pytest.param("Я" * 70, "UCS-2", 70, 70, 1, id="ucs2-70-one"),
        pytest.param("Я" * 71, "UCS-2", 71, 71, 2, id="ucs2-71-two"),
        pytest.param("Я" * 134, "UCS-2", 134, 134, 2, id="ucs2-134-two"),
        pytest.param("Я" * 135, "UCS-2", 135, 135, 3, id="ucs2-135-three"),
        pytest.param("a" * 159 + "ê", "UCS-2", 160, 160, 3, id="one-non-gsm-char-switches"),
        pytest.param("😀", "UCS-2", 1, 2, 1, id="emoji-surrogate-pair"),
        pytest.param("😀" * 35, "UCS-2", 35, 70, 1, id="emoji-35-one"),
        pytest.param("😀" * 36, "UCS-2", 36, 72, 2, id="emoji-36-two"),
        # a surrogate pair is never split across segments
        pytest.param("a" * 66 + "😀" + "a" * 66, "UCS-2", 133, 134, 3, id="pair-not-split"),
        pytest.param("Hot lead `x`", "UCS-2", 12, 12, 1, id="backtick-is-not-gsm"),
    ],
)
def test_segments(body, encoding, characters, units, segments):
    info = count_segments(body)
    assert (info.encoding, info.characters, info.units, info.segments) == (
        encoding,
        characters,
        units,
        segments,
    )


# --- quiet hours ----------------------------------------------------------------------------

NIGHT = QuietWindow(time(21, 0), time(8, 0))


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "now", "expected"),
    [
        pytest.param("Europe/Berlin", _utc(2026, 1, 15, 20, 30), 10.5 * 3600, id="berlin-2130"),
        pytest.param("America/New_York", _utc(2026, 1, 15, 20, 30), None, id="new-york-1530"),
        pytest.param("Europe/Berlin", _utc(2026, 1, 15, 6, 0), 3600, id="berlin-0700"),
        pytest.param("Europe/Berlin", _utc(2026, 1, 15, 7, 0), None, id="berlin-0800-end-open"),
        pytest.param("Europe/Berlin", _utc(2026, 1, 15, 20, 0), 11 * 3600, id="berlin-2100-start"),
        pytest.param("Europe/Berlin", _utc(2026, 1, 15, 23, 0), 8 * 3600, id="at-midnight"),
        pytest.param("Asia/Tokyo", _utc(2026, 1, 15, 20, 30), 2.5 * 3600, id="tokyo-0530"),
        pytest.param("Asia/Kolkata", _utc(2026, 1, 15, 16, 0), 10.5 * 3600, id="half-hour-zone"),
        # 22:00 on the nights the clocks change: 08:00 is 9 (spring) or 11 (autumn) real hours away
        pytest.param("Europe/Berlin", _utc(2026, 3, 28, 21, 0), 9 * 3600, id="dst-spring"),
        pytest.param("Europe/Berlin", _utc(2026, 10, 24, 20, 0), 11 * 3600, id="dst-autumn"),
    ],
)
def test_quiet_hours_wrapping_midnight(zone, now, expected):
    assert NIGHT.seconds_left(ZoneInfo(zone), now) == expected


def test_quiet_hours_within_one_day():
    lunch = QuietWindow(time(12, 0), time(14, 0))
    zone = ZoneInfo("UTC")
    assert lunch.seconds_left(zone, _utc(2026, 1, 15, 13, 0)) == 3600
    assert lunch.seconds_left(zone, _utc(2026, 1, 15, 14, 0)) is None
    assert lunch.seconds_left(zone, _utc(2026, 1, 15, 11, 59)) is None


@pytest.mark.parametrize("bad", ["9:00", "24:00", "12:60", "noon", "12-00", ""])
def test_clock_format_is_strict(bad):
    with pytest.raises(ValueError, match=r"HH:MM|between"):
        parse_clock(bad)


def test_an_empty_window_is_refused():
    with pytest.raises(ValueError, match="different"):
        QuietWindow(time(8, 0), time(8, 0))


# --- E.164 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        pytest.param("+1 (415) 555-0123", None, LEAD, id="formatted-us"),
        pytest.param("415-555-0123", "US", LEAD, id="national-us"),
        pytest.param("020 7946 0958", "GB", LONDON, id="national-gb"),
        pytest.param("+44 (0)20 7946 0958", None, LONDON, id="gb-with-trunk-zero"),
        pytest.param("00442079460958", "DE", LONDON, id="international-prefix"),
        pytest.param("020 7946 0958", None, None, id="national-without-region"),
        pytest.param("+1 415 555", None, None, id="too-short"),
        pytest.param("call me", "US", None, id="not-a-number"),
        pytest.param("+" + "1" * 70, None, None, id="too-long"),
        pytest.param(4155550123, "US", None, id="not-a-string"),
    ],
)
def test_e164(raw, region, expected):
    assert to_e164(raw, region) == expected


def test_zone_of_a_number_only_when_unambiguous():
    assert zone_of_number(LONDON) == "Europe/London"
    assert zone_of_number("+79161234567") is None  # Russia spans many zones


# --- config ---------------------------------------------------------------------------------


def _options(base: str | None = None, **over: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "from": SENDER,
        "to_path": "record.phone",
        "templates": {
            "default": {"body": "Hot lead {{ record.name }} ({{ score.grade }})"},
            "short": {"body": "Lead {{ record.name }}"},
            "long": {"body": "{{ record.notes }}"},
        },
        "status_callback": CALLBACK,
        "timeout_s": 5,
    }
    if base is not None:
        options["api_base"] = base
    options.update(over)
    return options


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"from": None}, "from", id="no-sender"),
        pytest.param({"to_path": None}, "to_path", id="no-recipient-rule"),
        pytest.param({"to": ["12"]}, "to\\[0\\]", id="bad-static-number"),
        pytest.param({"templates": {"hot": {"body": "x"}}}, "default", id="no-default-template"),
        pytest.param({"templates": {"default": {"body": "{{ x"}}}, "compile", id="bad-template"),
        pytest.param({"to_path": "record.["}, "JMESPath", id="bad-path"),
        pytest.param({"default_region": "XX"}, "region", id="bad-region"),
        pytest.param({"quiet_hours": {"start": "21:00", "end": "21:00"}}, "differ", id="empty"),
        pytest.param(
            {"quiet_hours": {"start": "21:00", "end": "08:00", "default_timezone": "Mars/Base"}},
            "IANA",
            id="bad-zone",
        ),
        pytest.param({"surprise": 1}, "Extra", id="unknown-key"),
    ],
)
def test_config_refuses(change, message):
    options = _options(**change)
    options = {k: v for k, v in options.items() if v is not None}
    with pytest.raises(ValueError, match=message) as err:
        TwilioSmsConfig.model_validate(options)
    assert AUTH_TOKEN not in str(err.value)


def test_config_accepts_from_or_from_():
    a = TwilioSmsConfig.model_validate(_options())
    b = TwilioSmsConfig.model_validate(
        {**{k: v for k, v in _options().items() if k != "from"}, "from_": "+1 415 555 0100"}
    )
    assert a.from_ == b.from_ == SENDER
    assert AUTH_TOKEN not in repr(a)
    assert LEAD not in repr(TwilioSmsConfig.model_validate(_options(to=[LEAD])))


# --- the channel against the fake -----------------------------------------------------------


@pytest.fixture
def fake() -> TwilioFake:
    return TwilioFake(stopped={OTHER}, landlines={LONDON}, hang_s=2.0)


@pytest.fixture
def base(fake: TwilioFake) -> Iterator[str]:
    with serve_app(fake.app()) as url:
        yield url


def _delivery(
    delivery_id: str = "d-1",
    *,
    phone: Any = LEAD,
    name: str = "Ada",
    template: str | None = None,
    exclude: frozenset[str] = frozenset(),
    **record: Any,
) -> Delivery:
    event = {
        "type": "lead.scored",
        "record_id": "leads:1",
        "record": {"name": name, "phone": phone, **record},
        "score": {"value": 0.9, "grade": "A"},
    }
    return Delivery(
        delivery_id,
        "sms_twilio.ops",
        "lead.scored",
        orjson.dumps(event),
        template=template,
        exclude=exclude,
    )


def _send(channel: TwilioSmsChannel, *deliveries: Delivery) -> list[Any]:
    async def go() -> list[Any]:
        out: list[Any] = []
        try:
            for d in deliveries:
                try:
                    out.append(await channel.send(d))
                except Exception as exc:  # the typed error is the outcome under test
                    out.append(exc)
        finally:
            await channel.aclose()
        return out

    return asyncio.run(go())


def test_send_gives_a_receipt_with_sid_and_segments(fake, base):
    # the route reveals names here: the body must keep its ë (UCS-2) for the segment figures
    delivery = dataclasses.replace(_delivery(name="Zoë"), reveal_pii=True)
    (receipt,) = _send(TwilioSmsChannel(_options(base)), delivery)
    (message,) = fake.messages
    assert receipt.remote_id == message["sid"]
    assert receipt.remote_id.startswith("SM")
    assert receipt.status_code == 201
    assert message["to"] == LEAD
    assert message["from"] == SENDER
    assert message["body"] == "Hot lead Zoë (A)"
    assert receipt.detail["encoding"] == "UCS-2"  # ë is not in GSM 03.38
    assert receipt.detail["segments"] == 1
    assert receipt.detail["characters"] == 16
    callback = urlsplit(message["status_callback"])
    assert callback.netloc == "hub.example.com"
    assert parse_qs(callback.query) == {"delivery_id": ["d-1"]}
    assert fake.seen_ids() == ["d-1"]


def test_callback_url_from_public_url(fake, base):
    options = {k: v for k, v in _options(base).items() if k != "status_callback"}
    options["public_url"] = "https://hub.example.com/junction/"
    _send(TwilioSmsChannel(options), _delivery("d-7"))
    assert fake.messages[0]["status_callback"] == (
        "https://hub.example.com/junction/callbacks/twilio/sms_twilio.ops/status?delivery_id=d-7"
    )


def test_messaging_service_instead_of_a_number(fake, base):
    options = {k: v for k, v in _options(base).items() if k != "from"}
    options["messaging_service_sid"] = "MG" + "a" * 32
    _send(TwilioSmsChannel(options), _delivery())
    assert fake.messages[0]["messaging_service_sid"] == "MG" + "a" * 32
    assert fake.messages[0]["from"] is None


def test_route_template_and_unknown_template(fake, base):
    _short, missing = _send(
        TwilioSmsChannel(_options(base)),
        _delivery("d-1", template="short"),
        _delivery("d-2", template="nope"),
    )
    assert fake.messages[0]["body"] == "Lead A."  # names are masked unless the route reveals
    assert isinstance(missing, ConfigError)
    assert "nope" in missing.user_message


def test_too_many_segments_is_a_record_error_and_nothing_is_sent(fake, base):
    channel = TwilioSmsChannel(_options(base, max_segments=2))
    (err,) = _send(channel, _delivery(template="long", notes="x" * 307))
    assert isinstance(err, RecordError)
    assert err.code == "sms_too_long"
    assert err.context["segments"] == 3
    assert fake.messages == []


def test_invalid_number_is_a_record_error_without_the_number(fake, base):
    (err,) = _send(TwilioSmsChannel(_options(base)), _delivery(phone="+1 415 555"))
    assert isinstance(err, RecordError)
    assert err.code == "invalid_phone"
    assert "415" not in str(err)
    assert "415" not in orjson.dumps(err.to_dict()).decode()
    (none,) = _send(TwilioSmsChannel(_options(base)), _delivery(phone=None))
    assert isinstance(none, RecordError)
    assert fake.messages == []


def test_national_numbers_use_default_region(fake, base):
    _send(TwilioSmsChannel(_options(base, default_region="US")), _delivery(phone="(415) 555-0123"))
    assert fake.messages[0]["to"] == LEAD


def test_recipients_and_exclude(fake, base):
    channel = TwilioSmsChannel(_options(base, to=["415 555 0100"], default_region="US"))
    assert isinstance(channel, AddressedChannel)
    delivery = _delivery(phone=[LEAD, "+1 415 555 0123"])
    assert channel.recipients(delivery) == [Recipient("phone", SENDER), Recipient("phone", LEAD)]
    (receipt,) = _send(channel, _delivery(phone=LEAD, exclude=frozenset({SENDER})))
    assert [m["to"] for m in fake.messages] == [LEAD]
    assert receipt.detail["excluded"] == 1
    assert receipt.detail["messages"] == 1
    (everyone_out,) = _send(
        TwilioSmsChannel(_options(base)), _delivery("d-2", exclude=frozenset({LEAD}))
    )
    assert everyone_out.remote_id is None
    assert everyone_out.detail == {"messages": 0, "excluded": 1}
    assert len(fake.messages) == 1


@pytest.mark.parametrize(
    ("phone", "reason"),
    [pytest.param(OTHER, "stop", id="21610-stop"), pytest.param(LONDON, "invalid", id="21614")],
)
def test_rejected_recipient(fake, base, phone, reason):
    (err,) = _send(TwilioSmsChannel(_options(base)), _delivery(phone=phone))
    assert isinstance(err, RecipientRejectedError)
    assert (err.kind, err.address, err.reason) == ("phone", phone, reason)
    assert phone not in str(err)
    assert phone not in orjson.dumps(err.to_dict()).decode()
    assert fake.messages == []


def test_invalid_to_from_twilio_is_a_record_error(base):
    sender = TwilioSender(TwilioSmsConfig.model_validate(_options(base)))
    try:
        with pytest.raises(RecordError) as err:
            sender.send(to="12345", body="hi", status_callback=None)
    finally:
        sender.close()
    assert err.value.context["twilio_code"] == 21211
    assert "12345" not in str(err.value)


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        pytest.param("client_error", FatalError, id="400-fatal"),
        pytest.param("server_error", UnavailableError, id="500-unavailable"),
        pytest.param("rate_limit", RateLimitedError, id="429-rate-limited"),
    ],
)
def test_faults_are_classified(fake, base, kind, error):
    fake.fail_next(kind, 1)
    err, ok = _send(TwilioSmsChannel(_options(base)), _delivery("d-1"), _delivery("d-2"))
    assert type(err) is error
    assert not isinstance(ok, Exception)
    if kind == "rate_limit":
        assert err.retry_after == 7.0
    assert fake.seen_ids() == ["d-2"]


def test_wrong_token_is_an_auth_error(base):
    (err,) = _send(TwilioSmsChannel(_options(base, auth_token="wrong-token-123")), _delivery())
    assert isinstance(err, AuthError)
    assert err.context == {"status_code": 401, "twilio_code": 20003}


def test_no_answer_in_time_is_a_timeout(fake, base):
    fake.fail_next("hang", 1)
    (err,) = _send(TwilioSmsChannel(_options(base, timeout_s=0.3)), _delivery())
    assert isinstance(err, RemoteTimeoutError)


def test_nobody_listening_is_unavailable():
    with serve_app(TwilioFake().app()) as gone:
        pass  # the server is stopped: its port refuses connections
    (err,) = _send(TwilioSmsChannel(_options(gone)), _delivery())
    assert isinstance(err, UnavailableError)


def _clock(at: datetime) -> Any:
    return lambda: at.timestamp()


QUIET = {"start": "21:00", "end": "08:00", "timezone_path": "record.timezone"}


def test_quiet_hours_defer_until_the_recipients_morning(fake, base):
    at = _utc(2026, 1, 15, 23, 0)  # 15:00 in Los Angeles, 08:00 next day in Tokyo
    options = _options(base, quiet_hours=QUIET)
    la, tokyo = _send(
        TwilioSmsChannel(options, clock=_clock(at)),
        _delivery("d-la", timezone="America/Los_Angeles"),
        _delivery("d-tokyo", timezone="Asia/Tokyo"),
    )
    assert la.remote_id is not None
    assert tokyo.remote_id is not None
    at = _utc(2026, 1, 15, 12, 0)  # 04:00 in Los Angeles, 21:00 in Tokyo
    la, tokyo = _send(
        TwilioSmsChannel(options, clock=_clock(at)),
        _delivery("d-la2", timezone="America/Los_Angeles"),
        _delivery("d-tokyo2", timezone="Asia/Tokyo"),
    )
    assert isinstance(la, DeferredError)
    assert la.retry_after == 4 * 3600
    assert isinstance(tokyo, DeferredError)
    assert tokyo.retry_after == 11 * 3600
    assert la.code == "quiet_hours"
    assert la.retryable
    assert fake.seen_ids() == ["d-la", "d-tokyo"]


def test_quiet_hours_zone_falls_back_to_number_then_default(fake, base):
    at = _utc(2026, 1, 15, 22, 0)  # 22:00 in London, 23:00 in Berlin, 17:00 in New York
    options = _options(base, quiet_hours={**QUIET, "default_timezone": "America/New_York"}, to=[])
    unknown_zone, by_default = _send(
        TwilioSmsChannel(options, clock=_clock(at)),
        _delivery("d-1", phone=OTHER.replace("24", "25"), timezone="Not/AZone"),
        _delivery("d-2", phone=LEAD),
    )
    # +1 415 is in one zone by its numbering plan (Los Angeles, 14:00): sent
    assert unknown_zone.remote_id is not None
    assert by_default.remote_id is not None
    off = TwilioSmsChannel({**options, "zone_from_number": False}, clock=_clock(at))
    (sent,) = _send(off, _delivery("d-3", phone=LEAD))
    assert sent.remote_id is not None  # New York default, 17:00


def test_a_deferred_delivery_never_texts_the_awake_recipient_twice(fake, base):
    # a static London recipient (zone by number) and the lead in Los Angeles (zone from record)
    options = _options(base, quiet_hours=QUIET, to=["+44 20 7946 0959"])
    fake.landlines.clear()
    at = _utc(2026, 1, 15, 23, 0)  # 23:00 London: quiet; 15:00 Los Angeles: awake
    channel = TwilioSmsChannel(options, clock=lambda: at.timestamp())
    delivery = _delivery("d-1", timezone="America/Los_Angeles")

    async def go() -> list[Any]:
        nonlocal at
        out: list[Any] = []
        try:
            await channel.send(delivery)
        except DeferredError as exc:
            out.append(exc)
        at = _utc(2026, 1, 16, 8, 0)  # 08:00 London; 00:00 Los Angeles (quiet, but done)
        out.append(await channel.send(delivery))
        await channel.aclose()
        return out

    deferred, receipt = asyncio.run(go())
    assert deferred.retry_after == 9 * 3600
    assert [m["to"] for m in fake.messages] == [LEAD, "+442079460959"]
    assert receipt.detail["messages"] == 2


def test_nothing_secret_or_personal_is_logged(fake, base, caplog):
    caplog.set_level(logging.DEBUG)
    fake.fail_next("server_error", 1)
    _send(
        TwilioSmsChannel(_options(base)),
        _delivery("d-1"),
        _delivery("d-2"),
        _delivery("d-3", phone=OTHER),
    )
    assert AUTH_TOKEN not in caplog.text
    for number in (LEAD, OTHER, LEAD[1:], OTHER[1:]):
        assert number not in caplog.text
