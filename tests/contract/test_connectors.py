"""The connector contract suite, generated from the registry (no hand-kept list).

Every connector registered under ``junction.connectors`` must have a fixture module
``tests/contract/fixtures/<name>.py`` (see ``support.py``) and pass every check here, unless the
fixture waives a check with a reason and an issue id.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import ExitStack, redirect_stderr
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from connectors.base import Capability, RawBatch, SourceConnector
from junction.core.errors import AuthError, ConfigError, RateLimitedError, RetryableError
from junction.core.registry import Registry
from tests.contract.suite_support import build_plugin, open_contract, skip_if_waived
from tests.contract.support import ConnectorContract

REGISTRY = Registry()
NAMES = REGISTRY.names("connectors")
SECRET_WORDS = ("password", "secret", "token", "private_key", "api_key", "session_id")


@pytest.fixture(params=NAMES)
def contract(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, ConnectorContract]]:
    with open_contract("connector", "fixtures", request.param, tmp_path) as c:
        yield request.param, c


def _build(name: str, options: dict[str, Any]) -> SourceConnector:
    conn: SourceConnector = build_plugin(REGISTRY, "connectors", name, options)
    return conn


def _waived(c: ConnectorContract, check: str) -> None:
    skip_if_waived(c.waivers, check)


def _read_all(conn: SourceConnector, stream: str, cursor: dict[str, Any] | None) -> list[RawBatch]:
    return list(conn.read(stream, cursor))


def test_registry_has_connectors():
    assert {"csv_file", "xml_file"} <= set(NAMES)


def test_config_schema_marks_secrets(contract):
    name, _c = contract
    model = REGISTRY.get("connectors", name).config_model
    schema = model.model_json_schema()
    assert schema.get("properties"), "the config exports a JSON Schema with properties"
    for field_name, info in model.model_fields.items():
        if any(w in field_name for w in SECRET_WORDS):
            ann = info.annotation
            assert ann is SecretStr or "SecretStr" in str(ann), (
                f"{name}.{field_name} holds a secret but is {ann}, not SecretStr"
            )
        assert info.description, f"{name}.{field_name} has no description"


def test_config_accepts_the_pipeline_batch_size(contract):
    name, c = contract
    model = REGISTRY.get("connectors", name).config_model
    assert "batch_size" in model.model_fields, f"{name} cannot take the pipeline's batch_size"
    model.model_validate({**c.options, "batch_size": 50})


def test_check_passes_against_fake_and_refuses_bad_credentials(contract):
    name, c = contract
    conn = _build(name, c.options)
    try:
        result = conn.check()
        assert result.ok, result.message
    finally:
        conn.close()
    _waived(c, "bad_credentials")
    assert c.bad_credentials is not None
    bad = _build(name, c.bad_credentials)
    try:
        result = bad.check()
        assert not result.ok
        assert result.message
        with pytest.raises(AuthError):
            _read_all(bad, c.stream, None)
    finally:
        bad.close()


def test_discovery_and_keyed_reads(contract):
    name, c = contract
    conn = _build(name, c.options)
    try:
        streams = conn.discover()
        assert streams, "discovery is non-empty"
        assert c.stream in {s.name for s in streams}
        batches = _read_all(conn, c.stream, None)
    finally:
        conn.close()
    assert len(batches) >= 2, "the fixture's stream spans at least two batches"
    keys = [k for b in batches for k in b.keys]
    assert len(keys) >= 5
    assert all(isinstance(k, str) and k for k in keys)
    assert len(set(keys)) == len(keys), "keys are unique within a read"
    for b in batches:
        assert len(b.records) == len(b.keys) == len(b.positions)
        assert all(isinstance(r, dict) and r for r in b.records)
        assert isinstance(b.cursor, dict)
        if b.versions is not None:
            assert len(b.versions) == len(b.records)


def test_resume_never_rereads_older_records(contract):
    name, c = contract
    _waived(c, "resume")
    conn = _build(name, c.options)
    try:
        first = _read_all(conn, c.stream, None)
        all_keys = [k for b in first for k in b.keys]
        done = first[0]
        resumed = _read_all(conn, c.stream, done.cursor)
        again = [k for b in resumed for k in b.keys]
        assert not set(done.keys) & set(again), "records before the cursor were read again"
        assert set(again) == set(all_keys) - set(done.keys), "records after the cursor were lost"
        # the final cursor, resumed, reads nothing new
        assert [k for b in _read_all(conn, c.stream, first[-1].cursor) for k in b.keys] == []
    finally:
        conn.close()


def test_rate_limit_is_typed_with_retry_after(contract):
    name, c = contract
    _waived(c, "faults")
    assert c.fail_next is not None
    conn = _build(name, c.options)
    c.fail_next("rate_limit", 1000)
    try:
        with pytest.raises(RateLimitedError) as info:
            _read_all(conn, c.stream, None)
        assert info.value.retry_after == pytest.approx(c.retry_after_s)
    finally:
        c.fail_next("rate_limit", 0)
        conn.close()


def test_server_error_is_retryable(contract):
    name, c = contract
    _waived(c, "faults")
    assert c.fail_next is not None
    conn = _build(name, c.options)
    c.fail_next("server_error", 1000)
    try:
        with pytest.raises(RetryableError):
            _read_all(conn, c.stream, None)
    finally:
        c.fail_next("server_error", 0)
        conn.close()


def test_close_is_idempotent_and_logs_hold_no_secret(contract, caplog):
    name, c = contract
    sink = io.StringIO()
    caplog.set_level(logging.DEBUG)
    with ExitStack() as stack:
        stack.enter_context(redirect_stderr(sink))
        conn = _build(name, c.options)
        conn.check()
        _read_all(conn, c.stream, None)
        if c.fail_next is not None:
            c.fail_next("server_error", 1000)
            with pytest.raises((RetryableError, ConfigError)):
                _read_all(conn, c.stream, None)
            c.fail_next("server_error", 0)
        conn.close()
        conn.close()
        if c.bad_credentials is not None:
            bad = _build(name, c.bad_credentials)
            bad.check()
            bad.close()
    text = sink.getvalue() + caplog.text
    for secret in c.secrets:
        assert secret not in text, f"a secret of {name} appeared in the logs"


def test_declared_capabilities_are_known(contract):
    name, _c = contract
    caps = REGISTRY.get("connectors", name).capabilities
    assert caps
    assert all(isinstance(x, Capability) for x in caps)
