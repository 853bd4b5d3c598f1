"""Property-based API testing: Schemathesis generates requests from the committed OpenAPI schema.

It runs over real HTTP against a real server (SQLite store, a trained model) with valid admin
credentials, and fails on any server error (5xx) for any generated input.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.api.harness import ApiHarness, running_api, write_api_config

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


@pytest.fixture(scope="module")
def fuzz_api(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[ApiHarness]:
    root = tmp_path_factory.mktemp("fuzz")
    store = f"sqlite:///{root / 'junction.db'}"
    with running_api(write_api_config(root, store=store, models=models_dir)) as h:
        yield h


SCHEMA = schemathesis.openapi.from_path(OPENAPI)
# the pytest plugin of schemathesis does not support this pytest; drive its strategies directly
OPERATIONS = {r.ok().label: r.ok() for r in SCHEMA.get_all_operations()}


@pytest.mark.slow
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_no_server_error(label: str, fuzz_api: ApiHarness) -> None:
    headers = fuzz_api.headers("admin")

    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=OPERATIONS[label].as_strategy())
    def check(case: Any) -> None:
        case.call_and_validate(
            base_url=fuzz_api.base_url, headers=headers, checks=[not_a_server_error]
        )

    check()
