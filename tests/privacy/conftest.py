"""Fixtures for the privacy tests: a KEK in the environment, canary people, database dumps."""

from __future__ import annotations

import csv
import secrets
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from junction.store.crypto_rows import StorePrivacy, enable_privacy
from junction.store.repo import Store
from scoring.synthetic import CSV_HEADER, generate_lead_csv_rows

KEK_ENV = "JUNCTION_TEST_KEK"

# personal data that must never appear in clear in the store
CANARIES = [
    {
        "first_name": "Zebulonia",
        "last_name": "Quillfeather",
        "email": "zebulonia.quill@canary-mail.example",
        "phone": "+14155550123",
    },
    {
        "first_name": "Ottoline",
        "last_name": "Vexworth",
        "email": "ottoline.vex@canary-mail.example",
        "phone": "+14155550456",
    },
    {"first_name": "Phonella", "last_name": "Onlyton", "email": None, "phone": "+14155550789"},
]
CANARY_WORDS = [
    v
    for person in CANARIES
    for v in (person["first_name"], person["last_name"], person["email"], person["phone"])
    if v
] + ["4155550123", "canary-mail"]


@pytest.fixture
def kek(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh key-encryption key in the environment; returns its source (``env:NAME``)."""
    monkeypatch.setenv(KEK_ENV, secrets.token_urlsafe(48))
    return f"env:{KEK_ENV}"


@pytest.fixture
def sealed_store(store_url: str, kek: str) -> Iterator[tuple[Store, StorePrivacy]]:
    """An open store with encryption at rest on."""
    store = Store.open(store_url)
    try:
        yield store, enable_privacy(store, kek=kek)
    finally:
        store.close()


def drop_people_csv(
    path: Path,
    people: list[dict[str, str | None]],
    *,
    ids: str,
    filler: int,
    seed: int,
    messy: bool = False,
    created_at: str | None = "2026-01-05T10:00:00Z",
) -> None:
    """A lead CSV naming ``people`` (ids ``<ids><n>``), then ``filler`` synthetic leads."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_HEADER)
        writer.writeheader()
        for i, person in enumerate(people):
            row = dict.fromkeys(CSV_HEADER, "")
            row.update({k: v or "" for k, v in person.items()})
            row.update(lead_id=f"{ids}{i}", company="Canary Works", country="US", employees="40")
            if created_at is not None:
                row["created_at"] = created_at
            writer.writerow(row)
        writer.writerows(generate_lead_csv_rows(filler, seed, messy))


def lead_payload(i: int, person: dict[str, str | None]) -> str:
    """A canonical lead's JSON, as the pipeline stores it."""
    return orjson.dumps(
        {
            "schema_version": "lead.v1",
            "external_id": f"ext-{i}",
            "first_name": person["first_name"],
            "last_name": person["last_name"],
            "email": person["email"],
            "phone": person["phone"],
            "company": "Acme Widgets",
            "title": "Buyer",
            "industry": "software",
            "country": "US",
            "employees": 40 + i,
        }
    ).decode()


def record_row(i: int, person: dict[str, str | None], *, pipeline: str = "leads") -> tuple:
    """A ``RECORD_COLS`` row of a lead."""
    return (
        f"{pipeline}:f00d:{i}",
        pipeline,
        "lead",
        "csv_file",
        f"row-{i}",
        "lead.v1",
        lead_payload(i, person),
        f'{{"row": {i}}}',
        None,
        1_700_000_000.0,
    )


def delivery_row(record_id: str, channel: str, payload: str) -> tuple:
    """A ``DELIVERY_COLS`` row."""
    return (
        f"{record_id}:{channel}",
        record_id,
        "leads",
        channel,
        "lead.scored",
        payload,
        "pending",
        0,
        1_700_000_000.0,
        1_700_000_000.0,
        "hot",
    )


def quarantine_row(key: str, raw: bytes) -> tuple:
    """A ``QUARANTINE_COLS`` row of a record that failed validation."""
    return (
        "leads",
        "validate",
        key,
        "RuleError",
        "rule_failed",
        "rule has_company failed",
        "{}",
        raw,
        "{}",
        "open",
        1_700_000_000.0,
        None,
    )


def dump(store_url: str) -> str:
    """The whole database as SQL text (``iterdump`` on SQLite, ``pg_dump`` on PostgreSQL)."""
    parts = urlsplit(store_url)
    if parts.scheme.startswith("sqlite"):
        con = sqlite3.connect(store_url.split("///", 1)[1])
        try:
            return "\n".join(con.iterdump())
        finally:
            con.close()
    options = parse_qs(parts.query).get("options", [""])[0]
    schema = options.split("search_path=", 1)[1]
    dsn = f"postgresql://{parts.netloc}{parts.path}"
    out = subprocess.run(
        ["pg_dump", "--no-owner", "-n", schema, dsn],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out.stdout.decode("utf-8", "replace")


def assert_no_canary(text: str) -> None:
    """No canary personal data appears in ``text``, in any letter case."""
    low = text.lower()
    # binary columns dump as hex (X'..' on SQLite, \\x.. on PostgreSQL): look for that form too
    found = [w for w in CANARY_WORDS if w.lower() in low or w.encode().hex() in low]
    assert found == [], f"personal data in clear: {found}"
