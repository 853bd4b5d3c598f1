"""Salesforce through the hub: a polled run and an Outbound Message share keys and versions.

The API serves a pipeline whose source is the connector pointed at the fake org; a run polls it,
and the ``sfdc`` hook (``salesforce_outbound`` verifier, the connector as PushParser) stores pushed
notifications, answering with the SOAP Ack.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from connectors.salesforce.outbound_message import normalize_stamp
from tests.api.harness import running_api, write_api_config
from tests.api.hook_child import kill_while_storing
from tests.fakes.salesforce import ORG_ID, FakeOrg, options_for, sf_stamp
from tests.fakes.salesforce_data import lead_fields
from tests.fakes.server import serve_app
from tests.integration.helpers import rows_of, scalar

PIPELINE = """\
  crm:
    source:
      connector: salesforce
      streams: [Lead]
{options}
    mapping: salesforce.lead
    workers: 0
    scoring: {{model: lead-score}}
    routes:
      - otherwise: [webhook.sales]
"""


def notification(notif_id: str, lead: dict, **changes: str) -> str:
    values = {k: lead[k] for k in ("Id", "FirstName", "LastName", "Company", "Email")}
    values.update(changes)
    fields = "".join(f"<sf:{k}>{v}</sf:{k}>" for k, v in values.items())
    return (
        f"<Notification><Id>{notif_id}</Id>"
        '<sObject xsi:type="sf:Lead" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"{fields}</sObject></Notification>"
    )


def outbound(*notifications: str, org: str = ORG_ID) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{org}</OrganizationId><ActionId>04k5g000000AbCdAAK</ActionId>"
        + "".join(notifications)
        + "</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


@pytest.fixture
def hub(request: pytest.FixtureRequest, tmp_path: Path, store_url: str, models_dir: Path):
    push_fetch = getattr(request, "param", False)
    org = FakeOrg()
    for i in range(5):
        org.insert("Lead", lead_fields(i))
    with serve_app(org.app()) as url:
        options = options_for(org, url, "oauth_password", page_size=200)
        if push_fetch:
            options["push_fetch"] = True
        lines = "\n".join(f"      {k}: {json.dumps(v)}" for k, v in options.items() if k != "auth")
        lines = f"      auth: oauth_password\n{lines}"
        cfg = write_api_config(tmp_path, store=store_url, models=models_dir)
        text = cfg.read_text()
        text = text.replace("channels:", PIPELINE.format(options=lines) + "channels:", 1)
        text = text.replace(
            "    partner:",
            "    sfdc: {pipeline: crm, verifier: salesforce_outbound, "
            f"options: {{organization_id: {ORG_ID[:15]}}}}}\n    partner:",
        )
        cfg.write_text(text)
        with running_api(cfg) as api:
            yield api, org, store_url


def push(api, body: bytes):
    with api.http() as h:
        return h.post("/hooks/sfdc", content=body, headers={"content-type": "text/xml"})


def test_polled_and_pushed_versions_share_keys(hub):
    api, org, url = hub
    with api.http() as h:
        ran = h.post("/api/v1/pipelines/crm/run", headers=api.headers("operator"))
    assert ran.status_code == 200, ran.text
    assert scalar(url, "SELECT count(*) FROM records") == 5
    lead = next(iter(org.records["Lead"].values()))
    version = normalize_stamp(lead["SystemModstamp"])
    ids = {r[0] for r in rows_of(url, "SELECT id FROM records")}
    assert f"crm:{lead['Id']}@{version}" in ids

    # the version already polled, pushed: acknowledged, not stored twice
    same = notification("04l5g000000fztEQAQ", lead, SystemModstamp=version)
    resp = push(api, outbound(same))
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/xml")
    assert b"<Ack>true</Ack>" in resp.content
    assert scalar(url, "SELECT count(*) FROM records") == 5

    # a newer version pushed: stored; the same delivery retried by Salesforce: acknowledged only
    newer = sf_stamp(org.tick(60)).replace("+0000", "Z")
    changed = notification("04l5g000000fzt9QAA", lead, SystemModstamp=newer, Title="CEO")
    assert push(api, outbound(changed)).status_code == 200
    assert push(api, outbound(changed)).status_code == 200
    assert scalar(url, "SELECT count(*) FROM records") == 6
    assert f"crm:{lead['Id']}@{normalize_stamp(newer)}" in {
        r[0] for r in rows_of(url, "SELECT id FROM records")
    }


def test_another_orgs_message_is_refused(hub):
    api, org, url = hub
    lead = next(iter(org.records["Lead"].values()))
    resp = push(api, outbound(notification("04l1", lead), org="00D000000000001AAA"))
    assert resp.status_code == 401
    assert scalar(url, "SELECT count(*) FROM records") == 0


@pytest.mark.parametrize("hub", [True], indirect=True, ids=["push_fetch"])
def test_push_fetch_reads_the_whole_record_after_the_notification(hub):
    api, org, url = hub
    lead = next(iter(org.records["Lead"].values()))
    org.update("Lead", lead["Id"], {"Title": "VP Sales"})  # newer than the message's fields
    bare = (
        "<Notification><Id>04l5g000000fzzzQAA</Id>"
        '<sObject xsi:type="sf:Lead" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"<sf:Id>{lead['Id']}</sf:Id></sObject></Notification>"
    )
    resp = push(api, outbound(bare))
    assert resp.status_code == 200, resp.text
    assert b"<Ack>true</Ack>" in resp.content
    version = normalize_stamp(org.records["Lead"][lead["Id"]]["SystemModstamp"])
    assert rows_of(url, "SELECT id FROM records") == [(f"crm:{lead['Id']}@{version}",)]


def test_a_kill_after_the_commit_before_the_ack_stores_the_retry_once(hub, tmp_path):
    # RELIABILITY case 10a: the listener dies after the DB commit, before the Ack; Salesforce
    # sends the same notification again: it is acknowledged and stored once
    api, org, url = hub
    lead = next(iter(org.records["Lead"].values()))
    newer = sf_stamp(org.tick(60)).replace("+0000", "Z")
    body = outbound(notification("04l5g000000fzk1QAA", lead, SystemModstamp=newer))
    config, headers = api.root / "junction.yaml", {"content-type": "text/xml"}
    answer = kill_while_storing(config, "after-commit", tmp_path, "/hooks/sfdc", body, headers)
    assert isinstance(answer, httpx.HTTPError)  # no Ack: Salesforce retries
    assert scalar(url, "SELECT count(*) FROM records") == 1  # committed before the kill
    retried = push(api, body)
    assert retried.status_code == 200, retried.text
    assert b"<Ack>true</Ack>" in retried.content
    assert scalar(url, "SELECT count(*) FROM records") == 1
