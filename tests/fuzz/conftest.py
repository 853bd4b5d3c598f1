"""Bounded fuzzing (Hypothesis): the folder runs in well under a minute.

Every test here is marked ``fuzz`` and bounded by ``max_examples`` and a per-example deadline
(``FUZZ``); the example database is off, so nothing is written next to the sources.  The marker is
registered here until pyproject.toml lists it.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: bounded Hypothesis fuzzing of the input parsers")
