"""Message templates for the channels that reach people (email, SMS, Slack).

Templates are Jinja2, rendered in a sandbox (a template cannot reach Python internals) with
``StrictUndefined`` (a misspelled field is an error naming it, never an empty string in a message
to a customer).  HTML templates autoescape; text templates do not.  Each channel config holds
named template sets; a route picks one by name (``template:``), the channel's ``default`` serves
routes that name none.

The context is the delivery's event: ``record`` (the canonical record), ``score`` (value, grade,
top_factors, ...; None when unscored), ``type``, ``record_id``, ``pipeline``, ``entity``,
``source_key``; a digest adds ``items`` (a list of such events) and ``count``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import orjson
from jinja2 import Environment, StrictUndefined, Template, TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from junction.core.errors import ConfigError, InternalError, RecordError

_TEXT = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_HTML = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=True)


def compile_template(env: Environment, source: str, *, what: str = "template") -> Template:
    """Compile ``source`` in ``env`` (a channel's own sandboxed environment).

    Args:
        env: The Jinja2 environment (its escaping and undefined handling).
        source: The template text.
        what: How the error names the template.

    Returns:
        The compiled template.

    Raises:
        ConfigError: It does not compile; the message carries Jinja2's reason.
    """
    try:
        return env.from_string(source)
    except TemplateError as exc:
        raise ConfigError(f"{what} does not compile: {exc}") from None


@lru_cache(maxsize=512)
def _compile(source: str, html: bool) -> Template:
    return compile_template(_HTML if html else _TEXT, source)


def check_template(source: str, *, html: bool = False) -> str:
    """Compile ``source`` once (config validation); return it unchanged or raise ConfigError."""
    _compile(source, html)
    return source


def event_context(payload: bytes) -> dict[str, Any]:
    """Parse a delivery payload (the event JSON) into a template context."""
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise InternalError("delivery payload is not JSON") from None
    if not isinstance(event, dict):
        raise InternalError("delivery payload is not a JSON object")
    if isinstance(event.get("items"), list):
        event.setdefault("count", len(event["items"]))
    return event


def render(source: str, context: Mapping[str, Any], *, html: bool = False) -> str:
    """Render a template; a missing field or a failing filter is a RecordError naming it."""
    template = _compile(source, html)
    try:
        return str(template.render(**context))
    except UndefinedError as exc:
        raise RecordError(f"template field is missing: {exc.message}") from None
    except TemplateError as exc:
        raise RecordError(f"template failed: {exc}") from None
