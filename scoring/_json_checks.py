"""Checks of untrusted plain-JSON model dicts, raising a ModelLoadError that names the key.

A compiled model's dict comes from disk, so each value is checked before use: anything off
raises :class:`~junction.core.errors.ModelLoadError` with the model's message and a context of
``{"key": ..., "problem": ...}``, never a ``TypeError`` or ``IndexError`` from deep inside a
scorer.  One :class:`Checks` per format carries its message (and a key prefix, for a part
nested in another dict).
"""

from __future__ import annotations

import math
import struct
from typing import Any

from junction.core.errors import ModelLoadError

F32 = struct.Struct("<f")


def f32(x: float) -> float:
    """``x`` rounded to float32 (to infinity beyond float32's range), as a Python float."""
    try:
        return float(F32.unpack(F32.pack(x))[0])
    except OverflowError:
        return math.copysign(math.inf, x)


class Checks:
    """Type checks of one dict format, all raising the format's :class:`ModelLoadError`.

    Args:
        message: the user message of every error (``the compiled tree model is malformed``).
        prefix: put before every key in the error's context (``calibration.``).
    """

    def __init__(self, message: str, prefix: str = "") -> None:
        self.message, self.prefix = message, prefix

    def bad(self, key: str, problem: str) -> ModelLoadError:
        """The error for a malformed ``key``."""
        return ModelLoadError(
            self.message, context={"key": f"{self.prefix}{key}", "problem": problem}
        )

    def number(
        self, value: Any, key: str, *, allow_inf: bool = False, float32: bool = False
    ) -> float:
        """A finite number (or ``"inf"`` if ``allow_inf``; a float32 one if ``float32``)."""
        if allow_inf and value == "inf":
            return math.inf
        # bool is an int subclass; true/false where a number belongs is a broken file
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.bad(key, "not a number")
        x = float(value)
        if not math.isfinite(x):
            raise self.bad(key, "not finite")
        if float32 and f32(x) != x:
            raise self.bad(key, "not a float32 number")
        return x

    def integer(self, value: Any, key: str, lo: int, hi: int) -> int:
        """An integer (not a bool) in ``[lo, hi]``."""
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.bad(key, f"not an integer in [{lo}, {hi}]")
        return value

    def boolean(self, value: Any, key: str) -> bool:
        """``true`` or ``false``."""
        if not isinstance(value, bool):
            raise self.bad(key, "not true or false")
        return value

    def array(self, value: Any, key: str, length: int | None = None) -> list[Any]:
        """A list, of ``length`` entries if given."""
        if not isinstance(value, list):
            raise self.bad(key, "not a list")
        if length is not None and len(value) != length:
            raise self.bad(key, f"expected {length} entries, found {len(value)}")
        return value
