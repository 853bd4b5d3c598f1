"""Paging for list routes: ``?limit=`` (at most 500) and an opaque ``cursor``.

A cursor is the URL-safe base64 of a small JSON document naming the list and the last key of the
page before, so a client cannot mistake one list's cursor for another's; anything else is a 400.
Responses are ``{"items": [...], "next": "<cursor>" | null}``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import orjson
from fastapi import Query

from junction.api.problems import ApiProblem
from junction.api.schemas import Responses, problem

MAX_LIMIT = 500
DEFAULT_LIMIT = 100
MAX_CURSOR_LEN = 2048

LimitQuery = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page (1-{MAX_LIMIT}).")
]
CursorQuery = Annotated[
    str | None,
    Query(max_length=MAX_CURSOR_LEN, description="The `next` value of the previous page."),
]


# the responses every paged list adds to its own
PAGED: Responses = {400: problem("The cursor is not one this list gave out.")}


def encode_cursor(kind: str, key: Any) -> str | None:
    """The cursor that continues list ``kind`` after ``key`` (None: there is no next page)."""
    if key is None:
        return None
    raw = orjson.dumps({"k": kind, "a": key})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _invalid() -> ApiProblem:
    return ApiProblem(400, "Invalid cursor", "the cursor is not valid here", code="invalid_cursor")


def decode_cursor(kind: str, cursor: str | None, typ: type[int] | type[str]) -> Any:
    """The key a cursor continues after (None for the first page); 400 if it is not ours."""
    if cursor is None or cursor == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise _invalid() from None
    if not isinstance(data, dict) or data.get("k") != kind:
        raise _invalid()
    key = data.get("a")
    # bool is an int subclass: a cursor of `true` is not a key
    if type(key) is not typ:
        raise _invalid()
    return key


def page(kind: str, items: list[Any], next_key: Any) -> dict[str, Any]:
    """The list response."""
    return {"items": items, "next": encode_cursor(kind, next_key)}
