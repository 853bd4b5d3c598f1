"""A file drop through the whole hub with encryption at rest: sealed in the store, plain on the
wire, erased on request, and not brought back by the next sync of the same person."""

from __future__ import annotations

import itertools
from pathlib import Path

import orjson
import pytest

from junction.core.pseudonym import Pseudonymizer
from junction.pipeline.hub import Hub
from junction.store.audit import AuditLog
from junction.store.crypto_rows import enable_privacy
from junction.store.erasure import erase
from junction.store.repo import Store
from junction.store.suppressions import SuppressionList
from outbound.webhook.config import generate_secret
from outbound.webhook.sink import WebhookSink, read_sink_file
from tests.integration.helpers import scalar, write_config
from tests.privacy.conftest import CANARIES, assert_no_canary, drop_people_csv, dump

ANN = CANARIES[0]


@pytest.mark.parametrize("workers", [0, 2])
def test_sealed_at_rest_plain_on_the_wire_erased_and_not_resynced(
    tmp_path: Path, store_url: str, models_dir: Path, kek: str, workers: int
) -> None:
    if workers and not store_url.startswith("sqlite"):
        pytest.skip("worker processes are covered on SQLite; PostgreSQL shares the same path")
    secret = generate_secret()
    with WebhookSink(secret, tmp_path / "sink.jsonl") as sink:
        cfg = write_config(
            tmp_path,
            store=store_url,
            url=sink.url,
            secret=secret,
            models=models_dir,
            workers=workers,
            batch=16,
        )
        cfg.write_text(cfg.read_text() + f"privacy:\n  kek: {kek}\n")
        # the lead wires the privacy section into Hub(); until then the store is switched on
        # here, and every process (hub, workers) finds the store's settings by itself
        setup = Store.open(store_url)
        try:
            privacy = enable_privacy(setup, kek=kek)
        finally:
            setup.close()
        drop_people_csv(tmp_path / "inbox" / "first.csv", CANARIES, ids="C3-", seed=3, filler=40)
        hub = Hub.from_file(cfg)
        try:
            [summary] = hub.run_once()
            hub.deliver(drain_wait_s=5)
            counts = hub.store.counts()
        finally:
            hub.close()
        assert summary.read == 43
        assert counts["records"] >= 41  # the canaries have emails (the rule needs one)...
        sent = read_sink_file(tmp_path / "sink.jsonl")
        bodies = [orjson.dumps(s).decode() for s in sent]
        # ...and their events reached the receiver opened, personal fields and all
        assert any(ANN["email"] in b for b in bodies)  # type: ignore[operator]
        assert_no_canary(dump(store_url))

        store = Store.open(store_url)
        ps = Pseudonymizer(b"p" * 32)
        try:
            report = erase(
                store,
                emails=[ANN["email"]],  # type: ignore[list-item]
                actor="cli:dpo",
                audit=AuditLog(store, ps),
                suppressions=SuppressionList(store, ps),
            )
        finally:
            store.close()
        assert report.records == 1
        assert report.deliveries == 1
        ann = privacy.keyring.subject("email", ANN["email"])
        assert scalar(store_url, f"SELECT count(*) FROM records WHERE subject = '{ann}'") == 0

        # the next CRM export names Ann again, and someone new
        newcomer = {
            "first_name": "Nova",
            "last_name": "Late",
            "email": "nova@late.example",
            "phone": None,
        }
        drop_people_csv(
            tmp_path / "inbox" / "second.csv", [ANN, newcomer], ids="C4-", seed=4, filler=0
        )
        before = len(read_sink_file(tmp_path / "sink.jsonl"))
        hub = Hub.from_file(cfg)
        try:
            [again] = hub.run_once()
            hub.deliver(drain_wait_s=5)
        finally:
            hub.close()
        assert again.read == 2
        assert scalar(store_url, f"SELECT count(*) FROM records WHERE subject = '{ann}'") == 0
        assert scalar(store_url, f"SELECT count(*) FROM deliveries WHERE subject = '{ann}'") == 0
        nova = privacy.keyring.subject("email", "nova@late.example")
        assert scalar(store_url, f"SELECT count(*) FROM records WHERE subject = '{nova}'") == 1
        later = [orjson.dumps(s).decode() for s in read_sink_file(tmp_path / "sink.jsonl")]
        assert len(later) == before + 1
        assert not any(ANN["email"] in b for b in later[before:])  # type: ignore[operator]
        assert not any("Zebulonia" in b for b in itertools.islice(later, before, None))
