"""Salesforce connector: incremental SOQL reads, Bulk API 2.0 backfills, Outbound Messages."""

from connectors.salesforce.config import SalesforceConfig, SalesforceConnection
from connectors.salesforce.connector import SalesforceConnector

__all__ = ["SalesforceConfig", "SalesforceConnection", "SalesforceConnector"]
