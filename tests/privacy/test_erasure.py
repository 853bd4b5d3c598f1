"""Right to erasure: no readable trace of the person, audited without personal data, no comeback."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from junction.cli.keys import app as keys_cli
from junction.cli.subjects import app as subjects_cli
from junction.core.errors import SubjectErasedError
from junction.core.pseudonym import Pseudonymizer
from junction.store import tables as t
from junction.store.audit import AuditLog
from junction.store.batch_seal import SEALER
from junction.store.crypto_rows import StorePrivacy
from junction.store.erasure import erase
from junction.store.keyring import key_counts
from junction.store.repo import Store
from junction.store.suppressions import SuppressionList
from tests.privacy.conftest import (
    CANARIES,
    KEK_ENV,
    delivery_row,
    dump,
    quarantine_row,
    record_row,
)

PS = Pseudonymizer(b"p" * 32)
ANN = CANARIES[0]


def _write(store: Store, start: int = 0) -> None:
    records = [record_row(start + i, p) for i, p in enumerate(CANARIES)]
    store.write_batch(
        records=records,
        scores=[(r[0], "1", "lead-score", 0.7, "B", "[]", "production", 1.0) for r in records],
        deliveries=[
            delivery_row(r[0], "webhook.sales", orjson.dumps({"record_id": r[0]}).decode())
            for r in records
        ],
        quarantined=[
            quarantine_row(
                f"row-q{start}",
                f"9,Zebulonia,Quillfeather,{ANN['email']}\n".encode(),
            )
        ],
        cursor=None,
    )
    with store.begin() as conn:  # one failed attempt per delivery
        for r in records:
            conn.execute(
                t.attempts.insert().values(
                    delivery_id=f"{r[0]}:webhook.sales",
                    attempt_no=1,
                    started_at=time.time(),
                    duration_ms=3.0,
                    status_code=503,
                    outcome="retry",
                )
            )


def _count(store: Store, table: t.Table, *where: object) -> int:
    with store.begin() as conn:
        q = select(func.count()).select_from(table)
        if where:
            q = q.where(*where)  # type: ignore[arg-type]
        return int(conn.execute(q).scalar_one())


def _live_keys(store: Store) -> dict[str, int]:
    with store.begin() as conn:
        return key_counts(conn)


def _erase_ann(store: Store) -> object:
    return erase(
        store,
        emails=[ANN["email"].upper()],  # type: ignore[union-attr]
        phones=[ANN["phone"]],  # type: ignore[list-item]
        actor="cli:dpo",
        audit=AuditLog(store, PS),
        suppressions=SuppressionList(store, PS),
    )


def test_erasure_leaves_no_readable_trace_and_is_audited_without_personal_data(
    sealed_store: tuple[Store, StorePrivacy], store_url: str
) -> None:
    store, privacy = sealed_store
    _write(store)
    ann = privacy.keyring.subject("email", ANN["email"])
    with store.begin() as conn:  # what a backup taken now holds of Ann
        backup = (
            conn.execute(
                select(t.records.c.id, t.records.c.entity, t.records.c.payload).where(
                    t.records.c.subject == ann
                )
            )
            .mappings()
            .all()
        )
    assert len(backup) == 1

    report = _erase_ann(store)

    assert report.counts() | {} == {  # type: ignore[attr-defined]
        "records": 1,
        "scores": 1,
        "deliveries": 1,
        "attempts": 1,
        "quarantine": 1,
        "relay": 0,
        "keys_destroyed": 1,
        "suppressed": 2,
        "tombstones": 0,
    }
    rid = backup[0]["id"]
    assert store.fetch_record(rid) is None
    assert _count(store, t.scores, t.scores.c.record_id == rid) == 0
    assert _count(store, t.deliveries, t.deliveries.c.record_id == rid) == 0
    assert _count(store, t.attempts, t.attempts.c.delivery_id == f"{rid}:webhook.sales") == 0
    assert _count(store, t.quarantine) == 0
    # the others are untouched
    assert _count(store, t.records) == len(CANARIES) - 1
    other = store.fetch_record("leads:f00d:1")
    assert other is not None
    assert orjson.loads(other["payload"])["email"] == CANARIES[1]["email"]
    # the key is destroyed: the backup copy no longer opens (crypto-shredding)
    with pytest.raises(SubjectErasedError), store.begin() as conn:
        store.open_record_rows(conn, backup)
    fresh = Store.open(store_url)
    try:
        with pytest.raises(SubjectErasedError), fresh.begin() as conn:
            fresh.open_record_rows(conn, backup)
    finally:
        fresh.close()
    # nothing in the dump names Ann, not even in the audit log or the suppression list
    text = dump(store_url).lower()
    for word in (ANN["first_name"], ANN["last_name"], ANN["email"], ANN["phone"], "4155550123"):
        assert word.lower() not in text  # type: ignore[union-attr]
    audit = AuditLog(store, PS)
    [entry] = audit.query(action="subject.erase")
    assert entry.actor == "cli:dpo"
    assert entry.target == f"subject:{ann}"
    assert entry.detail["records"] == 1
    assert audit.verify() is None
    # and the addresses stay suppressed (keyed), so nothing messages Ann again
    sl = SuppressionList(store, PS)
    assert sl.entry("email", ANN["email"])["reason"] == "erased"  # type: ignore[arg-type,index]
    assert sl.suppressed("phone", [ANN["phone"]]) == {ANN["phone"]}  # type: ignore[list-item]


def test_a_resync_after_erasure_does_not_bring_the_person_back(
    sealed_store: tuple[Store, StorePrivacy], store_url: str
) -> None:
    store, privacy = sealed_store
    _write(store)
    _erase_ann(store)
    # the CRM sync delivers Ann again, in a new batch, through another process's store
    other = Store.open(store_url)
    try:
        _write(other, start=100)
    finally:
        other.close()
    ann = privacy.keyring.subject("email", ANN["email"])
    assert _count(store, t.records, t.records.c.subject == ann) == 0
    assert _count(store, t.deliveries, t.deliveries.c.subject == ann) == 0
    assert _count(store, t.quarantine, t.quarantine.c.subject == ann) == 0
    assert _count(store, t.scores, t.scores.c.record_id == "leads:f00d:100") == 0
    # everyone else's new records are stored
    assert _count(store, t.records) == 2 * (len(CANARIES) - 1)
    # also a person erased before they were ever stored is refused on first sight
    erase(
        store,
        emails=["never.seen@canary-mail.example"],
        actor="cli:dpo",
        audit=AuditLog(store, PS),
    )
    new = dict(CANARIES[1], email="never.seen@canary-mail.example")
    store.write_batch(
        records=[record_row(500, new)], scores=[], deliveries=[], quarantined=[], cursor=None
    )
    assert store.fetch_record("leads:f00d:500") is None


def test_erasure_needs_encryption_at_rest(store_url: str) -> None:
    from junction.core.errors import ConfigError

    store = Store.open(store_url)
    try:
        with pytest.raises(ConfigError, match="privacy section"):
            erase(store, emails=["a@b.example"], actor="cli:x", audit=AuditLog(store, PS))
    finally:
        store.close()


def _config(tmp_path: Path, store_url: str, kek: str) -> Path:
    cfg = tmp_path / "junction.yaml"
    cfg.write_text(
        f'store: "{store_url}"\nmodels_dir: {tmp_path / "state" / "models"}\n'
        f"privacy:\n  kek: {kek}\n"
    )
    return cfg


def test_the_cli_erases_rotates_and_never_prints_the_person(
    tmp_path: Path, store_url: str, kek: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(tmp_path, store_url, kek)
    runner = CliRunner()
    status = runner.invoke(keys_cli, ["status", "-c", str(cfg)], catch_exceptions=False)
    assert status.exit_code == 0, status.output
    assert "on; KEK" in status.output  # the privacy section turned it on
    assert f"write batches sealed by: {SEALER}" in status.output
    store = Store.open(store_url)
    try:
        _write(store)
    finally:
        store.close()

    monkeypatch.setenv("JUNCTION_TEST_KEK_2", "n" * 48)
    rotated = runner.invoke(keys_cli, ["rotate", "--to", "env:JUNCTION_TEST_KEK_2", "-c", str(cfg)])
    assert rotated.exit_code == 0, rotated.output
    assert "re-wrapped 3 data keys" in rotated.output  # Ann, Ottoline, Phonella
    # the config still names the old KEK: refused, with the way out in the message
    stale = runner.invoke(subjects_cli, ["erase", "--email", ANN["email"], "--yes", "-c", str(cfg)])  # type: ignore[list-item]
    assert stale.exit_code == 2
    assert "KeyUnavailableError" in stale.output
    cfg.write_text(cfg.read_text().replace(kek, "env:JUNCTION_TEST_KEK_2"))

    result = runner.invoke(
        subjects_cli,
        ["erase", "--email", ANN["email"], "--phone", ANN["phone"], "--yes", "-c", str(cfg)],  # type: ignore[list-item]
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "1 records" in result.output
    assert "audit entry #" in result.output
    for word in (ANN["email"], ANN["phone"], "Zebulonia"):
        assert word not in result.output  # type: ignore[operator]
    store = Store.open(store_url)
    try:
        assert _count(store, t.records) == len(CANARIES) - 1
        assert AuditLog(store).verify() is None
        actions = [e.action for e in AuditLog(store).query()]
        assert actions[:2] == ["subject.erase", "keys.rotate"]
    finally:
        store.close()
    monkeypatch.delenv(KEK_ENV)


def test_the_cli_refuses_without_a_person(tmp_path: Path, store_url: str, kek: str) -> None:
    cfg = _config(tmp_path, store_url, kek)
    result = CliRunner().invoke(subjects_cli, ["erase", "--yes", "-c", str(cfg)])
    assert result.exit_code == 2
    assert "--email" in result.output


def test_sealing_before_the_write_lock_settles_races_in_the_transaction(
    sealed_store: tuple[Store, StorePrivacy], store_url: str
) -> None:
    store, _ = sealed_store
    other = Store.open(store_url)  # a second writer process
    try:
        mine = [record_row(1, ANN)]
        theirs = [record_row(2, ANN)]  # the same person, new to both writers
        pre_mine = store.preseal(mine, [])
        pre_theirs = other.preseal(theirs, [])
        other.write_batch(
            records=theirs,
            scores=[],
            deliveries=[],
            quarantined=[],
            cursor=None,
            presealed=pre_theirs,
        )
        # each writer stored its own key for her (ids are time-ordered, found without a subject
        # index); both open, from either side, and an erasure destroys both
        store.write_batch(
            records=mine,
            scores=[],
            deliveries=[],
            quarantined=[],
            cursor=None,
            presealed=pre_mine,
        )
        assert _live_keys(store) == {"people": 1, "keys": 2, "erased": 0, "system": 0}
        assert _count(store, t.data_keys) == 0
        for rid in ("leads:f00d:1", "leads:f00d:2"):
            for reader in (store, other):
                row = reader.fetch_record(rid)
                assert row is not None
                assert orjson.loads(row["payload"])["email"] == ANN["email"]
        # an erasure between the sealing and the write: the write stores nothing of Ann
        late = [record_row(3, ANN)]
        pre_late = other.preseal(late, [delivery_row(late[0][0], "webhook.sales", '{"x": 1}')])
        _erase_ann(store)
        other.write_batch(
            records=late,
            scores=[],
            deliveries=[delivery_row(late[0][0], "webhook.sales", '{"x": 1}')],
            quarantined=[],
            cursor=None,
            presealed=pre_late,
        )
        assert _count(store, t.records) == 0
        assert _count(store, t.deliveries) == 0
        # both keys destroyed: their pages keep no slot of hers
        assert _live_keys(store) == {"people": 0, "keys": 0, "erased": 2, "system": 0}
    finally:
        other.close()
