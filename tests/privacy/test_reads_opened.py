"""API reads open sealed rows; the hub turns encryption on from its privacy section."""

from __future__ import annotations

from pathlib import Path

import orjson

from junction.pipeline.config import load_config
from junction.pipeline.hub import Hub
from junction.store import queries
from junction.store.crypto_rows import StorePrivacy
from junction.store.repo import Store
from tests.privacy.conftest import CANARIES, delivery_row, quarantine_row, record_row

ANN = CANARIES[0]


def test_api_reads_open_sealed_rows(sealed_store: tuple[Store, StorePrivacy]) -> None:
    store, _ = sealed_store
    rec = record_row(0, ANN)
    event = orjson.dumps({"record": orjson.loads(rec[6])}).decode()
    store.write_batch(
        records=[rec],
        scores=[],
        deliveries=[delivery_row(rec[0], "webhook.sales", event)],
        quarantined=[quarantine_row("row-q", f"q,{ANN['email']}\n".encode())],
        cursor=None,
    )
    detail = queries.record_detail(store, rec[0])
    assert detail is not None
    assert detail["payload"]["email"] == ANN["email"]
    assert "subject" not in detail
    delivery = queries.delivery_detail(store, f"{rec[0]}:webhook.sales")
    assert delivery is not None
    assert delivery["payload"]["record"]["phone"] == ANN["phone"]
    [item], _ = queries.list_quarantine(store)
    found = queries.quarantine_detail(store, item["id"])
    assert found is not None
    assert found[1] == f"q,{ANN['email']}\n".encode()


def test_the_hub_turns_encryption_on_from_its_config(
    tmp_path: Path, store_url: str, kek: str
) -> None:
    cfg = tmp_path / "junction.yaml"
    cfg.write_text(
        f'store: "{store_url}"\nmodels_dir: {tmp_path / "models"}\nprivacy:\n  kek: {kek}\n'
    )
    hub = Hub(load_config(cfg))
    try:
        assert hub.store.privacy() is not None
    finally:
        hub.close()
