"""SAP IDoc XML file drops: one record per IDoc, routed by the control record EDI_DC40."""

from connectors.sap_idoc.config import SapIdocConfig
from connectors.sap_idoc.connector import SapIdocConnector

__all__ = ["SapIdocConfig", "SapIdocConnector"]
