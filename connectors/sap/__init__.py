"""SAP RFC/BAPI functions exposed as SOAP services (SOAMANAGER): output tables as streams."""

from connectors.sap.config import SapConfig, SapFunction
from connectors.sap.connector import SapConnector

__all__ = ["SapConfig", "SapConnector", "SapFunction"]
