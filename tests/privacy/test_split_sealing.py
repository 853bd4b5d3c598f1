"""Records whose personal members the preparer hands over apart are sealed as if parsed.

With encryption at rest the preparer writes a record's readable members as its payload and
passes the personal ones beside it (``prepare(split_personal=True)``); ``preseal`` seals those
without parsing the payload back.  What is stored and what reads open must be exactly what the
parsing path gives, on every path that writes records.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from pydantic import Field, ValidationError
from sqlalchemy import create_engine, select

from junction.core.errors import InternalError
from junction.pipeline.hub import Hub
from junction.pipeline.personal import PersonalSplit
from junction.store import tables as t
from junction.store.crypto_rows import SEALED_KEY, StorePrivacy
from junction.store.repo import Store
from outbound.webhook.config import generate_secret
from schemas import ENTITY_MODELS
from schemas.base import CanonicalModel
from tests.integration.helpers import write_config
from tests.privacy.conftest import (
    CANARIES,
    assert_no_canary,
    drop_people_csv,
    dump,
    record_row,
)

Lead = ENTITY_MODELS["lead"]


def _run(root: Path, store: str, models: Path, workers: int, kek: str | None) -> None:
    cfg = write_config(
        root,
        store=store,
        url="http://127.0.0.1:9/never-called",
        secret=generate_secret(),
        models=models,
        workers=workers,
        batch=16,
    )
    if kek is not None:
        cfg.write_text(cfg.read_text() + f"privacy:\n  kek: {kek}\n")
    # a messy filler: some of its rows are quarantined
    drop_people_csv(
        root / "inbox" / "leads.csv", CANARIES, ids="S-", filler=60, seed=11, messy=True
    )
    hub = Hub.from_file(cfg)
    try:
        hub.run_once()
    finally:
        hub.close()


def _opened(url: str) -> tuple[dict[str, str], list[str]]:
    """Every record's payload as reads open it, and every outbox payload, from ``url``."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            ids = sorted(conn.execute(select(t.records.c.id)).scalars())
    finally:
        engine.dispose()
    store = Store.open(url)
    try:
        records = {}
        for rid in ids:
            row = store.fetch_record(rid)
            assert row is not None
            records[rid] = row["payload"]
        events = sorted(d["payload"] for d in store.claim_deliveries(1000, 30))
    finally:
        store.close()
    return records, events


@pytest.mark.parametrize("workers", [0, 2])
def test_the_hub_stores_split_records_exactly_as_parsed_ones(
    tmp_path: Path, store_url: str, models_dir: Path, kek: str, workers: int
) -> None:
    if workers and not store_url.startswith("sqlite"):
        pytest.skip("worker processes are covered on SQLite; PostgreSQL shares the same path")
    plain_url = f"sqlite:///{tmp_path / 'plain' / 'plain.db'}"
    (tmp_path / "plain").mkdir()
    _run(tmp_path / "plain", plain_url, models_dir, workers, None)
    _run(tmp_path / "sealed", store_url, models_dir, workers, kek)

    plain_records, plain_events = _opened(plain_url)
    sealed_records, sealed_events = _opened(store_url)
    assert len(plain_records) >= 60
    # the same records, member for member and in the same order, and the same events
    assert sealed_records == plain_records
    assert sealed_events == plain_events
    assert plain_events  # routed rows carry the whole record
    assert_no_canary(dump(store_url))
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(select(t.records.c.payload)).scalars().all()
    finally:
        engine.dispose()
    for payload in stored:  # personal members only under the seal, which comes last
        obj = orjson.loads(payload)
        assert not {"first_name", "last_name", "email", "phone"} & obj.keys()
        assert list(obj)[-1] == SEALED_KEY


def _split_rows(rows: list[tuple[object, ...]]) -> tuple[list[tuple[object, ...]], list[dict]]:
    """``rows`` as the preparer hands them over: readable payloads, personal members apart."""
    personal_fields = tuple(Lead.pii_fields())
    clear, personal = [], []
    for row in rows:
        obj = orjson.loads(str(row[6]))
        personal.append({k: obj.pop(k) for k in personal_fields if k in obj})
        clear.append((*row[:6], orjson.dumps(obj).decode(), *row[7:]))
    return clear, personal


