"""``decimal`` and ``int``: locale-explicit number parsing that never goes through float.

The decimal separator is declared per spec, never guessed: ``"3,999"`` is 3999 when the spec says
``decimal_sep: "."`` with ``","`` among the thousands separators, 3.999 when it says
``decimal_sep: ","``, and an error when ``","`` is neither.  Thousands separators must group
digits by three, so a misplaced ``"12,5"`` is rejected instead of becoming 125.  SAP's trailing
minus (``"100.00-"``) is understood.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mappings.registry import FieldContext, Params, ValueFn, transform

# characters a thousands separator may be; NBSP and NARROW NBSP come from Excel and 1C exports
_ALLOWED_THOUSANDS = frozenset({" ", "\u00a0", "\u202f", ",", ".", "'", "_"})
_DEFAULT_THOUSANDS = (" ", "\u00a0", "\u202f")
# counts ("5", "15") repeat endlessly, and so do short decimals (rates, prices: "19.00");
# amounts do not: 45k distinct in 200k benchmark rows made a 16k cache cost more than it saved
_INT_CACHE = 4096
_DECIMAL_CACHE = 4096
_DECIMAL_CACHED_LEN = 6


class NumberParams(Params):
    """Parameters of ``decimal`` and ``int``."""

    decimal_sep: Literal[".", ","] = Field(".", description="The source's decimal separator.")
    thousands_sep: tuple[str, ...] = Field(
        _DEFAULT_THOUSANDS, description="Accepted digit-group separators (groups of three)."
    )
    trailing_minus: bool = Field(True, description='Read SAP-style "100.00-" as negative.')

    @field_validator("thousands_sep", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _separators_differ(self) -> NumberParams:
        for sep in self.thousands_sep:
            if sep not in _ALLOWED_THOUSANDS:
                allowed = ", ".join(repr(s) for s in sorted(_ALLOWED_THOUSANDS))
                raise ValueError(f"thousands_sep {sep!r} is not one of {allowed}")
        if self.decimal_sep in self.thousands_sep:
            raise ValueError(f"{self.decimal_sep!r} cannot be both decimal and thousands separator")
        return self


def _number_parser(params: NumberParams) -> Callable[[str], Decimal | None]:
    """Compile the parameters into ``text -> Decimal`` (None for blank, ValueError when bad)."""
    dec = re.escape(params.decimal_sep)
    seps = "".join(re.escape(s) for s in params.thousands_sep)
    grouped = rf"\d{{1,3}}(?P<sep>[{seps}])\d{{3}}(?:(?P=sep)\d{{3}})*|" if seps else ""
    number = re.compile(
        rf"(?P<sign>[+-]?)(?:(?P<int>{grouped}\d+)(?:{dec}(?P<frac>\d+))?|{dec}(?P<only>\d+))",
        re.ASCII,
    ).fullmatch
    plain = re.compile(r"[+-]?\d+(?:\.\d+)?", re.ASCII).fullmatch if dec == r"\." else None
    trailing_minus = params.trailing_minus

    def parse(text: str) -> Decimal | None:
        s = text.strip()
        if not s:
            return None
        negative = False
        if trailing_minus and s[-1] == "-" and len(s) > 1:
            s = s[:-1].rstrip()
            negative = True
        if plain is not None and plain(s):
            # the common case (already canonical) skips the rebuild below
            out = Decimal(s)
        else:
            m = number(s)
            if m is None:
                raise ValueError("not a number in the declared format")
            digits, sep = m["int"], m["sep"]
            if digits and sep:
                digits = digits.replace(sep, "")
            frac = m["frac"] or m["only"]
            out = Decimal(f"{m['sign']}{digits or '0'}.{frac}" if frac else f"{m['sign']}{digits}")
        if negative:
            if s[0] in "+-":
                raise ValueError("two signs")
            out = -out
        return out

    return parse


def _describe(params: NumberParams) -> str:
    seps = "".join(params.thousands_sep).encode("unicode_escape").decode()
    return f"expected decimal separator {params.decimal_sep!r}, thousands {seps!r}"


@transform(
    "decimal",
    NumberParams,
    shorthand="decimal_sep",
    cache=_DECIMAL_CACHE,
    cache_max_len=_DECIMAL_CACHED_LEN,
)
def _decimal(params: NumberParams, ctx: FieldContext) -> ValueFn:
    """Text or number to Decimal with declared separators; never through float for text."""
    parse = _number_parser(params)
    expected = _describe(params)

    def to_decimal(value: Any) -> Any:
        cls = value.__class__
        if cls is str:
            try:
                return parse(value)
            except ValueError:
                raise ctx.fail("decimal", f"not a number; {expected}", value) from None
        if value is None or cls is Decimal:
            if value is not None and not value.is_finite():
                raise ctx.fail("decimal", "not a finite number", value)
            return value
        if cls is int:
            return Decimal(value)
        if cls is float:
            if not math.isfinite(value):
                raise ctx.fail("decimal", "not a finite number", value)
            # repr gives the shortest text that round-trips: 0.1 -> Decimal('0.1')
            return Decimal(repr(value))
        raise ctx.fail("decimal", f"a {cls.__name__} is not a number", value)

    return to_decimal


@transform("int", NumberParams, shorthand="decimal_sep", cache=_INT_CACHE)
def _int(params: NumberParams, ctx: FieldContext) -> ValueFn:
    """Text or number to int; separators as for ``decimal``; "12.0" is 12, "12.5" fails."""
    parse = _number_parser(params)
    expected = _describe(params)

    def to_int(value: Any) -> Any:
        cls = value.__class__
        if cls is str:
            # fast path: plain ASCII digits (int() alone would also take "1_000" and "١٢")
            if value.isdigit() and value.isascii() and len(value) < 19:
                return int(value)
            try:
                number = parse(value)
            except ValueError:
                raise ctx.fail("int", f"not a whole number; {expected}", value) from None
            if number is None:
                return None
        elif cls is int or value is None:
            return value
        elif cls is float or cls is Decimal:
            if not (math.isfinite(value) if cls is float else value.is_finite()):
                raise ctx.fail("int", "not a finite number", value)
            number = Decimal(repr(value)) if cls is float else value
        else:
            raise ctx.fail("int", f"a {cls.__name__} is not a number", value)
        if number != number.to_integral_value():
            raise ctx.fail("int", "not a whole number", value)
        return int(number)

    return to_int
