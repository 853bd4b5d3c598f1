"""The named transforms a mapping spec can chain, each compiled once into a fast closure.

Text and structure transforms live here; numbers, dates, contacts and countries live in their
own modules (imported below so that they register).  Import this module to get the full set::

    from mappings.transforms import FieldContext, compile_transform

    fn = compile_transform("decimal", {"decimal_sep": ","}, FieldContext("annual_revenue"))
    fn("1 250 000,50")  # Decimal('1250000.50')
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

from pydantic import Field, field_validator

from mappings import contact, countries, dates, numbers
from mappings.registry import (
    TRANSFORMS,
    FieldContext,
    Params,
    RecordTransform,
    TransformDef,
    ValueFn,
    compile_transform,
    transform,
)

__all__ = [
    "TRANSFORMS",
    "FieldContext",
    "RecordTransform",
    "TransformDef",
    "compile_transform",
    "transform_names",
]

# the per-domain modules register on import; naming them keeps the import from looking unused
_REGISTERING = (contact, countries, dates, numbers)

_SLUG_JUNK = re.compile(r"[\W_]+")
_UNSET: Any = object()


def transform_names() -> list[str]:
    """Return the names of all registered transforms, sorted."""
    return sorted(TRANSFORMS)


def _on_str(method: Callable[[str], Any]) -> ValueFn:
    # non-strings (numbers from JSON or XML attributes) pass through untouched
    def apply(value: Any) -> Any:
        if value.__class__ is str:
            return method(value)
        return value

    return apply


@transform("trim", inline=True)
def _trim(params: Params, ctx: FieldContext) -> ValueFn:
    """Strip surrounding whitespace (NBSP included); a blank string becomes missing."""

    def trim(value: Any) -> Any:
        if value.__class__ is str:
            return value.strip() or None
        return value

    return trim


@transform("lower", inline=True)
def _lower(params: Params, ctx: FieldContext) -> ValueFn:
    """Lower-case a string."""
    return _on_str(str.lower)


@transform("upper", inline=True)
def _upper(params: Params, ctx: FieldContext) -> ValueFn:
    """Upper-case a string."""
    return _on_str(str.upper)


@transform("title", inline=True)
def _title(params: Params, ctx: FieldContext) -> ValueFn:
    """Title-case a string ("jane DOE" -> "Jane Doe")."""
    return _on_str(str.title)


@transform("string")
def _string(params: Params, ctx: FieldContext) -> ValueFn:
    """Turn numbers (ids sent as JSON numbers) into strings; strings pass unchanged."""

    def string(value: Any) -> Any:
        if value is None or value.__class__ is str:
            return value
        if isinstance(value, bool | dict | list):
            raise ctx.fail("string", f"cannot turn a {type(value).__name__} into text", value)
        return str(value)

    return string


class SlugParams(Params):
    """Parameters of ``slug``."""

    sep: str = Field("_", max_length=1, description="Separator replacing runs of non-letters.")


@transform("slug", SlugParams, shorthand="sep", cache=4096)
def _slug(params: SlugParams, ctx: FieldContext) -> ValueFn:
    """Free text to a lower-case slug: "Web Form" -> "web_form" (letters of any script kept)."""
    sep = params.sep

    def slug(value: Any) -> Any:
        if value.__class__ is not str:
            return value
        text = unicodedata.normalize("NFKC", value).casefold()
        return _SLUG_JUNK.sub(sep, text).strip(sep) or None

    return slug


class DefaultParams(Params):
    """Parameters of ``default``."""

    value: Any = Field(..., description="Value used when the field is missing.")


@transform("default", DefaultParams, shorthand="value", accepts_none=True)
def _default(params: DefaultParams, ctx: FieldContext) -> ValueFn:
    """Replace a missing value with a constant."""
    fallback = params.value

    def default(value: Any) -> Any:
        return fallback if value is None else value

    return default


class NullIfParams(Params):
    """Parameters of ``null_if``."""

    values: tuple[Any, ...] = Field(..., description="Placeholders that mean 'no value'.")
    ignore_case: bool = Field(True, description="Compare strings case-insensitively.")

    @field_validator("values", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


@transform("null_if", NullIfParams, shorthand="values")
def _null_if(params: NullIfParams, ctx: FieldContext) -> ValueFn:
    """Turn placeholders ("Select", "unknown", "#N/A") into missing."""
    fold = params.ignore_case
    nulls = frozenset(v.casefold() if fold and isinstance(v, str) else v for v in params.values)

    def null_if(value: Any) -> Any:
        if value.__class__ is str:
            return None if (value.casefold() if fold else value) in nulls else value
        if value is None or isinstance(value, dict | list):
            return value
        return None if value in nulls else value

    return null_if


class ConcatParams(Params):
    """Parameters of ``concat``."""

    sep: str = Field(" ", description="Separator between the non-empty parts.")


@transform("concat", ConcatParams, shorthand="sep", takes_list=True)
def _concat(params: ConcatParams, ctx: FieldContext) -> ValueFn:
    """Join the values of a list ``from`` with a separator, skipping missing ones."""
    sep = params.sep

    def concat(values: Any) -> Any:
        if values is None:
            return None
        parts = [v if v.__class__ is str else str(v) for v in values if v is not None and v != ""]
        return sep.join(parts) if parts else None

    return concat


@transform("coalesce", takes_list=True)
def _coalesce(params: Params, ctx: FieldContext) -> ValueFn:
    """The first present value of a list ``from``."""

    def coalesce(values: Any) -> Any:
        if values is None:
            return None
        for v in values:
            if v is not None and v != "":
                return v
        return None

    return coalesce


class LookupParams(Params):
    """Parameters of ``lookup``."""

    table: dict[str, Any] = Field(..., description="Source value -> canonical value.")
    default: Any = Field(None, description="Value for keys not in the table (if given).")
    strict: bool = Field(False, description="Reject values not in the table.")
    ignore_case: bool = Field(False, description="Match keys case-insensitively.")

    @field_validator("table", mode="before")
    @classmethod
    def _keys_as_text(cls, v: Any) -> Any:
        # YAML reads `1:` or `true:` as non-string keys; source values arrive as text
        if isinstance(v, dict):
            return {(k if isinstance(k, str) else str(k).lower()): val for k, val in v.items()}
        return v


@transform("lookup", LookupParams, cache=4096)
def _lookup(params: LookupParams, ctx: FieldContext) -> ValueFn:
    """Map values through a table; unknown values keep, default, or fail (strict)."""
    fold = params.ignore_case
    table = {k.casefold(): v for k, v in params.table.items()} if fold else dict(params.table)
    strict = params.strict
    miss = _UNSET
    # an explicit `default: null` counts as given, hence fields_set rather than a None test
    default = params.default if "default" in params.model_fields_set else miss

    def lookup(value: Any) -> Any:
        if value is None:
            return None
        key = value if value.__class__ is str else str(value)
        hit = table.get(key.casefold() if fold else key, miss)
        if hit is not miss:
            return hit
        if strict:
            raise ctx.fail("lookup", "not in the lookup table", value)
        return value if default is miss else default

    return lookup


_TRUE = ("true", "t", "yes", "y", "1", "on", "да", "д", "истина")
_FALSE = ("false", "f", "no", "n", "0", "off", "нет", "н", "ложь")


class BoolParams(Params):
    """Parameters of ``bool``."""

    true_values: tuple[str, ...] = Field(_TRUE, description="Text read as true (any case).")
    false_values: tuple[str, ...] = Field(_FALSE, description="Text read as false (any case).")


@transform("bool", BoolParams, cache=1024)
def _bool(params: BoolParams, ctx: FieldContext) -> ValueFn:
    """yes/no/true/false/1/0/да/нет (any case) to a boolean; anything else fails."""
    table = {s.casefold(): True for s in params.true_values}
    table.update({s.casefold(): False for s in params.false_values})

    def to_bool(value: Any) -> Any:
        if value is None or value is True or value is False:
            return value
        if value.__class__ is str:
            text = value.strip()
            if not text:
                return None
            hit = table.get(text.casefold())
            if hit is not None:
                return hit
        elif value.__class__ is int and value in (0, 1):
            return value == 1
        raise ctx.fail("bool", "not a yes/no value", value)

    return to_bool