def test_preseal_of_split_rows_equals_preseal_of_whole_ones(
    sealed_store: tuple[Store, StorePrivacy],
) -> None:
    store, privacy = sealed_store
    whole = [record_row(i, p) for i, p in enumerate(CANARIES)]
    clear, personal = _split_rows(whole)
    parsed = privacy.preseal(whole, [])
    given = privacy.preseal(clear, [], personal)
    # the same readable text, personal JSON and subject per record
    assert parsed.clears == given.clears
    assert parsed.pii_json == given.pii_json
    assert parsed.subjects_of == given.subjects_of
    for a, b in zip(parsed.sealed, given.sealed, strict=True):
        sealed_a, sealed_b = orjson.loads(a[6]), orjson.loads(b[6])
        # the readable part is the same text; the seals differ only by their nonces
        assert a[6].split(f',"{SEALED_KEY}"')[0] == b[6].split(f',"{SEALED_KEY}"')[0]
        assert sealed_a.keys() == sealed_b.keys()
    store.write_batch(
        records=clear, scores=[], deliveries=[], quarantined=[], cursor=None, personal=personal
    )
    for i, person in enumerate(CANARIES):
        row = store.fetch_record(f"leads:f00d:{i}")
        assert row is not None
        assert row["payload"] == orjson.dumps(orjson.loads(str(whole[i][6]))).decode()
        assert orjson.loads(row["payload"])["last_name"] == person["last_name"]


def test_personal_members_that_do_not_match_the_records_are_refused(
    sealed_store: tuple[Store, StorePrivacy],
) -> None:
    _, privacy = sealed_store
    clear, personal = _split_rows([record_row(i, p) for i, p in enumerate(CANARIES)])
    with pytest.raises(InternalError):
        privacy.preseal(clear, [], personal[:-1])


def test_a_store_without_encryption_refuses_split_rows_and_writes_nothing(store_url: str) -> None:
    store = Store.open(store_url)
    try:
        clear, personal = _split_rows([record_row(i, p) for i, p in enumerate(CANARIES)])
        with pytest.raises(InternalError):
            store.preseal(clear, [], personal)
        with pytest.raises(InternalError):
            store.write_batch(
                records=clear,
                scores=[],
                deliveries=[],
                quarantined=[],
                cursor=None,
                personal=personal,
            )
        assert store.counts()["records"] == 0
    finally:
        store.close()


class _Patient(CanonicalModel):
    """A model with a personal member that is not text (pydantic writes the date)."""

    schema_version: str = "patient.v1"
    name: str | None = Field(default=None, json_schema_extra={"x-pii": "direct_identifier"})
    born: date | None = Field(default=None, json_schema_extra={"x-pii": "sensitive"})
    ward: str | None = None


def test_personal_split_reads_what_pydantic_would_write() -> None:
    lead = Lead.model_validate(
        {"external_id": "L1", "first_name": "Zebulonia", "email": "z@canary-mail.example"}
    )
    split = PersonalSplit(Lead)
    assert split.of(lead) == orjson.loads(
        Lead.__pydantic_serializer__.to_json(lead, include=split.members, exclude_none=True)
    )
    assert list(split.of(lead)) == ["first_name", "email"]  # the model's order, unset ones out
    patient = _Patient(name="Ottoline", born=date(1990, 2, 3), ward="B")
    assert PersonalSplit(_Patient).of(patient) == {"name": "Ottoline", "born": "1990-02-03"}


@st.composite
def _instances(draw: st.DrawFn, model: type[CanonicalModel]) -> CanonicalModel:
    emails = {f: st.one_of(st.none(), st.emails()) for f in model.model_fields if "email" in f}
    try:
        return draw(st.builds(model, **emails))
    except ValidationError:  # a drawn value the model refuses (blank text, a bad email...)
        reject()


@pytest.mark.parametrize("entity", sorted(ENTITY_MODELS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_the_readable_part_is_what_pydantic_writes_without_the_personal_members(
    entity: str, data: st.DataObject
) -> None:
    """``clear_json`` (a typed-dict serializer of the instance's fields, the personal ones
    marked excluded) writes the same bytes as pydantic's ``exclude=`` for every canonical
    model; a model it cannot stand in for (a serializer of its own) takes pydantic's path."""
    model = ENTITY_MODELS[entity]
    split = PersonalSplit(model)
    assert split._clear is not None  # every canonical model takes the fast path
    record = data.draw(_instances(model))
    expected = model.__pydantic_serializer__.to_json(
        record, exclude=split.members, exclude_none=True
    )
    assert split.clear_json(record) == expected


def test_a_model_with_its_own_serializer_takes_pydantics_path() -> None:
    from pydantic import field_serializer

    class _Shouting(_Patient):
        @field_serializer("ward")
        def _loud(self, ward: str | None) -> str | None:
            return None if ward is None else ward.upper()

    split = PersonalSplit(_Shouting)
    assert split._clear is None
    patient = _Shouting(name="Ottoline", born=date(1990, 2, 3), ward="b")
    assert orjson.loads(split.clear_json(patient)) == {"schema_version": "patient.v1", "ward": "B"}
