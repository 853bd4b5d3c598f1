"""Channel contract fixture: ``email_sendgrid`` against the local SendGrid Mail Send fake.

The real sendgrid SDK posts to ``tests.fakes.sendgrid``; the idempotency key read off the wire is
the ``delivery_id`` custom arg (SendGrid echoes it in every event about the message).  Faults:
``client_error`` → 400, ``server_error`` → 500, ``hang`` → no answer until the fixture ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from outbound.base import Delivery
from tests.contract.channel_support import ChannelContract, faults_contract, lead_delivery
from tests.fakes.sendgrid import API_KEY, served_fake

RECORD = {"external_id": "L-1001", "email": "ada@example.com", "company": "Initech"}


def _delivery(delivery_id: str) -> Delivery:
    return lead_delivery(delivery_id, "email_sendgrid.sales", RECORD)


def options_for(base: str) -> dict[str, Any]:
    """Valid channel options pointing at a fake at ``base``."""
    return {
        "api_key": API_KEY,
        "host": base,
        "from_email": "alerts@junction.example",
        "from_name": "Junction",
        "to": ["sales@example.com"],
        "templates": {
            "default": {
                "subject": "Lead {{ record.company }} scored {{ score.grade }}",
                "text": "{{ record.email }}: {{ score.value }}",
                "html": "<p>{{ record.email }}: {{ score.value }}</p>",
            }
        },
        "timeout_s": 5,
    }


@contextmanager
def contract(tmp_path: Path) -> Iterator[ChannelContract]:
    """The SendGrid email channel's contract inputs, against a live fake."""
    with served_fake() as fake:
        options = options_for(fake.base)
        yield faults_contract(
            options,
            _delivery,
            fake.seen_ids,
            fake.faults,
            secrets=[API_KEY, API_KEY.removeprefix("SG.")],
            bad_options=[
                {**options, "from_name": "Junction\r\nBcc: evil@example.com"},
                {**options, "templates": {"other": options["templates"]["default"]}},
                {**options, "api_key": API_KEY, "to": ["not an address"]},
            ],
        )
