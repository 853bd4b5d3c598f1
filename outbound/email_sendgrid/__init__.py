"""Email channel: SendGrid v3 Mail Send through the sendgrid SDK, Jinja2 templates per route."""

from outbound.email_sendgrid.channel import SendGridEmailChannel
from outbound.email_sendgrid.config import SendGridEmailConfig

__all__ = ["SendGridEmailChannel", "SendGridEmailConfig"]
