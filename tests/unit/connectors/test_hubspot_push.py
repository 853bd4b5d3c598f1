"""HubSpot webhooks end to end through the hub's API: v3 verified, parsed, fetched, stored once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from junction.api.verifiers.hubspot import sign_v3
from tests.api.harness import ApiHarness, running_api, write_api_config
from tests.fakes.hubspot import PRIVATE_TOKEN, HubSpotFake
from tests.fakes.server import serve_app
from tests.integration.helpers import rows_of, scalar

CLIENT_SECRET = "hubspot-app-client-secret-0123"
PUBLIC_URL = "https://hooks.example.com/hooks/hubspot"
T0 = 1_772_355_600_000

PIPELINE = """\
  hubspot-leads:
    source:
      connector: hubspot
      streams: [contacts]
      base_url: "{base}"
      access_token: "{token}"
      objects: [contacts]
      properties: {{contacts: [email, firstname, hs_analytics_num_page_views]}}
    mapping: hubspot.lead
    scoring: {{model: lead-score}}
    routes:
      - otherwise: [webhook.sales]
"""
HOOK = (
    '    hubspot: {{pipeline: hubspot-leads, verifier: hubspot, secret: "{secret}", '
    'options: {{public_url: "{public}"}}}}\n'
)


@pytest.fixture
def hub(tmp_path: Path, models_dir: Path) -> Iterator[tuple[ApiHarness, HubSpotFake, str]]:
    fake = HubSpotFake()
    store = f"sqlite:///{tmp_path / 'junction.db'}"
    with serve_app(fake.app) as base:
        cfg = write_api_config(tmp_path, store=store, models=models_dir)
        text = cfg.read_text()
        text = text.replace(
            "channels:", PIPELINE.format(base=base, token=PRIVATE_TOKEN) + "channels:", 1
        ).replace(
            "    partner:", HOOK.format(secret=CLIENT_SECRET, public=PUBLIC_URL) + "    partner:"
        )
        cfg.write_text(text)
        with running_api(cfg) as api:
            yield api, fake, store


def _deliver(api: ApiHarness, events: list[dict], *, secret: str = CLIENT_SECRET):
    body = json.dumps(events).encode()
    ts = str(int(time.time() * 1000))
    headers = {
        "content-type": "application/json",
        "x-hubspot-request-timestamp": ts,
        "x-hubspot-signature-v3": sign_v3(secret, "POST", PUBLIC_URL, body, ts),
        "x-hubspot-signature-version": "v3",
    }
    with httpx.Client(base_url=api.base_url, trust_env=False, timeout=10) as client:
        return client.post("/hooks/hubspot", content=body, headers=headers)


def _event(event_id: int, object_id: str, kind: str = "contact.propertyChange") -> dict:
    return {
        "eventId": event_id,
        "subscriptionId": 25,
        "portalId": 33,
        "occurredAt": T0,
        "subscriptionType": kind,
        "attemptNumber": 0,
        "objectId": int(object_id),
        "propertyName": "email",
        "propertyValue": "REDACTED",
    }


def test_events_are_verified_fetched_and_stored_once(hub):
    api, fake, store = hub
    a = fake.put("contacts", updated=T0, email="a@example.com", hs_analytics_num_page_views="4")
    b = fake.put("contacts", updated=T0 + 5, email="b@example.com")
    events = [
        _event(1001, a),
        _event(1002, b, "contact.creation"),
        _event(1003, a),  # the same record again
        _event(1004, "424242", "contact.deletion"),  # gone: nothing to fetch
        _event(1005, "77", "ticket.creation"),  # not a stream of this connector
    ]
    resp = _deliver(api, events)
    assert resp.status_code == 200, resp.text
    assert resp.json()["accepted"] == 2
    assert rows_of(store, "SELECT id FROM records ORDER BY id") == sorted(
        [
            (f"hubspot-leads:{a}@2026-03-01T09:00:00.000Z",),
            (f"hubspot-leads:{b}@2026-03-01T09:00:00.005Z",),
        ]
    )
    # one batch read for the two distinct ids
    reads = [body for kind, body in fake.batch_bodies if kind == "read"]
    assert [sorted(i["id"] for i in body["inputs"]) for body in reads] == [sorted([a, b, "424242"])]
    # HubSpot retries the delivery: acknowledged, nothing stored twice
    again = _deliver(api, events)
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert scalar(store, "SELECT count(*) FROM records") == 2
    # a later change of one record arrives as a new event: its new version is stored
    fake.touch("contacts", a, updated=T0 + 60_000, email="a2@example.com")
    assert _deliver(api, [_event(1006, a)]).status_code == 200
    assert scalar(store, "SELECT count(*) FROM records") == 3


def test_a_delivery_signed_with_another_secret_is_refused(hub):
    api, fake, store = hub
    a = fake.put("contacts", updated=T0, email="a@example.com")
    resp = _deliver(api, [_event(2001, a)], secret="not-the-client-secret")
    assert resp.status_code == 401
    assert scalar(store, "SELECT count(*) FROM records") == 0
    assert not [kind for kind, _b in fake.batch_bodies]  # nothing was fetched


def test_a_body_that_is_not_an_event_array_is_refused(hub):
    api, _fake, store = hub
    body = b'{"eventId": 1}'
    ts = str(int(time.time() * 1000))
    headers = {
        "x-hubspot-request-timestamp": ts,
        "x-hubspot-signature-v3": sign_v3(CLIENT_SECRET, "POST", PUBLIC_URL, body, ts),
    }
    with httpx.Client(base_url=api.base_url, trust_env=False, timeout=10) as client:
        resp = client.post("/hooks/hubspot", content=body, headers=headers)
    assert resp.status_code == 422
    assert scalar(store, "SELECT count(*) FROM records") == 0
