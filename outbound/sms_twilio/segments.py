"""How many SMS segments a message body takes, and in which encoding (GSM-7 or UCS-2).

A body made only of GSM 03.38 characters goes as GSM-7: 160 septets in one SMS, 153 per segment
once it is split (the user data header takes 7).  Characters of the extension table (``€ ^ { } [
] ~ \\ |`` and form feed) need an escape septet, so they count 2 and are never split from their
escape.  Any other character switches the whole body to UCS-2: 70 UTF-16 code units in one SMS,
67 per segment when split; characters outside the Basic Multilingual Plane (most emoji) are a
surrogate pair, count 2, and are never split either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

# GSM 03.38 basic character set (the escape code 0x1B itself is not a character of a message)
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# the extension table: each needs the escape septet first, so it costs 2
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

SINGLE = {"GSM-7": 160, "UCS-2": 70}
PER_SEGMENT = {"GSM-7": 153, "UCS-2": 67}


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """A body's encoding and size.

    Attributes:
        encoding: ``GSM-7`` or ``UCS-2``.
        characters: Unicode code points in the body.
        units: septets (GSM-7) or UTF-16 code units (UCS-2) the body takes.
        segments: SMS segments the body is sent in (0 for an empty body).
    """

    encoding: Encoding
    characters: int
    units: int
    segments: int

    def as_detail(self) -> dict[str, object]:
        """The figures for a Receipt's detail."""
        return {
            "encoding": self.encoding,
            "characters": self.characters,
            "units": self.units,
            "segments": self.segments,
        }


def encoding_of(body: str) -> Encoding:
    """``GSM-7`` when every character is in the GSM 03.38 tables, else ``UCS-2``."""
    for ch in body:
        if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION:
            return "UCS-2"
    return "GSM-7"


def _unit_costs(body: str, encoding: Encoding) -> list[int]:
    if encoding == "GSM-7":
        return [2 if ch in GSM7_EXTENSION else 1 for ch in body]
    # UTF-16: a code point above the BMP is a surrogate pair
    return [2 if ord(ch) > 0xFFFF else 1 for ch in body]


def _pack(costs: list[int], size: int) -> int:
    # fill segments in order; a 2-unit character that does not fit starts the next segment
    segments, used = 1, 0
    for cost in costs:
        if used + cost > size:
            segments += 1
            used = 0
        used += cost
    return segments


def count_segments(body: str) -> SegmentInfo:
    """Count ``body``'s encoding, characters, units and segments.

    Args:
        body: The message text, as it will be sent.

    Returns:
        The figures; a body that fits in one SMS (160 septets or 70 code units) is one segment.
    """
    encoding = encoding_of(body)
    costs = _unit_costs(body, encoding)
    units = sum(costs)
    if units == 0:
        segments = 0
    elif units <= SINGLE[encoding]:
        segments = 1
    else:
        segments = _pack(costs, PER_SEGMENT[encoding])
    return SegmentInfo(encoding, len(body), units, segments)
