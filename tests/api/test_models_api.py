"""The model registry over real HTTP: models, versions, cards; promote and rollback (ADMIN)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from junction.store.audit import AuditLog
from scoring import stages
from tests.api.harness import ApiHarness, running_api, write_api_config
from tests.registry_support import add_version, make_registry

V1 = "/api/v1"
NAME = "lead-score"


@pytest.fixture
def reg(models_dir: Path, tmp_path: Path) -> Path:
    """Versions 1, 2, 3 (holdout AUC 0.70, 0.72, 0.80): a private copy, free to promote in."""
    return make_registry(models_dir / NAME / "1", tmp_path / "models", NAME, (0.70, 0.72, 0.80))


@pytest.fixture
def api(tmp_path: Path, store_url: str, reg: Path) -> Iterator[ApiHarness]:
    with running_api(write_api_config(tmp_path, store=store_url, models=reg)) as h:
        yield h


def test_models_versions_and_cards_are_readable_by_viewers(api: ApiHarness, reg: Path) -> None:
    add_version(reg / NAME / "1", reg, "churn", "1")
    viewer = api.headers("viewer")
    with api.http(headers=viewer) as h:
        models = h.get(f"{V1}/models").json()
        first = h.get(f"{V1}/models", params={"limit": 1}).json()
        second = h.get(f"{V1}/models", params={"limit": 1, "cursor": first["next"]}).json()
        versions = h.get(f"{V1}/models/{NAME}/versions").json()
        paged = h.get(f"{V1}/models/{NAME}/versions", params={"limit": 2}).json()
        rest = h.get(f"{V1}/models/{NAME}/versions", params={"cursor": paged["next"]}).json()
        card = h.get(f"{V1}/models/{NAME}/versions/2").json()
        missing = h.get(f"{V1}/models/{NAME}/versions/9")
        unknown = h.get(f"{V1}/models/nope/versions")
        traversal = h.get(f"{V1}/models/..%2Fetc/versions")
    assert [m["name"] for m in models["items"]] == ["churn", NAME]
    assert models["items"][1] == {
        "name": NAME,
        "production": "3",
        "staging": None,
        "archived": [],
        "versions": 3,
    }
    assert [m["name"] for m in first["items"] + second["items"]] == ["churn", NAME]
    assert second["next"] is None
    assert [(v["version"], v["stage"], v["roc_auc"]) for v in versions["items"]] == [
        ("1", "none", 0.70),
        ("2", "none", 0.72),
        ("3", "production", 0.80),
    ]
    assert [v["version"] for v in paged["items"] + rest["items"]] == ["1", "2", "3"]
    assert (card["version"], card["stage"], card["card"]["version"]) == ("2", "none", "2")
    assert card["card"]["metrics"]["holdout"]["roc_auc"] == 0.72
    assert missing.status_code == 404
    assert missing.json()["code"] == "model_not_found"
    assert unknown.status_code == 404
    assert traversal.status_code in (404, 422)


def test_promote_goes_through_the_gate_and_is_audited(api: ApiHarness, reg: Path) -> None:
    admin = api.headers("admin")
    with api.http(headers=admin) as h:
        weaker = h.post(f"{V1}/models/{NAME}/promote", json={"version": "1"})
        forced = h.post(
            f"{V1}/models/{NAME}/promote", json={"version": "1", "force": True, "reason": "drill"}
        )
        better = h.post(f"{V1}/models/{NAME}/promote", json={"version": "2", "reason": "retrain"})
        again = h.post(f"{V1}/models/{NAME}/promote", json={"version": "2"})
    assert weaker.status_code == 409, weaker.text
    assert weaker.headers["content-type"] == "application/problem+json"
    assert weaker.json()["code"] == "gate_failed"
    assert weaker.json()["gate"]["passed"] is False
    assert forced.status_code == 200, forced.text
    assert (forced.json()["production"], forced.json()["previous"]) == ("1", None)
    assert better.status_code == 200, better.text
    body = better.json()
    assert (body["production"], body["previous"], body["archived"]) == ("2", "1", ["3", "1"])
    assert body["gate"]["passed"] is True
    assert body["gate"]["promoted"] is True
    assert again.status_code == 200
    assert again.json()["gate"]["promoted"] is False
    assert stages.production_version(reg, NAME) == "2"
    entries = AuditLog(api.ctx.store).query(action="model.*")
    assert [e.action for e in reversed(entries)] == [
        "model.promote_refused",
        "model.promote",
        "model.promote",
    ]
    assert all(e.target == f"model:{NAME}" for e in entries)
    last = stages.history(reg, NAME)[-1]
    assert last.actor == f"api:{entries[0].actor}"
    assert last.reason.startswith("retrain; gate:")


def test_rollback_restores_the_previous_production(api: ApiHarness, reg: Path) -> None:
    stages.promote(reg, NAME, "2", actor="setup", reason="r")
    stages.promote(reg, NAME, "3", actor="setup", reason="r")
    with api.http(headers=api.headers("admin")) as h:
        back = h.post(f"{V1}/models/{NAME}/rollback", json={"reason": "v3 misbehaves"})
        bare = h.post(f"{V1}/models/{NAME}/rollback")  # no body at all
        none_left = h.post(f"{V1}/models/{NAME}/rollback")
    assert back.status_code == 200, back.text
    assert (back.json()["production"], back.json()["previous"]) == ("2", "3")
    # the first promotion recorded the implicit v3: the line is 3, 2, 3
    assert bare.status_code == 200, bare.text
    assert bare.json()["production"] == "3"
    assert none_left.status_code == 409
    assert none_left.json()["code"] == "nothing_to_roll_back"
    [entry, _] = AuditLog(api.ctx.store).query(action="model.rollback")
    assert entry.detail["reason"] == ""


def test_only_admins_change_stages(api: ApiHarness, reg: Path) -> None:
    for role in ("viewer", "operator", "ingest"):
        with api.http(headers=api.headers(role)) as h:
            promote = h.post(f"{V1}/models/{NAME}/promote", json={"version": "1", "force": True})
            rollback = h.post(f"{V1}/models/{NAME}/rollback", json={})
        assert promote.status_code == 403, role
        assert rollback.status_code == 403, role
    assert stages.read_stages(reg, NAME) is None


def test_bad_input_and_broken_registry_answers(api: ApiHarness, reg: Path) -> None:
    (reg / NAME / "2" / "model.skops").write_bytes(b"tampered")
    with api.http(headers=api.headers("admin")) as h:
        bad = h.post(f"{V1}/models/{NAME}/promote", json={"version": "x1"})
        extra = h.post(f"{V1}/models/{NAME}/promote", json={"version": "1", "nope": 1})
        unknown = h.post(f"{V1}/models/{NAME}/promote", json={"version": "9"})
        tampered = h.post(f"{V1}/models/{NAME}/promote", json={"version": "2", "force": True})
        (reg / NAME / stages.STAGES_FILE).write_text("{", encoding="utf-8")
        corrupt = h.get(f"{V1}/models/{NAME}/versions")
    assert bad.status_code == 422
    assert extra.status_code == 422
    assert unknown.status_code == 404
    assert tampered.status_code == 422
    assert tampered.json()["code"] == "model_load_error"
    assert corrupt.status_code == 500
    assert corrupt.json()["code"] == "model_stages_corrupt"
    assert "stages.json" not in corrupt.text or str(reg) not in corrupt.text
