"""kill -9 of the API while it stores a signed inbound delivery (RELIABILITY case 11), on SQLite
and PostgreSQL: killed before the commit, nothing is stored and the sender's retry stores it;
killed after the commit but before the answer, the sender's retry is a duplicate and the records
are stored once. The sender sees no answer either way, so it retries (as HubSpot, Stripe and
Standard Webhooks senders do)."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from junction.store.inbound import seen
from tests.api.harness import running_api, write_api_config
from tests.api.hook_child import kill_while_storing
from tests.api.test_hooks import LEAD, signed


@pytest.mark.parametrize("mode", ["before-commit", "after-commit"])
def test_a_kill_around_the_commit_loses_nothing_and_stores_once(
    tmp_path: Path, store_url: str, models_dir: Path, mode: str
) -> None:
    config = write_api_config(tmp_path, store=store_url, models=models_dir)
    body = orjson.dumps(LEAD)
    headers = signed(body)
    answer = kill_while_storing(config, mode, tmp_path, "/hooks/partner", body, headers)
    assert isinstance(answer, httpx.HTTPError), answer  # no answer: the sender retries

    with running_api(config) as api:
        records = api.ctx.store.counts("leads")["records"]
        assert seen(api.ctx.store, "partner", headers["webhook-id"]) == (mode == "after-commit")
        assert records == (1 if mode == "after-commit" else 0)
        # the sender's retry: same webhook-id, a fresh signature
        with api.http() as h:
            retry = h.post(
                "/hooks/partner", content=body, headers=signed(body, msg_id=headers["webhook-id"])
            )
        assert retry.status_code == 200, retry.text
        assert retry.json()["duplicate"] is (mode == "after-commit")
        assert api.ctx.store.counts("leads")["records"] == 1
