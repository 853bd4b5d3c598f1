"""``phone_e164`` (phonenumbers) and ``email`` (email-validator, no DNS).

Both are personal data in every canonical model, so their failure reasons are fixed phrases and
never quote the library's message (which may echo parts of the value).

Costs: phonenumbers takes ~20-50 us per new number (parse + validity); email-validator ~19 us
per address.  Both results are cached per distinct input.  A phone number written only with
digits, a leading ``+`` and the punctuation phonenumbers strips anyway (spaces, ``-``, ``.``,
parentheses) is also cached by its *shape* (``+`` and digits, with the region for a national
number): phonenumbers' answer depends on nothing else for such text, so "+1 (312) 555-0188" costs
nothing once "+13125550188" was seen (a test compares the two paths on generated numbers).

For email, the common shape (an ASCII dot-atom local part, as email-validator's own
``DOT_ATOM_TEXT`` regex defines it) skips the full call: the library validates each distinct
*domain* once and the address is rebuilt from the two checked halves, which is what the library
itself returns for such addresses (a test compares the two paths on a corpus).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, DOT_ATOM_TEXT
from phonenumbers import NumberParseException, PhoneNumberFormat
from pydantic import Field, field_validator

from junction.core.errors import ConfigError
from mappings.countries import resolve_country
from mappings.registry import (
    FieldContext,
    Params,
    RecordTransform,
    ValueFn,
    bounded_cache,
    transform,
)
from mappings.selectors import compile_selector

_CACHE_SIZE = 16384
_E164 = PhoneNumberFormat.E164
_REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)
# text whose phonenumbers answer depends only on its shape: the + and the digits (7 to 17 of them:
# always "viable" to the library, and no extension can be written with these characters)
_SHAPED = re.compile(r"\+?[0-9 ().\-]+")
_NOT_DIGITS = str.maketrans("", "", " ().-")
_SHAPE_DIGITS = range(7, 18)
_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country calling code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}
# RFC 5321 limits; longer addresses take the library's full path, which decides
_MAX_FAST_ADDRESS = 254
_MAX_LOCAL = 64


class PhoneParams(Params):
    """Parameters of ``phone_e164``."""

    default_region: str | None = Field(None, description="Region (alpha-2) of national numbers.")
    region_from: str | None = Field(
        None, description="Selector of a source field holding the country (name or code)."
    )
    check: Literal["valid", "possible"] = Field(
        "valid", description="valid: a number in an assigned range; possible: a plausible length."
    )

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, v: str | None) -> str | None:
        if v is not None and v.upper() not in _REGIONS:
            raise ValueError(f"{v!r} is not a region phonenumbers knows")
        return None if v is None else v.upper()

    @field_validator("region_from")
    @classmethod
    def _valid_selector(cls, v: str | None) -> str | None:
        if v is not None:
            compile_selector(v)
        return v


@transform("phone_e164", PhoneParams, shorthand="default_region")
def _phone(params: PhoneParams, ctx: FieldContext) -> ValueFn | RecordTransform:
    """Phone number to E.164 ("+4930123456"); national numbers need a region; invalid fails."""
    default = params.default_region
    is_ok = (
        phonenumbers.is_valid_number if params.check == "valid" else phonenumbers.is_possible_number
    )
    caches: dict[str | None, dict[str, str]] = {}
    shapes: dict[str, str] = {}  # "+digits", or "REGION|digits" for a national number

    def normalize(value: Any, region: str | None) -> Any:
        if value.__class__ is not str:
            if value is None:
                return None
            if value.__class__ is not int:
                raise ctx.fail(
                    "phone_e164", f"a {type(value).__name__} is not a phone number", value
                )
            value = str(value)
        cache = caches.get(region)
        if cache is None:
            cache = caches[region] = {}
        hit = cache.get(value)
        if hit is not None:
            return hit
        text = value.strip()
        if not text:
            return None
        shape = None
        if _SHAPED.fullmatch(text) is not None:
            digits = text.translate(_NOT_DIGITS)
            if len(digits) - (digits[0] == "+") in _SHAPE_DIGITS:
                shape = digits if digits[0] == "+" else f"{region}|{digits}"
                hit = shapes.get(shape)
                if hit is not None:
                    _remember(cache, value, hit)
                    return hit
        try:
            number = phonenumbers.parse(text, region)
        except NumberParseException as exc:
            reason = _PARSE_REASONS.get(exc.error_type, "not a phone number")
            no_code = exc.error_type == NumberParseException.INVALID_COUNTRY_CODE
            if no_code and region is None and not text.startswith("+"):
                reason = "no country code and no region for a national number"
            raise ctx.fail("phone_e164", reason, text) from None
        if not is_ok(number):
            where = f" for region {region}" if region and not text.startswith("+") else ""
            raise ctx.fail("phone_e164", f"not a {params.check} phone number{where}", text)
        out: str = phonenumbers.format_number(number, _E164)
        _remember(cache, value, out)
        if shape is not None:
            _remember(shapes, shape, out)
        return out

    if params.region_from is None:
        return lambda value: normalize(value, default)
    if ctx.selector is None:
        raise ConfigError(f"{ctx.field}: phone_e164 region_from needs access to the record")
    region_of = _region_reader(ctx.selector(params.region_from), default)

    def phone_in_record(value: Any, record: Mapping[str, Any]) -> Any:
        if value is None:
            return None
        region = region_of(record)
        # a repeated number (the common case) is answered here, one call less than normalize
        cache = caches.get(region)
        if cache is not None and value.__class__ is str:
            hit = cache.get(value)
            if hit is not None:
                return hit
        return normalize(value, region)

    return RecordTransform(phone_in_record)


def _remember(cache: dict[str, str], key: str, value: str) -> None:
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = value


def _region_reader(
    read: Callable[[Mapping[str, Any]], Any], default: str | None
) -> Callable[[Mapping[str, Any]], str | None]:
    """Compile ``record -> region``: the country field resolved like ``country`` does."""
    regions: dict[str, str | None] = {}

    def region_of(record: Mapping[str, Any]) -> str | None:
        raw = read(record)
        if raw.__class__ is not str:
            return default
        if raw in regions:
            return regions[raw]
        code = resolve_country(raw)
        region = code if code in _REGIONS else default
        if len(regions) >= 4096:
            regions.clear()
        regions[raw] = region
        return region

    return region_of


class EmailParams(Params):
    """Parameters of ``email``."""

    allow_smtputf8: bool = Field(True, description="Accept non-ASCII local parts.")


@transform("email", EmailParams)
def _email(params: EmailParams, ctx: FieldContext) -> ValueFn:
    """Validate an email address (syntax only, no DNS) and return email-validator's normal form."""
    smtputf8 = params.allow_smtputf8
    domains: dict[str, str | None] = {}
    dot_atom = DOT_ATOM_TEXT.match
    special_locals = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
    # longer local parts cannot be one of them: most addresses skip the lower() and lookup
    special_len = max(map(len, special_locals))

    def library(address: str) -> str:
        try:
            out: str = validate_email(
                address, check_deliverability=False, allow_smtputf8=smtputf8
            ).normalized
        except EmailNotValidError:
            raise ctx.fail("email", "not a valid email address", address) from None
        return out

    def domain_of(domain: str) -> str | None:
        # the library's verdict on a domain does not depend on the local part
        if domain not in domains:
            try:
                ok = validate_email("a@" + domain, check_deliverability=False).domain
            except EmailNotValidError:
                ok = None
            if len(domains) >= _CACHE_SIZE:
                domains.clear()
            domains[domain] = ok if ok is not None and ok.isascii() else None
        return domains[domain]

    def check(value: Any) -> Any:
        if value.__class__ is not str:
            if value is None:
                return None
            raise ctx.fail("email", f"a {type(value).__name__} is not an email address", value)
        local, at, domain = value.rpartition("@")
        if (
            at
            and len(value) <= _MAX_FAST_ADDRESS
            and len(local) <= _MAX_LOCAL
            and dot_atom(local)
            and (len(local) > special_len or local.lower() not in special_locals)
        ):
            norm_domain = domains.get(domain) or domain_of(domain)
            if norm_domain is not None:
                # addresses are mostly unique: not cached; the input is kept when it is already
                # the normal form (the domain was lower-cased before), else rebuilt
                return value if norm_domain == domain else f"{local}@{norm_domain}"
        if not value.strip():
            return None
        return unusual(value)

    unusual = bounded_cache(library, _CACHE_SIZE)
    return check
