"""1C:Enterprise published SOAP web services: operations as streams, read incrementally."""

from connectors.soap_1c.config import OneCOperation, Soap1CConfig
from connectors.soap_1c.connector import Soap1CConnector

__all__ = ["OneCOperation", "Soap1CConfig", "Soap1CConnector"]
