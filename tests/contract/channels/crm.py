"""Channel contract fixture: ``crm`` (score write-back) against the fake Salesforce org.

The real simple-salesforce SDK logs in with the OAuth username-password flow and upserts by an
external id (``PATCH /composite/sobjects/Lead/External_Id__c``).  The write-back's idempotency key
is that external id: each contract delivery addresses a Lead whose ``External_Id__c`` is the
delivery id, so writing it twice upserts the same record with the same values.  ``seen_ids``
reads the external ids off the upsert bodies the org received.  Faults hit the collections call
only (never the login): ``client_error`` → 400 ``JSON_PARSER_ERROR``, ``server_error`` → 503,
``hang`` → the answer waits longer than ``timeout_options``' ``timeout_s``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from fastapi import Response

from outbound.base import Delivery
from tests.contract.channel_support import ChannelContract
from tests.fakes.salesforce import FakeOrg, options_for
from tests.fakes.salesforce_data import lead_fields
from tests.fakes.server import serve_app

EXTERNAL = "External_Id__c"
COLLECTIONS = "composite/sobjects"


@dataclass
class RecordingOrg(FakeOrg):
    """The fake org, also keeping the external ids of every upsert it received."""

    upserted: list[str] = field(default_factory=list)
    _seen_lock: threading.Lock = field(default_factory=threading.Lock)

    def _collections(
        self, payload: dict[str, Any], obj: str | None, ext_field: str | None
    ) -> Response:
        if ext_field is not None:
            with self._seen_lock:
                self.upserted.extend(str(r.get(ext_field)) for r in payload.get("records") or [])
        return super()._collections(payload, obj, ext_field)

    def seen_ids(self) -> list[str]:
        with self._seen_lock:
            return list(self.upserted)

    def fail_next(self, kind: str, n: int) -> None:
        if kind == "client_error":
            with self._lock:
                if n > 0:
                    self.answer_next[COLLECTIONS] = (400, "JSON_PARSER_ERROR")
                else:
                    self.answer_next.pop(COLLECTIONS, None)
            return
        fault = {"server_error": "server_error", "hang": "timeout"}[kind]
        self.faults.fail_next(fault, n, path_contains=COLLECTIONS)

    def lead_for(self, delivery_id: str) -> None:
        """Make sure a Lead with this external id exists (the record being scored)."""
        with self._lock:
            leads = self.records.get("Lead", {}).values()
            if any(r.get(EXTERNAL) == delivery_id for r in leads):
                return
        values = lead_fields(len(self.records.get("Lead", {})))
        values[EXTERNAL] = delivery_id
        self.insert("Lead", values)


def _delivery(org: RecordingOrg, delivery_id: str) -> Delivery:
    org.lead_for(delivery_id)
    event = {
        "type": "lead.scored",
        "record_id": f"sf_leads:{delivery_id}",
        "pipeline": "sf_leads",
        "entity": "lead",
        "source_key": delivery_id,
        "record": {"external_id": delivery_id, "email": "ada@example.com"},
        "score": {
            "value": 0.8765,
            "grade": "A",
            "top_factors": [["page_views", 0.81], ["industry=software", -0.1]],
            "model_version": "lead-score@1",
        },
    }
    return Delivery(delivery_id, "crm.sf", "lead.scored", orjson.dumps(event))


@contextmanager
def contract(tmp_path: Path) -> Iterator[ChannelContract]:
    """The crm channel's contract inputs, against a live fake Salesforce org."""
    org = RecordingOrg()
    # a hung collections call answers only after the short timeout has passed
    org.faults.delay_s = 2.0
    with serve_app(org.app()) as url:
        connection = options_for(org, url, "oauth_password")
        options = {
            "system": "salesforce",
            "connection": connection,
            "object": "Lead",
            "match": f"external_id:{EXTERNAL}",
            "target": "source_key",
            "fields": {"score.value_pct": "Score__c"},
            "batch_window_s": 0.01,
        }
        short = {**connection, "timeout_s": 0.5}
        without_username = {k: v for k, v in connection.items() if k != "username"}
        yield ChannelContract(
            options=options,
            delivery=lambda delivery_id: _delivery(org, delivery_id),
            seen_ids=org.seen_ids,
            fail_next=org.fail_next,
            timeout_options={**options, "connection": short},
            secrets=[org.client_secret, org.password],
            bad_options=[
                {**options, "connection": without_username},  # the auth needs a username
                {**options, "connection": {**connection, "auth": "passwrd"}},
                {**options, "match": "upsert"},
            ],
        )
