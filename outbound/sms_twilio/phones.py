"""Phone numbers: E.164 normalization with phonenumbers, and a number's own time zone.

Numbers are personal data: nothing here logs them or puts them in an error message.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import timezone as number_zones

MAX_RAW_CHARS = 64  # longer input is not a phone number, whatever it is


def to_e164(raw: object, default_region: str | None = None) -> str | None:
    """The E.164 form of ``raw`` (``+`` and digits), or None when it is not a valid number.

    Args:
        raw: The number as found (``+44 20 7946 0958``, ``020 7946 0958``, ...).
        default_region: ISO 3166 region used for numbers written without a country code.

    Returns:
        E.164, e.g. ``+442079460958``; None for anything phonenumbers does not call valid.
    """
    if not isinstance(raw, str) or not raw.strip() or len(raw) > MAX_RAW_CHARS:
        return None
    try:
        parsed = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def is_region(code: str) -> bool:
    """Whether ``code`` is a region phonenumbers knows (``GB``, ``US``, ``DE``, ...)."""
    return code in phonenumbers.SUPPORTED_REGIONS


def zone_of_number(e164: str) -> str | None:
    """The IANA zone of a number when its numbering plan names exactly one, else None."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    zones = [z for z in number_zones.time_zones_for_number(parsed) if z != "Etc/Unknown"]
    return zones[0] if len(zones) == 1 else None
