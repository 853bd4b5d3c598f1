"""Outbox back-pressure over real HTTP (RELIABILITY case 4): past ``delivery.max_pending``
pending deliveries, pushed records (the records API, a signed inbound hook) are refused with 503
and Retry-After before anything is stored; once the workers have caught up, the same requests
are stored exactly once. On SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import update

from junction.store import tables as t
from tests.api.harness import ApiHarness, running_api, write_api_config
from tests.api.test_hooks import signed
from tests.integration.delivery_support import enqueue

LEAD = {"lead_id": "L-1", "email": "ada@example.com", "company": "Analytical Engines"}


@pytest.fixture
def api(tmp_path: Path, store_url: str, models_dir: Path) -> Iterator[ApiHarness]:
    """The API with a cap of three pending deliveries, the outbox already at it."""
    extra = "delivery:\n  max_pending: 3\n"
    config = write_api_config(tmp_path, store=store_url, models=models_dir, extra=extra)
    with running_api(config) as h:
        enqueue(h.ctx.store, "webhook.sales", ["d-1", "d-2", "d-3"])
        yield h


def push(api: ApiHarness, headers: dict[str, str]) -> httpx.Response:
    with api.http() as c:
        return c.post(
            "/api/v1/records/leads",
            json={"records": [LEAD]},
            headers={**headers, "Idempotency-Key": "push-1"},
        )


def hook(api: ApiHarness, body: bytes, headers: dict[str, str]) -> httpx.Response:
    with api.http() as c:
        return c.post("/hooks/partner", content=body, headers=headers)


def drain(api: ApiHarness) -> None:
    """The workers delivered what was pending."""
    with api.ctx.store.begin() as conn:
        conn.execute(update(t.deliveries).values(status="delivered", delivered_at=time.time()))


def until_accepted(send: object) -> httpx.Response:
    """The pending count is read at most once a second: send until it is seen to have fallen."""
    deadline = time.monotonic() + 10
    while True:
        r = send()  # type: ignore[operator]
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        time.sleep(0.2)


def test_pushes_wait_while_the_outbox_is_over_its_cap_and_are_stored_once_after(
    api: ApiHarness,
) -> None:
    headers = api.headers("ingest")
    body = orjson.dumps({"records": [{**LEAD, "lead_id": "L-2"}]})
    hook_headers = signed(body)
    refused = [push(api, headers), hook(api, body, hook_headers)]
    for r in refused:
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert int(r.headers["retry-after"]) >= 1
    assert api.ctx.store.counts("leads")["records"] == 0  # nothing of them was stored
    drain(api)
    first = until_accepted(lambda: push(api, headers))
    assert first.status_code == 201, first.text
    assert until_accepted(lambda: hook(api, body, hook_headers)).status_code == 200
    assert api.ctx.store.counts("leads")["records"] == 2
    # the records API's retry with the same key replays the stored answer
    again = push(api, headers)
    assert again.status_code in (200, 201)
    assert again.content == first.content
    assert api.ctx.store.counts("leads")["records"] == 2
