"""Render a Slack message (text, and Block Kit blocks) from a template and a delivery's event.

Templates compile once (config validation) in the Slack environments of ``escape``; rendering a
missing field, a failing filter or blocks that are not a JSON list of blocks is a RecordError (this
delivery is dead-lettered, the others go on).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import orjson
from jinja2 import Template, TemplateError, UndefinedError

from junction.core.errors import ConfigError, RecordError
from outbound.slack.escape import BLOCKS_ENV, TEXT_ENV
from outbound.templates import compile_template

# Slack truncates text beyond 40,000 characters and refuses more than 50 blocks
MAX_TEXT_CHARS = 40_000
MAX_BLOCKS = 50


@lru_cache(maxsize=256)
def _compile(source: str, blocks: bool) -> Template:
    return compile_template(BLOCKS_ENV if blocks else TEXT_ENV, source, what="Slack template")


def check_text_template(source: str) -> str:
    """Compile a text template once; return it unchanged or raise ValueError (config validation)."""
    _check(source, blocks=False)
    return source


def check_blocks_template(source: str) -> str:
    """Compile a Block Kit template once; return it unchanged or raise ValueError."""
    _check(source, blocks=True)
    return source


def _check(source: str, *, blocks: bool) -> None:
    try:
        _compile(source, blocks)
    except ConfigError as exc:
        # pydantic validators report ValueError; the message names the template problem only
        raise ValueError(exc.user_message) from None


def _render(source: str, context: Mapping[str, Any], *, blocks: bool) -> str:
    template = _compile(source, blocks)
    try:
        return template.render(**context)
    except UndefinedError as exc:
        raise RecordError(f"Slack template field is missing: {exc.message}") from None
    except (TemplateError, ValueError, TypeError) as exc:
        raise RecordError(f"Slack template failed: {type(exc).__name__}") from None


def render_text(source: str, context: Mapping[str, Any]) -> str:
    """Render the message text; every interpolated value is Slack-escaped.

    Raises:
        RecordError: A field is missing, a filter failed, or the text is empty or too long.
    """
    text = _render(source, context, blocks=False)
    if not text.strip():
        raise RecordError("Slack template rendered an empty message text")
    if len(text) > MAX_TEXT_CHARS:
        raise RecordError(f"Slack message text is longer than {MAX_TEXT_CHARS} characters")
    return text


def render_blocks(source: str, context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Render a Block Kit template and parse it: a JSON list of at most 50 block objects.

    Raises:
        RecordError: The template failed, or its output is not such a list.
    """
    rendered = _render(source, context, blocks=True)
    try:
        blocks = orjson.loads(rendered)
    except orjson.JSONDecodeError as exc:
        raise RecordError(
            f"Slack blocks template did not render valid JSON (at character {exc.pos})"
        ) from None
    if not isinstance(blocks, list) or not all(
        isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks
    ):
        raise RecordError("Slack blocks must be a JSON list of objects that each have a 'type'")
    if len(blocks) > MAX_BLOCKS:
        raise RecordError(f"Slack allows at most {MAX_BLOCKS} blocks in a message")
    return blocks
