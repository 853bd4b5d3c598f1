"""Channel contract fixture: ``slack`` (incoming webhook mode) against the local Slack fake.

The fake (``tests.fakes.slack``) answers as Slack's incoming webhooks do (``200 ok``, 4xx with a
plain-text error code) and reads the delivery id off each message's ``metadata``; its faults:
``client_error`` → 400 ``invalid_payload``, ``server_error`` → 500 ``rollup_error``, ``hang`` →
no answer until the fixture ends.  The webhook URL is the credential, so it is the secret the
redaction check looks for.  chat.postMessage mode is covered by tests/unit/outbound/test_slack.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from outbound.base import Delivery
from tests.contract.channel_support import (
    SHORT_SCORE,
    ChannelContract,
    faults_contract,
    lead_delivery,
)
from tests.fakes.server import serve_app
from tests.fakes.slack import BOT_TOKEN, WEBHOOK_PATH, FakeSlack

RECORD = {"external_id": "L-1001", "email": "ada@example.com", "company": "<!channel>"}


def _delivery(delivery_id: str) -> Delivery:
    return lead_delivery(delivery_id, "slack.sales", RECORD, SHORT_SCORE)


@contextmanager
def contract(tmp_path: Path) -> Iterator[ChannelContract]:
    """The Slack channel's contract inputs, against a live fake."""
    fake = FakeSlack()

    with serve_app(fake.app) as base:
        url = f"{base}{WEBHOOK_PATH}"
        options = {
            "webhook_url": url,
            "templates": {"default": {"text": "{{ record.company }} scored {{ score.grade }}"}},
            "timeout_s": 5,
        }
        try:
            yield faults_contract(
                options,
                _delivery,
                fake.seen_ids,
                fake.faults,
                secrets=[url, WEBHOOK_PATH, BOT_TOKEN],
                bad_options=[
                    {**options, "bot_token": BOT_TOKEN},  # two modes at once
                    {**options, "webhook_url": url.replace("http", "ftp", 1)},
                    {"bot_token": BOT_TOKEN},  # no channel
                    {"bot_token": BOT_TOKEN + "\r\nX-Evil: 1", "channel": "C0SALES01"},
                ],
            )
        finally:
            fake.release()
