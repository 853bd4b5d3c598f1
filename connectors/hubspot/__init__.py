"""HubSpot CRM v3 source: contacts, companies and deals; webhook events; reads by id."""

from connectors.hubspot.config import HubSpotConfig, HubSpotConnection
from connectors.hubspot.connector import HubSpotConnector

__all__ = ["HubSpotConfig", "HubSpotConnection", "HubSpotConnector"]
