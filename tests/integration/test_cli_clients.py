"""`junction clients create|list|revoke` and `junction audit verify`, against a running API."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update
from typer.testing import CliRunner, Result

from junction.cli.main import app
from junction.store.audit import AuditLog
from junction.store.repo import Store
from junction.store.tables import audit_log
from tests.api.harness import running_api, write_api_config

runner = CliRunner()


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def config(tmp_path: Path, models_dir: Path) -> Path:
    return write_api_config(tmp_path, store=f"sqlite:///{tmp_path / 'j.db'}", models=models_dir)


def fields(stdout: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in stdout.splitlines() if ": " in line)


def token(url: str, client_id: str, secret: str) -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )


def test_create_list_revoke_round_trip_through_the_api(config: Path) -> None:
    created = invoke(
        "clients", "create", "crm-partner", "--role", "viewer", "--config", str(config)
    )
    assert created.exit_code == 0, created.output
    out = fields(created.stdout)
    client_id, secret = out["client_id"], out["client_secret"]
    assert client_id.startswith("jc_")
    assert out["roles"] == "viewer"
    assert "not shown again" in created.stderr
    with running_api(config) as api:
        r = token(api.base_url, client_id, secret)
        assert r.status_code == 200, r.text
        listed = invoke("clients", "list", "--config", str(config))
        assert listed.exit_code == 0
        assert client_id in listed.stdout
        assert "crm-" in listed.stdout  # the name (wrapped in an 80-column table)
        assert secret not in listed.stdout
        revoked = invoke("clients", "revoke", client_id, "--config", str(config))
        assert revoked.exit_code == 0, revoked.output
        assert token(api.base_url, client_id, secret).status_code == 401
    assert client_id not in invoke("clients", "list", "--config", str(config)).stdout
    everyone = invoke("clients", "list", "--all", "--config", str(config)).stdout
    assert client_id in everyone
    assert "revoked" in everyone
    again = invoke("clients", "revoke", client_id, "--config", str(config))
    assert again.exit_code == 1
    assert "no active client" in again.stderr


def test_create_an_api_key_with_roles_and_a_rate_limit_as_json(config: Path) -> None:
    r = invoke(
        "clients",
        "create",
        "erp-ingest",
        "--role",
        "ingest",
        "--role",
        "viewer",
        "--kind",
        "apikey",
        "--rate-limit",
        "50/second",
        "--json",
        "--config",
        str(config),
    )
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    assert body["api_key"].startswith(f"jk_{body['client_id']}.")
    assert body["roles"] == ["ingest", "viewer"]
    with running_api(config) as api, api.http() as h:
        ok = h.get("/api/v1/audit", headers={"X-API-Key": body["api_key"]})
    assert ok.status_code == 403  # authenticated (not 401), but audit is for admins
    listed = invoke("clients", "list", "--json", "--config", str(config)).stdout
    (row,) = [json.loads(line) for line in listed.splitlines()]
    assert (row["id"], row["kind"], row["rate_limit"]) == (body["client_id"], "apikey", "50/second")
    assert row["roles"] == ["ingest", "viewer"]
    assert body["api_key"].split(".", 1)[1] not in listed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "root"], "roles must be"),
        (["--role", "viewer", "--rate-limit", "lots"], "invalid rate limit"),
        (["--role", "viewer", "--rate-limit", "0/second"], "one positive rate"),
        (["--role", "viewer", "--rate-limit", "1/second;9/day"], "one positive rate"),
    ],
    ids=["unknown-role", "bad-rate-limit", "zero-rate", "two-rates"],
)
def test_invalid_requests_exit_2_with_a_typed_error(
    config: Path, args: list[str], message: str
) -> None:
    r = invoke("clients", "create", "x", *args, "--config", str(config))
    assert r.exit_code == 2
    assert "ConfigError" in r.stderr
    assert message in r.stderr


def test_a_missing_config_is_a_typed_error(tmp_path: Path) -> None:
    r = invoke("clients", "list", "--config", str(tmp_path / "nope.yaml"))
    assert r.exit_code == 2
    assert "ConfigError" in r.stderr


def test_audit_verify_passes_then_names_the_altered_entry(config: Path) -> None:
    created = invoke("clients", "create", "a", "--role", "admin", "--config", str(config))
    client_id = fields(created.stdout)["client_id"]
    invoke("clients", "revoke", client_id, "--config", str(config))
    ok = invoke("audit", "verify", "--config", str(config))
    assert ok.exit_code == 0, ok.output
    assert "intact: 2 entries" in ok.stdout
    store = Store.open(f"sqlite:///{config.parent / 'j.db'}")
    try:
        entries = AuditLog(store).query()
        assert {e.actor for e in entries} == {f"cli:{getpass.getuser()}"}
        assert [e.action for e in entries] == ["client.revoke", "client.create"]
        with store.begin() as conn:
            conn.execute(update(audit_log).where(audit_log.c.id == 1).values(target="jc_forged"))
    finally:
        store.close()
    broken = invoke("audit", "verify", "--config", str(config))
    assert broken.exit_code == 1
    assert "broken at entry 1" in broken.stdout
