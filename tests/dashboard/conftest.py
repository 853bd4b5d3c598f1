"""Fixtures: the API (with the dashboard) on a real SQLite store, seeded with a lead file."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.api.harness import ApiHarness, running_api, write_api_config
from tests.dashboard.support import ROWS, make_clients, write_leads


@dataclass
class Ui:
    """A running app with seeded data and a client per role."""

    api: ApiHarness
    creds: dict[str, tuple[str, str]]

    @property
    def url(self) -> str:
        return self.api.base_url


@pytest.fixture
def ui(tmp_path: Path, models_dir: Path) -> Iterator[Ui]:
    """The app on SQLite after one run of a five-row lead file (two rows quarantined)."""
    yield from _ui(tmp_path, models_dir, f"sqlite:///{tmp_path / 'junction.db'}")


@pytest.fixture
def ui_any(tmp_path: Path, models_dir: Path, store_url: str) -> Iterator[Ui]:
    """The same on SQLite and PostgreSQL."""
    yield from _ui(tmp_path, models_dir, store_url)


def _ui(tmp_path: Path, models_dir: Path, store: str) -> Iterator[Ui]:
    with running_api(write_api_config(tmp_path, store=store, models=models_dir)) as api:
        write_leads(tmp_path / "inbox" / "leads.csv", ROWS)
        summary = api.ctx.hub.runner("leads").run_once()
        assert (summary.stored, summary.quarantined) == (3, 2)
        yield Ui(api, make_clients(api.ctx.store))
