"""Turn a delivery into one email: recipients, rendered templates, tracking fields.

Nothing rendered from record data can reach a header: the subject, display name, reply-to,
categories and every header value lose CR, LF and NUL (line breaks become one space), and addresses
pass email-validator.  The delivery id travels in ``custom_args`` (SendGrid echoes those at the top
level of each event it posts back), beside the pipeline and record id, and in the
``X-Junction-Delivery-Id`` header of the message itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import jmespath
from jmespath.parser import ParsedResult

from junction.core.errors import FatalError, RecordError
from outbound.base import Delivery
from outbound.email_sendgrid.config import SendGridEmailConfig, normalize_email
from outbound.masking import template_context
from outbound.templates import event_context, render

DELIVERY_HEADER = "X-Junction-Delivery-Id"
MAX_SUBJECT_CHARS = 998  # RFC 5322's line limit; SendGrid refuses longer subjects
MAX_CUSTOM_ARG_CHARS = 600  # custom_args share 10,000 bytes per message
_BREAKS = re.compile(r"[\r\n]+")


def one_line(value: str) -> str:
    """``value`` with line breaks turned into one space and NUL removed (header-safe)."""
    return _BREAKS.sub(" ", value).replace("\0", "").strip()


@dataclass(frozen=True)
class EmailMessage:
    """One email ready for the SendGrid client; every field is already sanitized."""

    from_email: str
    subject: str
    text: str
    to: tuple[str, ...]  # one personalization each: recipients never see each other
    from_name: str | None = None
    html: str | None = None
    reply_to: str | None = None
    categories: tuple[str, ...] = ()
    custom_args: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@lru_cache(maxsize=64)
def _compiled(path: str) -> ParsedResult:
    return jmespath.compile(path)


def event_recipients(config: SendGridEmailConfig, event: dict[str, Any]) -> list[str]:
    """Every address the event reaches, normalized and deduplicated (static ones first).

    Raises:
        RecordError: Nobody is left: ``to`` is empty and ``to_path`` finds no valid address.
    """
    found = list(config.to)
    if config.to_path is not None:
        value = _compiled(config.to_path).search(event)
        values = value if isinstance(value, list) else [value]
        for item in values:
            if not isinstance(item, str) or not item.strip():
                continue
            try:
                found.append(normalize_email(item))
            except ValueError:
                # a malformed address in the record skips that address, never the message
                continue
    if not found:
        raise RecordError(
            "the delivery names no valid email recipient", field="to_path", code="no_recipient"
        )
    return list(dict.fromkeys(found))


def build_message(config: SendGridEmailConfig, delivery: Delivery) -> EmailMessage:
    """Render the delivery's template for everyone it reaches except ``delivery.exclude``.

    Raises:
        RecordError: No recipient is left, or the template needs a field the event lacks.
        FatalError: The route asks for a template this channel does not have.
    """
    event = event_context(delivery.payload)
    excluded = {a.lower() for a in delivery.exclude}
    to = tuple(a for a in event_recipients(config, event) if a not in excluded)
    if not to:
        raise RecordError(
            "every recipient of the delivery is suppressed", code="all_recipients_suppressed"
        )
    name = delivery.template or "default"
    template = config.templates.get(name)
    if template is None:
        raise FatalError(
            f"email channel {delivery.channel!r} has no template {name!r}",
            code="unknown_template",
            context={"channel": delivery.channel},
        )
    # the subject shows in previews and lock screens: masked unless the route reveals it
    subject = one_line(render(template.subject, template_context(delivery, event)))
    subject = subject[:MAX_SUBJECT_CHARS]
    if not subject:
        raise RecordError("the rendered subject is empty", field="subject", code="empty_subject")
    text = render(template.text, event)
    if not text.strip():
        raise RecordError("the rendered text body is empty", field="text", code="empty_body")
    html = render(template.html, event, html=True) if template.html is not None else None
    return EmailMessage(
        from_email=config.from_email,
        from_name=one_line(config.from_name) if config.from_name else None,
        reply_to=config.reply_to,
        to=to,
        subject=subject,
        text=text,
        html=html or None,
        categories=tuple(c for c in (one_line(c) for c in config.categories) if c),
        custom_args=tracking_args(delivery, event),
        headers={DELIVERY_HEADER: one_line(delivery.delivery_id)},
    )


def tracking_args(delivery: Delivery, event: dict[str, Any]) -> dict[str, str]:
    """The ``custom_args`` SendGrid echoes in every event about this message."""
    args = {"delivery_id": delivery.delivery_id}
    for key in ("pipeline", "record_id"):
        value = event.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            args[key] = str(value)
    return {k: one_line(v)[:MAX_CUSTOM_ARG_CHARS] for k, v in args.items()}
