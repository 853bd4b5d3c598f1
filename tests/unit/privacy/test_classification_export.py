"""Field classes (x-pii), masking by class, `junction schemas pii` and `junction export`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from junction.cli.main import app
from junction.core.masking import (
    CONTACT,
    DIRECT,
    MASK,
    SENSITIVE,
    mask_email,
    mask_name,
    mask_phone,
    mask_record,
    mask_text,
    mask_value,
)
from schemas import ENTITY_MODELS
from schemas.export import render_schemas
from schemas.pii import CLASSES, pii_catalog, pii_classes
from tests.privacy_canaries import CANARY_EMAIL, CANARY_FIRST, CANARY_LAST, CANARY_PHONE

runner = CliRunner()


# --- classification --------------------------------------------------------------------------


def test_every_personal_field_has_a_known_class_in_the_exported_json_schema():
    catalog = pii_catalog()
    assert {f.pii_class for f in catalog} <= set(CLASSES)
    schemas = render_schemas()
    for f in catalog:
        props = json.loads(schemas[f"{f.entity}.schema.json"])["properties"]
        assert props[f.field]["x-pii"] == f.pii_class


@pytest.mark.parametrize(
    ("entity", "field", "cls"),
    [
        ("lead", "first_name", DIRECT),
        ("lead", "email", CONTACT),
        ("lead", "phone", CONTACT),
        ("contact", "mobile", CONTACT),
        ("account", "address", CONTACT),
        ("order", "customer_name", DIRECT),
        ("order", "customer_email", CONTACT),
    ],
)
def test_known_personal_fields_are_classified(entity, field, cls):
    assert pii_classes(entity)[field] == cls


def test_fields_that_name_no_person_are_not_classified():
    assert "company" not in pii_classes("lead")
    assert "name" not in pii_classes("account")  # a company's name
    assert pii_classes("product") == {} == pii_classes("invoice")
    assert pii_classes("no-such-entity") == {}


def test_every_field_whose_name_says_email_or_phone_is_classified():
    from junction.core.pseudonym import pii_kind

    for entity, model in ENTITY_MODELS.items():
        for name in model.model_fields:
            if pii_kind(name) in ("email", "phone"):
                assert pii_classes(entity).get(name) == CONTACT, (entity, name)


def test_schemas_pii_command_lists_entity_field_class_and_mapping_targets():
    result = runner.invoke(app, ["schemas", "pii", "--mappings"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "entity\tfield\tclass"
    assert "lead\temail\tcontact" in lines
    assert "order\tcustomer_name\tdirect_identifier" in lines
    assert "mapping\tentity\ttarget\tclass\tsource" in lines
    assert "csv.lead\tlead\temail\tcontact\temail" in lines


def test_schemas_pii_for_one_entity_and_an_unknown_one():
    result = runner.invoke(app, ["schemas", "pii", "--entity", "order"])
    assert result.exit_code == 0
    assert {line.split("\t")[0] for line in result.output.splitlines()[1:]} == {"order"}
    bad = runner.invoke(app, ["schemas", "pii", "--entity", "nope"])
    assert bad.exit_code == 2
    assert "unknown entity" in bad.output


# --- masking by class ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("ann.smith@example.com", "a***@example.com"),
        ("A@B.CO", "A***@B.CO"),
        ("no-at-sign", MASK),
        ("@example.com", MASK),
    ],
)
def test_mask_email(value, masked):
    assert mask_email(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("+447700900123", "+44*******123"),
        ("+1 415 555 0179", "+14******179"),
        ("07700 900123", "********123"),
        ("12345", "*****"),
    ],
)
def test_mask_phone(value, masked):
    assert mask_phone(value) == masked


def test_mask_name_keeps_initials():
    assert mask_name("Ann") == "A."
    assert mask_name("Mary  Ann Smith") == "M. A. S."
    assert mask_name("  ") == MASK


def test_mask_value_by_class():
    assert mask_value(CONTACT, CANARY_EMAIL) == "z***@canary-pii.example"
    assert mask_value(CONTACT, CANARY_PHONE) == "+14******179"
    assert mask_value(CONTACT, "221B Baker Street, London", kind="address") == MASK
    assert mask_value(DIRECT, CANARY_FIRST) == "Q."
    assert mask_value(DIRECT, "7707083893", kind="national_id") == MASK
    assert mask_value(SENSITIVE, "diagnosis") == MASK
    assert mask_value(CONTACT, None) is None
    assert mask_value(CONTACT, [CANARY_EMAIL]) == ["z***@canary-pii.example"]
    assert mask_value(DIRECT, 42) == MASK


def test_mask_text_finds_emails_and_e164_phones_but_not_timestamps():
    text = f"write {CANARY_EMAIL} or call {CANARY_PHONE} before 2026-01-01T00:00:00+00:00"
    out = mask_text(text)
    assert CANARY_EMAIL not in out
    assert CANARY_PHONE not in out
    assert out.endswith("2026-01-01T00:00:00+00:00")


def test_mask_record_uses_the_schema_classes_and_field_names():
    record = {
        "first_name": CANARY_FIRST,
        "last_name": CANARY_LAST,
        "email": CANARY_EMAIL,
        "company": "Initech",
        "notes": f"asked us to mail {CANARY_EMAIL}",
        "employees": 12,
    }
    out = mask_record(record, pii_classes("lead"))
    assert out == {
        "first_name": "Q.",
        "last_name": "V.",
        "email": "z***@canary-pii.example",
        "company": "Initech",
        "notes": "asked us to mail z***@canary-pii.example",
        "employees": 12,
    }


# --- junction export -------------------------------------------------------------------------


def _seed(store_url: str, *, kek: str | None = None) -> None:
    """Three canary leads written the way the pipeline writes them (sealed when ``kek``)."""
    from junction.store.repo import Store

    store = Store.open(store_url)
    try:
        if kek is not None:
            from junction.store.crypto_rows import enable_privacy

            enable_privacy(store, kek=kek)
        payload = orjson.dumps(
            {
                "first_name": CANARY_FIRST,
                "last_name": CANARY_LAST,
                "email": CANARY_EMAIL,
                "phone": CANARY_PHONE,
                "company": "Initech",
            }
        ).decode()
        now = time.time()
        fixed = ("leads", "lead", "csv_file")
        rows = [
            (f"leads:L-{i}", *fixed, f"L-{i}", "lead.v1", payload, "{}", None, now)
            for i in range(3)
        ]
        store.write_batch(records=rows, scores=[], deliveries=[], quarantined=[], cursor=None)
    finally:
        store.close()


def _config(tmp_path: Path, store_url: str) -> Path:
    config = tmp_path / "junction.yaml"
    config.write_text(
        f'store: "{store_url}"\nmodels_dir: "{tmp_path / "models"}"\n', encoding="utf-8"
    )
    return config


@pytest.fixture
def hub(tmp_path: Path, store_url: str) -> Path:
    _seed(store_url)
    return _config(tmp_path, store_url)


def _audit(config: Path) -> list[dict[str, Any]]:
    from junction.pipeline.config import load_config
    from junction.store.audit import AuditLog
    from junction.store.repo import Store

    store = Store.open(load_config(config).store)
    try:
        return [
            {"action": r.action, "target": r.target, "detail": r.detail}
            for r in AuditLog(store).query(action="records.export")
        ]
    finally:
        store.close()


def test_masked_export_holds_no_personal_data_in_clear(hub, tmp_path):
    out = tmp_path / "export.jsonl"
    result = runner.invoke(app, ["export", str(hub), "--masked", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    for canary in (CANARY_EMAIL, CANARY_PHONE, CANARY_FIRST, CANARY_LAST):
        assert canary not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 3
    assert lines[0]["record"] == {
        "first_name": "Q.",
        "last_name": "V.",
        "email": "z***@canary-pii.example",
        "phone": "+14******179",
        "company": "Initech",
    }
    (entry,) = _audit(hub)
    assert entry["detail"]["masked"] is True


def test_an_export_in_clear_needs_the_flag_and_is_audited(hub, tmp_path):
    refused = runner.invoke(app, ["export", str(hub)])
    assert refused.exit_code == 2
    assert "--masked" in refused.output
    both = runner.invoke(app, ["export", str(hub), "--masked", "--unmasked"])
    assert both.exit_code == 2
    assert _audit(hub) == []

    out = tmp_path / "clear.jsonl"
    result = runner.invoke(
        app,
        ["export", str(hub), "--unmasked", "--entity", "lead", "--limit", "2", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0])["record"]["email"] == CANARY_EMAIL
    (entry,) = _audit(hub)
    assert entry["target"] == "records:lead"
    assert CANARY_EMAIL not in str(entry)


def test_export_refuses_an_unknown_entity(hub):
    result = runner.invoke(app, ["export", str(hub), "--masked", "--entity", "nope"])
    assert result.exit_code == 2
    assert "unknown entity" in result.output


def test_an_encrypted_store_exports_opened_then_masked(tmp_path, store_url):
    from junction.store import tables as t
    from junction.store.repo import Store

    _seed(store_url, kek=f"file:{tmp_path / 'kek.key'}")
    config = _config(tmp_path, store_url)
    store = Store.open(store_url)
    try:
        with store.begin() as conn:
            stored = conn.execute(t.records.select()).mappings().first()
    finally:
        store.close()
    assert stored is not None
    assert CANARY_EMAIL not in stored["payload"]  # sealed at rest
    out = tmp_path / "export.jsonl"
    result = runner.invoke(app, ["export", str(config), "--masked", "--out", str(out)])
    assert result.exit_code == 0, result.output
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert first["record"]["email"] == "z***@canary-pii.example"
    assert first["record"]["first_name"] == "Q."
    clear = runner.invoke(app, ["export", str(config), "--unmasked", "--limit", "1"])
    assert clear.exit_code == 0, clear.output
    assert CANARY_EMAIL in clear.stdout
