"""A 1C web service polled through the pipeline: a timeout mid-poll keeps the committed cursor."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from junction.core.errors import RemoteTimeoutError
from junction.pipeline.hub import Hub
from tests.contract.fixtures.soap_1c import T0
from tests.fakes.server import serve_app
from tests.fakes.soap_1c import ONEC_PATH, WSDL_DIR, OneCExchange, counterparty

CONFIG = """\
store: "sqlite:///{root}/j.db"
models_dir: models
pipelines:
  accounts:
    source:
      connector: soap_1c
      path: wsdl/HubExchange.wsdl
      address: "{url}{path}"
      username: Обмен
      password: "${{env:ONEC_PASSWORD}}"
      timeout_s: 0.5
      operations:
        counterparties:
          operation: GetCounterparties
          items: Counterparty
          incremental: change_date
          since_parameter: ChangedSince
          change_field: ChangedAt
          limit_parameter: Limit
    mapping: counterparty.yaml
    batch_size: 3
    workers: 0
"""

MAPPING = """\
id: test.onec_counterparty
entity: account
source_key: Ref
fields:
  external_id: {from: Ref, required: true}
  name: {from: Description, required: true, transforms: [trim]}
  tax_id: {from: INN}
  email: {from: Email, transforms: [trim, lower, email]}
  updated_at: {from: ChangedAt, transforms: [{datetime: {tz: Europe/Moscow}}]}
"""


@pytest.fixture
def fake():
    fake = OneCExchange()
    fake.counterparties = [counterparty(i, T0 + timedelta(minutes=i)) for i in range(8)]
    return fake


def _hub(tmp_path: Path, url: str, monkeypatch) -> Hub:
    (tmp_path / "models").mkdir()
    (tmp_path / "wsdl").mkdir()
    shutil.copy(WSDL_DIR / "hub_exchange_1c.wsdl", tmp_path / "wsdl" / "HubExchange.wsdl")
    (tmp_path / "counterparty.yaml").write_text(MAPPING, encoding="utf-8")
    cfg = tmp_path / "junction.yaml"
    cfg.write_text(CONFIG.format(root=tmp_path, url=url, path=ONEC_PATH), encoding="utf-8")
    monkeypatch.setenv("ONEC_PASSWORD", "пароль-Секрет-42")
    return Hub.from_file(cfg)  # the WSDL path resolves against the config's folder


def test_a_timeout_mid_poll_keeps_the_cursor_and_the_next_run_resumes(tmp_path, fake, monkeypatch):
    calls = []

    def second_call_hangs(operation, params):
        calls.append(operation)
        if len(calls) == 1:
            fake.faults.delay_s = 1.5
            fake.faults.fail_next("timeout", 1)

    fake.on_call = second_call_hangs
    with serve_app(fake.app()) as url:
        hub = _hub(tmp_path, url, monkeypatch)
        try:
            with pytest.raises(RemoteTimeoutError):
                hub.run_once()
            cursor = hub.store.get_cursor("accounts", "counterparties")
            stored = hub.store.counts()["records"]
            [summary] = hub.run_once()
            total = hub.store.counts()["records"]
            again = hub.run_once()
        finally:
            hub.close()
    # the first page (limit batch_size) was committed with its cursor, and only that
    assert stored == 3
    assert cursor["since"] == "2026-03-01T10:02:00.000000"
    assert summary.stored == 5
    assert total == 8
    assert again[0].read == 0
