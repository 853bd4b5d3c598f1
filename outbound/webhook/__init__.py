"""Webhook channel: Standard Webhooks signed POSTs over aiohttp, plus a local verifying sink.

The sink (``outbound.webhook.sink``) is imported on demand only, so ``python -m
outbound.webhook.sink`` runs it without a double import.
"""

from outbound.webhook.channel import WebhookChannel
from outbound.webhook.config import WebhookConfig, generate_secret

__all__ = ["WebhookChannel", "WebhookConfig", "generate_secret"]
