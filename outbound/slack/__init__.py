"""Slack channel: incoming webhooks or chat.postMessage (Block Kit), values escaped for Slack."""

from outbound.slack.channel import SlackChannel
from outbound.slack.config import SlackConfig, SlackTemplate

__all__ = ["SlackChannel", "SlackConfig", "SlackTemplate"]
