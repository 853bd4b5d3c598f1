"""The suppression list over real HTTP (SQLite and PostgreSQL) and the CLI: check, list, add, lift.

Addresses never come back: answers, lists and audit entries carry keyed pseudonyms only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from junction.cli.main import app
from junction.core.pseudonym import Pseudonymizer
from junction.store.audit import AuditLog
from junction.store.suppressions import SuppressionList
from tests.api.harness import ApiHarness

V1 = "/api/v1"
ADA = "ada@engines.example"


def _call(api: ApiHarness, method: str, path: str, role: str, **kw: Any) -> httpx.Response:
    with api.http() as h:
        return h.request(method, V1 + path, headers=api.headers(role), **kw)


def _add(api: ApiHarness, kind: str, address: str, role: str = "operator", **kw: Any) -> Any:
    return _call(api, "POST", "/suppressions", role, json={"kind": kind, "address": address, **kw})


def _check(api: ApiHarness, kind: str, address: str) -> Any:
    return _call(api, "GET", "/suppressions", "viewer", params={"kind": kind, "address": address})


def _gate_list(api: ApiHarness) -> SuppressionList:
    """The list as the delivery worker's gate reads it (same store, same pseudonym key)."""
    state = Path(api.ctx.cfg.models_dir).parent
    return SuppressionList(api.ctx.store, Pseudonymizer.load(state))


def test_add_check_and_lift_one_address(api: ApiHarness) -> None:
    r = _add(api, "email", ADA, reason="unsubscribe")
    assert r.status_code == 200, r.text
    added = r.json()
    assert added["suppressed"] is True
    assert added["changed"] is True
    assert added["reason"] == "unsubscribe"
    assert added["source"].startswith("api:")
    assert added["address_key"].startswith("ps_")
    assert ADA not in r.text
    # the worker's gate sees it, however the address is written
    assert _gate_list(api).suppressed("email", [ADA.upper(), "other@x.example"]) == {ADA.upper()}

    again = _add(api, "email", ADA, reason="complaint").json()
    assert again["changed"] is False
    assert again["reason"] == "unsubscribe"  # the first reason stays

    checked = _check(api, "email", " Ada@Engines.Example ")
    assert checked.status_code == 200
    assert checked.json()["suppressed"] is True
    assert checked.json()["address_key"] == added["address_key"]
    assert _check(api, "email", "nobody@x.example").json()["suppressed"] is False

    path = f"/suppressions/email/{ADA}"
    assert _call(api, "DELETE", path, "operator").status_code == 403
    lifted = _call(api, "DELETE", path, "admin", params={"reason": "opted back in"})
    assert lifted.status_code == 200, lifted.text
    assert lifted.json() == {
        "kind": "email",
        "address_key": added["address_key"],
        "suppressed": False,
        "reason": None,
        "source": None,
        "created_at": None,
        "changed": True,
    }
    assert _check(api, "email", ADA).json()["suppressed"] is False
    assert _gate_list(api).suppressed("email", [ADA]) == set()
    gone = _call(api, "DELETE", path, "admin")
    assert gone.status_code == 404
    assert gone.headers["content-type"] == "application/problem+json"


def test_audit_entries_name_the_pseudonym_never_the_address(api: ApiHarness) -> None:
    key = _add(api, "phone", "+44 20 7946 0018", reason="stop").json()["address_key"]
    assert _call(api, "DELETE", "/suppressions/phone/+442079460018", "admin").status_code == 200
    entries = AuditLog(api.ctx.store).query(action="suppression.*")
    assert [e.action for e in entries] == ["suppression.lift", "suppression.add"]
    assert {e.target for e in entries} == {f"phone:{key}"}
    assert entries[1].detail == {"reason": "stop", "added": True}
    assert entries[0].detail == {"was": "stop"}
    text = repr(entries)
    # the number in any form (short digit runs can occur in the hashes by chance)
    for form in ("+442079460018", "442079460018", "2079460018", "20 7946 0018", "7946 0018"):
        assert form not in text


def test_entries_page_by_pseudonym_without_addresses(api: ApiHarness) -> None:
    addresses = [f"lead{i}@example.org" for i in range(5)]
    for a in addresses:
        assert _add(api, "email", a).status_code == 200
    _add(api, "slack", "U024BE7LH")
    keys: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"kind": "email", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = _call(api, "GET", "/suppressions/entries", "viewer", params=params)
        assert r.status_code == 200, r.text
        assert not any(a in r.text for a in addresses)
        body = r.json()
        keys += [e["address_key"] for e in body["items"]]
        assert all(e["kind"] == "email" and e["reason"] == "manual" for e in body["items"])
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert pages == 3
    assert keys == sorted(keys)
    assert len(set(keys)) == 5
    # a cursor of another kind's list is refused
    first = _call(
        api, "GET", "/suppressions/entries", "viewer", params={"kind": "email", "limit": 1}
    ).json()
    other = _call(
        api,
        "GET",
        "/suppressions/entries",
        "viewer",
        params={"kind": "slack", "cursor": first["next"]},
    )
    assert other.status_code == 400


@pytest.mark.parametrize(
    ("kind", "address"),
    [
        ("fax", "+15550100"),
        ("email", "no-at-sign"),
        ("email", "a\x00b@x.example"),
        ("email", "a\nb@x.example"),
        ("email", " "),
        ("email", "x" * 400 + "@x.example"),
    ],
)
def test_bad_input_is_a_client_error(api: ApiHarness, kind: str, address: str) -> None:
    for r in (_add(api, kind, address), _check(api, kind, address)):
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"


def test_the_cli_and_the_api_share_one_list(api: ApiHarness) -> None:
    config = str(api.root / "junction.yaml")
    runner = CliRunner()
    added = runner.invoke(
        app, ["suppressions", "add", "email", ADA, "-c", config, "--reason", "legal"]
    )
    assert added.exit_code == 0, added.output
    key = _check(api, "email", ADA).json()["address_key"]
    assert f"suppressed: {key}" in added.stdout
    assert ADA not in added.stdout
    checked = runner.invoke(app, ["suppressions", "check", "email", ADA.upper(), "-c", config])
    assert checked.exit_code == 0
    assert "legal" in checked.stdout
    lifted = runner.invoke(app, ["suppressions", "lift", "email", ADA, "-c", config])
    assert lifted.exit_code == 0, lifted.output
    assert _check(api, "email", ADA).json()["suppressed"] is False
    assert runner.invoke(app, ["suppressions", "check", "email", ADA, "-c", config]).exit_code == 1
    assert runner.invoke(app, ["suppressions", "lift", "email", ADA, "-c", config]).exit_code == 1
    entries = AuditLog(api.ctx.store).query(action="suppression.*")
    assert [e.action for e in entries] == ["suppression.lift", "suppression.add"]
    assert all(e.actor.startswith("cli:") and e.target == f"email:{key}" for e in entries)
