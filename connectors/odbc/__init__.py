"""The ``odbc`` connector: database tables and queries through unixODBC, read as polled streams."""

from connectors.odbc.connector import OdbcConnector

__all__ = ["OdbcConnector"]
