"""The CRM write-back channel: scores, grades and top factors written to CRM records."""

from outbound.crm.channel import CrmWriteBackChannel
from outbound.crm.config import CrmWriteBackConfig

__all__ = ["CrmWriteBackChannel", "CrmWriteBackConfig"]
