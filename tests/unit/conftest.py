"""Fixtures shared by unit tests that talk to a vendor fake."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.server import serve_app


@pytest.fixture
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The base URL of the test module's vendor fake, served on 127.0.0.1.

    The module defines the fake's state as an ``org`` fixture (Salesforce ``FakeOrg``) or a
    ``fake`` fixture (``HubSpotFake``); this serves its app for the test's duration.
    """
    if hasattr(request.module, "org"):
        app = request.getfixturevalue("org").app()
    else:
        app = request.getfixturevalue("fake").app
    with serve_app(app) as base:
        yield base
