"""CommerceML 2.x file connector: catalogues, offers (prices, rests) and orders from 1C."""

from connectors.commerceml.config import CommerceMLConfig
from connectors.commerceml.connector import CommerceMLConnector

__all__ = ["CommerceMLConfig", "CommerceMLConnector"]
