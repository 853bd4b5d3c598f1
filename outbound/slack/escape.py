"""Slack text escaping and the sandboxed Jinja environments that apply it to every value.

Slack reads ``<...>`` in message text as a control sequence: ``<!channel>`` and ``<!here>`` ping
everyone, ``<@U123>`` mentions a user, ``<http://x|click>`` shows a link whose target is hidden.
Slack's own rule is to escape exactly three characters in text that is not markup: ``&`` →
``&amp;``, ``<`` → ``&lt;``, ``>`` → ``&gt;`` (RELIABILITY.md case 29).  Slack decodes them back
for display, so an escaped value still reads as typed.

The environments escape through Jinja's ``finalize`` hook, which sees every ``{{ ... }}`` output:
values from records are always escaped, while the template's own literal text (a deliberate
``<!here>`` or ``<https://crm.example|open the CRM>``) is kept as written.  The Block Kit
environment also escapes each value as JSON string content, so a value can neither ping nor break
out of the JSON string it sits in; its ``tojson`` filter writes a whole value as JSON with every
string inside escaped for Slack.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

_SLACK = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def slack_escape(text: str) -> str:
    """Escape ``&``, ``<`` and ``>`` so ``text`` cannot form a Slack control sequence.

    Args:
        text: Any text that is not meant as Slack markup.

    Returns:
        The text with the three characters replaced by their entities.
    """
    return text.translate(_SLACK)


def escape_deep(value: Any) -> Any:
    """Return ``value`` with every string in it (keys included) Slack-escaped."""
    if isinstance(value, str):
        return slack_escape(value)
    if isinstance(value, Mapping):
        return {slack_escape(str(k)): escape_deep(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape_deep(v) for v in value]
    return value


def _text(value: Any) -> str:
    if value is None:
        # a null field reads as nothing in a chat message, not as "None"
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class JsonFragment(str):
    """Text already valid as JSON (from the Block Kit ``tojson`` filter); finalize keeps it."""

    __slots__ = ()


def _finalize_text(value: Any) -> str:
    return slack_escape(_text(value))


def _finalize_json(value: Any) -> str:
    if isinstance(value, JsonFragment):
        return str(value)
    # JSON string content: the quotes of orjson's output are the template's own
    return orjson.dumps(slack_escape(_text(value))).decode()[1:-1]


def _tojson(value: Any) -> JsonFragment:
    try:
        return JsonFragment(orjson.dumps(escape_deep(value)).decode())
    except TypeError as exc:
        raise ValueError(f"tojson cannot write this value: {exc}") from None


def _environment(*, json: bool) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        finalize=_finalize_json if json else _finalize_text,
    )
    if json:
        env.filters["tojson"] = _tojson
    else:
        # in text, tojson's HTML-oriented escaping would only get in the way; plain JSON is escaped
        # for Slack by finalize like any other value
        env.filters["tojson"] = lambda value: orjson.dumps(value).decode()
    return env


TEXT_ENV = _environment(json=False)
BLOCKS_ENV = _environment(json=True)
