"""Rotating a webhook channel's signing secret from the API and the CLI (ADR-0023).

Admin only (viewer and operator get 403 and nothing changes); the answer carries the secret once
with ``no-store``; the audit entry names the secret's id, never the secret; no log line or console
output carries it.  The CLI test then runs the hub's own delivery path against a verifying sink
that knows only the new secret.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from junction.cli.main import app as cli
from junction.pipeline.config import load_config
from junction.pipeline.hub import Hub
from junction.store import tables as t
from junction.store.channel_secrets import list_secrets
from junction.store.repo import Store
from outbound.webhook.sink import WebhookSink, read_sink_file
from tests.api.harness import HOOK_SECRET, ApiHarness, running_api, write_api_config
from tests.dashboard.support import ROWS, write_leads

CHANNEL = "webhook.sales"
ROTATE = f"/api/v1/channels/{CHANNEL}/rotate-secret"


def _privacy(root: Path) -> str:
    return f'privacy: {{kek: "file:{root / "kek"}"}}\n'


@pytest.fixture
def api(tmp_path: Path, models_dir: Path, store_url: str) -> Iterator[ApiHarness]:
    config = write_api_config(
        tmp_path, store=store_url, models=models_dir, extra=_privacy(tmp_path)
    )
    with running_api(config) as harness:
        yield harness


def _audit_rows(store: Store) -> list[dict[str, object]]:
    a = t.audit_log.c
    with store.begin() as conn:
        rows = conn.execute(
            select(a.actor, a.action, a.target, a.detail).where(a.action == "channel.rotate_secret")
        ).all()
    return [
        {"actor": r.actor, "target": r.target, "detail": orjson.loads(r.detail), "raw": r.detail}
        for r in rows
    ]


def test_an_admin_rotates_and_sees_the_secret_once(
    api: ApiHarness, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    with api.http() as http:
        for role in ("viewer", "operator", "ingest"):
            r = http.post(ROTATE, json={"overlap_s": 3600}, headers=api.headers(role))
            assert r.status_code == 403, (role, r.text)
        assert list_secrets(api.ctx.store) == []
        assert _audit_rows(api.ctx.store) == []
        r = http.post(ROTATE, json={"overlap_s": 3600}, headers=api.headers("admin"))
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        body = r.json()
        missing = http.post(
            "/api/v1/channels/webhook.nope/rotate-secret", json={}, headers=api.headers("admin")
        )
        listed = http.get("/api/v1/channels", headers=api.headers("admin"))
    secret = body["secret"]
    assert secret.startswith("whsec_")
    assert secret != HOOK_SECRET
    assert body["channel"] == CHANNEL
    assert body["overlap_s"] == 3600
    assert [s["origin"] for s in body["retiring"]] == ["config"]
    assert missing.status_code == 404
    assert secret not in listed.text
    # the listing shows the rotation: the new secret current, the config's still signing
    (hook,) = [c for c in listed.json()["items"] if c["name"] == CHANNEL]
    signing = hook["signing_secrets"]
    current = signing[0]
    assert (current["id"], current["origin"], current["retires_at"]) == (
        body["secret_id"],
        "rotated",
        None,
    )
    assert [(s["id"], s["origin"]) for s in signing[1:]] == [
        (r["id"], "config") for r in body["retiring"]
    ]
    assert signing[1]["retires_at"] == body["retiring"][0]["retires_at"]
    stored = list_secrets(api.ctx.store, CHANNEL)
    assert [(s.id, s.retires_at) for s in stored if s.origin == "rotated"] == [
        (body["secret_id"], None)
    ]
    (entry,) = _audit_rows(api.ctx.store)
    assert entry["target"] == CHANNEL
    assert entry["detail"] == {
        "secret_id": body["secret_id"],
        "overlap_s": 3600.0,
        "retiring": [s["id"] for s in body["retiring"]],
    }
    # never the secret, in the audit log, the logs or the console
    key = secret.removeprefix("whsec_")
    assert key not in str(entry["raw"])
    printed = capsys.readouterr()
    assert key not in caplog.text
    assert key not in printed.out + printed.err


def test_an_overlap_out_of_range_is_refused(api: ApiHarness) -> None:
    with api.http() as http:
        r = http.post(ROTATE, json={"overlap_s": -1}, headers=api.headers("admin"))
        assert r.status_code == 422
        r = http.post(ROTATE, json={"overlap": 5}, headers=api.headers("admin"))
        assert r.status_code == 422
    assert list_secrets(api.ctx.store) == []


def test_without_encryption_at_rest_rotation_is_refused(tmp_path: Path, models_dir: Path) -> None:
    config = write_api_config(tmp_path, store=f"sqlite:///{tmp_path / 'j.db'}", models=models_dir)
    with running_api(config) as api, api.http() as http:
        r = http.post(ROTATE, json={}, headers=api.headers("admin"))
        assert r.status_code == 409
        assert r.json()["code"] == "encryption_required"
        assert "privacy:" in r.json()["detail"]
        assert list_secrets(api.ctx.store) == []


def test_the_cli_rotates_and_the_hub_signs_with_the_new_secret(
    tmp_path: Path, models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = write_api_config(
        tmp_path,
        store=f"sqlite:///{tmp_path / 'j.db'}",
        models=models_dir,
        extra=_privacy(tmp_path),
    )
    runner = CliRunner()
    done = runner.invoke(
        cli, ["channels", "rotate-secret", CHANNEL, "-c", str(config), "--overlap", "0"]
    )
    assert done.exit_code == 0, done.output
    secret = done.stdout.splitlines()[0]
    assert secret.startswith("whsec_")
    assert secret != HOOK_SECRET
    assert secret not in done.stderr
    assert "no longer signs" in done.stderr
    listed = runner.invoke(cli, ["channels", "secrets", "-c", str(config)])
    assert listed.exit_code == 0
    assert CHANNEL in listed.stdout
    assert secret not in listed.stdout
    bad = runner.invoke(cli, ["channels", "rotate-secret", "webhook.nope", "-c", str(config)])
    assert bad.exit_code == 2
    # the hub's delivery path (Hub.deliver → build_channels → the store's keys) signs with the
    # new secret only: a sink that knows only it accepts every delivery, one that knows only the
    # config's secret would refuse them
    with WebhookSink(secret, tmp_path / "sink.jsonl") as sink:
        text = config.read_text(encoding="utf-8").replace("http://127.0.0.1:9/sales/", sink.url)
        config.write_text(text + "egress: {allow_networks: [127.0.0.0/8]}\n", encoding="utf-8")
        hub = Hub(load_config(config))
        try:
            write_leads(tmp_path / "inbox" / "leads.csv", ROWS)
            assert hub.runner("leads").run_once().stored == 3
            stats = hub.deliver(drain_wait_s=1.0)
        finally:
            hub.close()
        got = sink.stats()
    assert stats.delivered >= 1
    assert got["rejected"] == 0
    assert got["verified"] == stats.delivered
    assert len(read_sink_file(tmp_path / "sink.jsonl")) == stats.delivered
    assert secret.removeprefix("whsec_") not in caplog.text
    store = Store.open(f"sqlite:///{tmp_path / 'j.db'}")
    try:
        (entry,) = _audit_rows(store)
    finally:
        store.close()
    assert str(entry["actor"]).startswith("cli:")
    assert secret.removeprefix("whsec_") not in str(entry["raw"])
