"""Webhook bodies in the source's own format: parsed by the connector, deduped per event,
fetched when they only name a record, stored, then acknowledged the way the source expects."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.api.harness import HOOK_SECRET, running_api, write_api_config
from tests.api.test_hooks import post, signed
from tests.contract.fixtures.fake import write_lead_mapping, write_source
from tests.integration.helpers import rows_of, scalar

EXTRA = """\
  crm:
    source: {{connector: fake, path: crm/source.jsonl, streams: [leads], push_ack_xml: {xml}}}
    mapping: fake_lead.yaml
    scoring: {{model: lead-score}}
    routes:
      - otherwise: [webhook.sales]
"""


def _lead(i: int, version: str, views: int = 1) -> dict:
    return {
        "stream": "leads",
        "id": f"00Q{i}",
        "updated_at": version,
        "email": f"l{i}@a.example",
        "views": views,
    }


@pytest.fixture(params=[False, True], ids=["json-ack", "xml-ack"])
def crm_api(request, tmp_path: Path, store_url: str, models_dir: Path):
    (tmp_path / "crm").mkdir()
    write_lead_mapping(tmp_path)
    cfg = write_api_config(tmp_path, store=store_url, models=models_dir)
    text = cfg.read_text()
    text = text.replace(
        "channels:", EXTRA.format(xml=str(request.param).lower()) + "channels:", 1
    ).replace(
        "    partner:",
        f'    crmhook: {{pipeline: crm, secret: "{HOOK_SECRET}"}}\n    partner:',
    )
    cfg.write_text(text)
    with running_api(cfg) as api:
        yield api, tmp_path / "crm" / "source.jsonl", store_url, request.param


def _send(api, events: list[dict], msg_id: str | None = None):
    body = orjson.dumps(events)
    return post(api, body, signed(body, msg_id=msg_id), source="crmhook")


def _accepted(resp, xml: bool, n: int) -> None:
    assert resp.status_code == 200, resp.text
    if xml:
        assert resp.headers["content-type"].startswith("text/xml")
        assert resp.content.startswith(b"<ack")
    else:
        assert resp.json()["accepted"] == n


def test_events_fetch_the_record_and_each_event_is_processed_once(crm_api):
    api, src, url, xml = crm_api
    write_source(src, [_lead(1, "2026-12-01T10:00:00Z"), _lead(2, "2026-12-01T10:00:05Z")])
    events = [
        {"eventId": "e1", "stream": "leads", "objectId": "00Q1"},
        {"eventId": "e2", "stream": "leads", "objectId": "00Q2"},
        {"eventId": "e3", "stream": "leads", "objectId": "00Q1"},  # the same record again
        {"eventId": "e4", "stream": "leads", "objectId": "00Q404"},  # deleted since
        {"eventId": "e5", "stream": "accounts", "objectId": "001A"},  # not this pipeline's
    ]
    _accepted(_send(api, events), xml, 2)
    assert scalar(url, "SELECT count(*) FROM records") == 2
    # the same delivery again (the sender retried): nothing new, acknowledged all the same
    again = _send(api, events)
    assert again.status_code == 200
    if not xml:
        assert again.json()["duplicate"] is True
    # one old and one new event: only the new one is processed; the record changed meanwhile
    write_source(src, [_lead(1, "2026-12-01T11:00:00Z", 9), _lead(2, "2026-12-01T10:00:05Z")])
    mixed = [events[0], {"eventId": "e6", "stream": "leads", "objectId": "00Q1"}]
    _accepted(_send(api, mixed), xml, 1)
    assert rows_of(url, "SELECT id FROM records ORDER BY id") == [
        ("crm:00Q1@2026-12-01T10:00:00Z",),
        ("crm:00Q1@2026-12-01T11:00:00Z",),
        ("crm:00Q2@2026-12-01T10:00:05Z",),
    ]
    seen = {r[0] for r in rows_of(url, "SELECT event_id FROM inbound_events")}
    assert {"e1", "e2", "e3", "e4", "e6"} <= seen


def test_an_older_pushed_version_is_stored_but_not_routed(crm_api):
    api, src, url, xml = crm_api
    write_source(src, [])
    newer = {"eventId": "n", "record": _lead(3, "2026-12-01T12:00:00Z", 20)}
    older = {"eventId": "o", "record": _lead(3, "2026-12-01T09:00:00Z", 2)}
    first = _send(api, [newer])
    _accepted(first, xml, 1)
    late = _send(api, [older])
    _accepted(late, xml, 1)
    if not xml:
        assert (first.json()["routed"], late.json()["routed"]) == (1, 0)
    assert scalar(url, "SELECT count(*) FROM records") == 2
    assert rows_of(url, "SELECT record_id FROM deliveries") == [("crm:00Q3@2026-12-01T12:00:00Z",)]


def test_an_unreadable_body_is_quarantined_and_refused(crm_api):
    api, _src, url, _xml = crm_api
    body = b'{"not": "an array"}'
    resp = post(api, body, signed(body), source="crmhook")
    assert resp.status_code == 422
    assert resp.json()["quarantined"] is True
    assert rows_of(url, "SELECT stage, error_code, payload FROM quarantine") == [
        ("extract", "unexpected_shape", body)
    ]


def test_a_source_down_during_the_fetch_is_a_503_and_the_retry_stores_it(crm_api):
    api, src, url, xml = crm_api
    write_source(src, [_lead(4, "2026-12-01T10:00:00Z")])
    src.with_name(src.name + ".faults").write_bytes(b'{"kind":"unavailable","remaining":1}')
    events = [{"eventId": "f1", "stream": "leads", "objectId": "00Q4"}]
    resp = _send(api, events, msg_id="msg_f1")
    assert resp.status_code == 503
    assert int(resp.headers["retry-after"]) >= 1
    assert scalar(url, "SELECT count(*) FROM inbound_events") == 0
    _accepted(_send(api, events, msg_id="msg_f1"), xml, 1)
    assert scalar(url, "SELECT count(*) FROM records") == 1
