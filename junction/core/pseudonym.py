"""Keyed pseudonyms for personal data in logs and the audit log (HMAC-SHA256).

``Pseudonymizer(key).of("email", "Ann@Example.com")`` gives a short token such as
``ps_Xq3...`` (22 base64url characters, 128 bits): the same person gives the same token, so audit
entries can still be joined, but without the key nobody can test a guess (unlike a plain hash of
an email address, which a dictionary reverses).  Values are normalized per kind first (emails to
lower case, phone numbers to digits), and the kind is part of the MAC input, so an email and a
name that happen to be equal strings get different tokens.

The key comes from ``JUNCTION_PSEUDONYM_KEY`` or a 0600 key file created beside the API signing
key.  Rotating it makes new tokens unlinkable to old ones, which is the point of rotation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from junction.core.errors import ConfigError
from junction.core.keyfile import MIN_KEY_BYTES, read_or_create_key
from junction.core.pii_text import EMAIL_IN_TEXT

ENV_KEY = "JUNCTION_PSEUDONYM_KEY"
KEY_FILE = "pseudonym.key"
PREFIX = "ps_"
TOKEN_BYTES = 16  # 128 bits: 22 base64url characters

_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_PHONE_DROP = re.compile(r"[^\d+]")
_SPACES = re.compile(r"\s+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_KEY_NORMAL = re.compile(r"[^a-z0-9]+")

# field names (normalized: lower case, runs of other characters as "_") that hold personal data
PII_KEYS: dict[str, str] = {
    **dict.fromkeys(("email", "e_mail", "mail", "emails", "email_address"), "email"),
    **dict.fromkeys(
        ("phone", "phones", "mobile", "telephone", "tel", "fax", "phone_number", "mobile_phone"),
        "phone",
    ),
    **dict.fromkeys(
        (
            "name",
            "first_name",
            "last_name",
            "full_name",
            "firstname",
            "lastname",
            "given_name",
            "family_name",
            "middle_name",
            "contact_name",
            "person_name",
            "display_name",
        ),
        "name",
    ),
    **dict.fromkeys(
        ("address", "street", "street_address", "address_line1", "address_line2", "home_address"),
        "address",
    ),
    **dict.fromkeys(("ip", "ip_address", "client_ip", "remote_addr"), "ip"),
    **dict.fromkeys(("birth_date", "birthdate", "date_of_birth", "dob"), "birthdate"),
    **dict.fromkeys(("ssn", "tax_id", "inn", "national_id", "passport"), "national_id"),
}
_SUFFIXES = (("_email", "email"), ("_phone", "phone"), ("_mobile", "phone"))


def normalize(kind: str, value: str) -> str:
    """The form of ``value`` that is hashed: equal for the same person however it was typed."""
    # ASCII text is its own NFKC form (the check is a flag on the string)
    text = (value if value.isascii() else unicodedata.normalize("NFKC", value)).strip()
    if kind == "email":
        return text.lower()
    if kind == "phone":
        return _PHONE_DROP.sub("", text)
    if kind in ("name", "address"):
        return _SPACES.sub(" ", text.casefold())
    return text


def pii_kind(key: str) -> str | None:
    """The kind of personal data a field named ``key`` holds, or None."""
    k = _KEY_NORMAL.sub("_", _CAMEL.sub("_", key).lower()).strip("_")
    kind = PII_KEYS.get(k)
    if kind is None:
        kind = next((kd for suffix, kd in _SUFFIXES if k.endswith(suffix)), None)
    return kind


class Pseudonymizer:
    """Turns personal data into stable keyed tokens."""

    def __init__(self, key: bytes) -> None:
        """``key``: at least 32 bytes of secret."""
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"the pseudonym key must be at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def __repr__(self) -> str:
        return "Pseudonymizer(<key>)"

    @classmethod
    def load(cls, state_dir: Path) -> Pseudonymizer:
        """The key from ``JUNCTION_PSEUDONYM_KEY``, else ``state_dir/pseudonym.key`` (made once)."""
        env = os.environ.get(ENV_KEY)
        if env:
            return cls(env.encode("utf-8"))
        return cls(read_or_create_key(state_dir / KEY_FILE))

    def of(self, kind: str, value: object) -> str:
        """The pseudonym of ``value`` as personal data of ``kind`` (email, phone, name, ...)."""
        if not _KIND.match(kind):
            raise ValueError("kind must be a short lower-case identifier")
        text = normalize(kind, value if isinstance(value, str) else str(value))
        mac = hmac.new(self._key, f"{kind}\x1f{text}".encode(), hashlib.sha256).digest()
        return PREFIX + base64.urlsafe_b64encode(mac[:TOKEN_BYTES]).decode("ascii").rstrip("=")

    def scrub(self, data: Any) -> Any:
        """A copy of ``data`` with personal data replaced by pseudonyms (see ``scrub``)."""
        return scrub(data, self.of)


def redacted(kind: str, _value: object) -> str:
    """A replacement that keeps only the kind (when no pseudonym key is at hand)."""
    return f"[{kind}]"


def scrub(data: Any, replace: Callable[[str, object], str] = redacted) -> Any:
    """A copy of ``data`` with personal data replaced by ``replace(kind, value)``.

    Values under known personal-data keys (``email``, ``phone``, ``name``, ``*_email``, ...)
    are replaced, recursively through dicts and lists; any string that looks like an email
    address is replaced wherever it appears, also inside free text.
    """
    return _scrub(data, None, replace)


def _scrub(data: Any, kind: str | None, replace: Callable[[str, object], str]) -> Any:
    if isinstance(data, Mapping):
        return {str(k): _scrub(v, pii_kind(str(k)) or kind, replace) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_scrub(v, kind, replace) for v in data]
    if data is None or isinstance(data, bool):
        return data
    if kind is not None:
        return replace(kind, data)
    if isinstance(data, str) and "@" in data:
        return EMAIL_IN_TEXT.sub(lambda m: replace("email", m.group(0)), data)
    return data
