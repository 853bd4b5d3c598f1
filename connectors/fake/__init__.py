"""The ``fake`` connector: a versioned, polled source with fault knobs, for engine tests."""

from connectors.fake.connector import FakeConnector

__all__ = ["FakeConnector"]
