"""The dashboard's record journey shows the trace id the record was stored under."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from junction.store import queries
from tests.api.harness import running_api, write_api_config
from tests.dashboard.conftest import Ui
from tests.dashboard.support import ROWS, login, make_clients, write_leads


@pytest.fixture
def traced_ui(tmp_path: Path, models_dir: Path, spans: InMemorySpanExporter) -> Iterator[Ui]:
    store = f"sqlite:///{tmp_path / 'junction.db'}"
    with running_api(write_api_config(tmp_path, store=store, models=models_dir)) as api:
        write_leads(tmp_path / "inbox" / "leads.csv", ROWS)
        api.ctx.hub.runner("leads").run_once()
        yield Ui(api, make_clients(api.ctx.store))


def test_the_record_page_shows_its_trace_id(traced_ui: Ui, spans: InMemorySpanExporter) -> None:
    [batch] = [s for s in spans.get_finished_spans() if s.name == "junction.batch"]
    trace_id = f"{batch.context.trace_id:032x}"
    record = queries.list_records(traced_ui.api.ctx.store, "leads")[0][0]
    assert (
        json.loads(traced_ui.api.ctx.store.fetch_record(record["id"])["provenance"])["trace_id"]
        == trace_id
    )
    with login(traced_ui.url, *traced_ui.creds["viewer"]) as http:
        r = http.get(f"/ui/records/leads/{quote(record['id'], safe='')}")
    assert r.status_code == 200
    assert f'<code class="trace-id">{trace_id}</code>' in r.text
