"""Registers the ``soak`` marker (``-m soak`` runs the soak alone; ``-m "not soak"`` skips it)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "soak: the bounded soak (mixed traffic, periodic faults, reconciled; JUNCTION_SOAK_S)",
    )
