"""Channel contract fixture: ``sms_twilio`` with the real twilio SDK against the local Twilio fake.

The delivery id travels in the StatusCallback URL (``?delivery_id=``); the fake reads it off each
request it accepts, which is what ``seen_ids`` returns.  Faults: ``client_error`` → 400 code 21408,
``server_error`` → 500, ``hang`` → the answer waits past the 0.5 s timeout.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from outbound.base import Delivery
from tests.contract.channel_support import SHORT_SCORE, ChannelContract, lead_delivery
from tests.fakes.server import serve_app
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, TwilioFake

CHANNEL = "sms_twilio.contract"
CALLBACK = f"https://hub.example.com/callbacks/twilio/{CHANNEL}/status"


RECORD = {
    "external_id": "L-1001",
    "name": "Ada Lovelace",
    "phone": "+44 20 7946 0958",
    "company": "Initech",
}


def _delivery(delivery_id: str) -> Delivery:
    return lead_delivery(delivery_id, CHANNEL, RECORD, SHORT_SCORE)


@contextmanager
def contract(tmp_path: Path) -> Iterator[ChannelContract]:
    """The Twilio SMS channel's contract inputs, against a live fake."""
    fake = TwilioFake(hang_s=3.0)
    with serve_app(fake.app()) as base:
        options = {
            "account_sid": ACCOUNT_SID,
            "auth_token": AUTH_TOKEN,
            "from": "+14155550100",
            "to_path": "record.phone",
            "templates": {
                "default": {"body": "Hot lead {{ record.name }} ({{ score.grade }})"},
            },
            "status_callback": CALLBACK,
            "api_base": base,
            "timeout_s": 5,
        }
        yield ChannelContract(
            options=options,
            delivery=_delivery,
            seen_ids=fake.seen_ids,
            fail_next=fake.fail_next,
            timeout_options={**options, "timeout_s": 0.5},
            secrets=[AUTH_TOKEN],
            bad_options=[
                {**options, "auth_token": "short"},
                {**options, "from": "12"},
                {**options, "templates": {"hot": {"body": "x"}}},
                {**options, "account_sid": AUTH_TOKEN},
            ],
        )
