"""The SOAP base of the ERP connectors (1C, SAP): a hardened zeep client and its settings."""

from connectors.soap.config import SoapConnection

__all__ = ["SoapConnection"]
