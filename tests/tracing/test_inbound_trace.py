"""Inbound webhooks over real HTTP: the caller's ``traceparent`` is continued and stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.api.harness import ApiHarness, running_api, write_api_config
from tests.api.test_hooks import LEAD, post, signed
from tests.privacy_canaries import (
    CANARY_EMAIL,
    CANARY_FIRST,
    CANARY_LAST,
    CANARY_PHONE,
    needles,
)

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def api(
    tmp_path: Path, store_url: str, models_dir: Path, spans: InMemorySpanExporter
) -> Iterator[ApiHarness]:
    with running_api(write_api_config(tmp_path, store=store_url, models=models_dir)) as h:
        yield h


def _provenance(api: ApiHarness, record_id: str) -> dict:
    row = api.ctx.store.fetch_record(record_id)
    assert row is not None
    return json.loads(row["provenance"])


def test_a_pushed_record_keeps_the_callers_trace(
    api: ApiHarness, spans: InMemorySpanExporter
) -> None:
    body = orjson.dumps({"records": [LEAD, {**LEAD, "lead_id": "L-2"}]})
    headers = {**signed(body), "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    r = post(api, body, headers)
    assert r.status_code == 200, r.text
    ids = [rec["record_id"] for rec in r.json()["records"]]
    assert len(ids) == 2
    finished = spans.get_finished_spans()
    [http] = [s for s in finished if s.name == "junction.http"]
    assert f"{http.context.trace_id:032x}" == CALLER_TRACE
    assert f"{http.parent.span_id:016x}" == CALLER_SPAN
    assert http.parent.is_remote
    assert http.attributes["http.response.status_code"] == 200
    [batch] = [s for s in finished if s.name == "junction.batch"]
    assert batch.parent.span_id == http.context.span_id
    names = {s.name for s in finished if s.parent and s.parent.span_id == batch.context.span_id}
    assert {"junction.read", "junction.map", "junction.store"} <= names
    for rid in ids:
        prov = _provenance(api, rid)
        assert prov["trace_id"] == CALLER_TRACE
        assert prov["span_id"] == f"{batch.context.span_id:016x}"


@pytest.mark.parametrize(
    "given",
    ["garbage", f"00-{'0' * 32}-{CALLER_SPAN}-01", f"ff-{CALLER_TRACE}-{CALLER_SPAN}-01", None],
    ids=["garbage", "zero-trace", "unknown-version", "absent"],
)
def test_without_a_valid_traceparent_a_new_trace_starts(
    api: ApiHarness, spans: InMemorySpanExporter, given: str | None
) -> None:
    body = orjson.dumps(LEAD)
    headers = signed(body)
    if given is not None:
        headers["traceparent"] = given
    r = post(api, body, headers)
    assert r.status_code == 200, r.text
    [http] = [s for s in spans.get_finished_spans() if s.name == "junction.http"]
    assert http.parent is None
    prov = _provenance(api, r.json()["records"][0]["record_id"])
    assert prov["trace_id"] == f"{http.context.trace_id:032x}" != CALLER_TRACE


def test_span_attributes_hold_no_personal_data(
    api: ApiHarness, spans: InMemorySpanExporter
) -> None:
    canary = {
        **LEAD,
        "lead_id": "L-77",
        "email": CANARY_EMAIL,
        "first_name": CANARY_FIRST,
        "last_name": CANARY_LAST,
        "phone": CANARY_PHONE,
    }
    # one stored, one quarantined by a rule, one failing the mapping: every path's spans
    records = [canary, {**canary, "lead_id": "L-78", "email": ""}, {**canary, "email": 7}]
    body = orjson.dumps({"records": records})
    r = post(api, body, {**signed(body), "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"})
    assert r.status_code == 200, r.text
    finished = spans.get_finished_spans()
    assert {"junction.http", "junction.batch", "junction.map"} <= {s.name for s in finished}
    dumped = "\n".join(s.to_json() for s in finished).lower()
    for needle in needles():
        assert needle.lower() not in dumped
