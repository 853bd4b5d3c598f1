"""``country``: names and codes to ISO 3166-1 alpha-2, from pycountry's data.

The index is built once (about 2,000 keys, a few milliseconds) from pycountry's alpha-2,
alpha-3, official and common names, optionally their translations (pycountry ships the
iso-codes gettext catalogues), plus a short list of everyday names the standard does not use.
Lookups are a dict hit on a normalized key (case, accents, dots and spacing ignored).
"""

from __future__ import annotations

import functools
import gettext
import unicodedata
from typing import Any

import pycountry
from pydantic import Field, field_validator

from mappings.registry import FieldContext, Params, ValueFn, transform

# everyday names found in CRM exports that ISO 3166 spells differently; keys are normalized
_ALIASES = {
    "usa": "US",
    "united states of america": "US",
    "uk": "GB",
    "great britain": "GB",
    "britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "russia": "RU",
    "россия": "RU",
    "рф": "RU",
    "turkey": "TR",
    "holland": "NL",
    "the netherlands": "NL",
    "ivory coast": "CI",
    "macedonia": "MK",
    "swaziland": "SZ",
    "burma": "MM",
    "brunei": "BN",
    "vatican": "VA",
    "vatican city": "VA",
    "dr congo": "CD",
    "drc": "CD",
    "uae": "AE",
    "cape verde": "CV",
    "east timor": "TL",
    "macau": "MO",
    "south korea": "KR",
    "north korea": "KP",
}


def normalize_key(text: str) -> str:
    """Fold a country name for lookup: accents, case, dots, curly quotes, spacing."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().replace(".", "").replace("\u2019", "'").split())


@functools.cache
def country_index(languages: tuple[str, ...] = ()) -> dict[str, str]:
    """Return ``{normalized name or code: alpha-2}`` for the given translation languages.

    Raises:
        ValueError: A language has no pycountry translation catalogue.
    """
    index: dict[str, str] = {}
    translators = []
    for lang in languages:
        try:
            translators.append(
                gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=[lang])
            )
        except OSError:
            raise ValueError(f"no country names for language {lang!r}") from None
    names: list[tuple[str, str]] = []
    for country in pycountry.countries:
        code = country.alpha_2
        index.setdefault(normalize_key(code), code)
        index.setdefault(normalize_key(country.alpha_3), code)
        for attr in ("name", "official_name", "common_name"):
            value = getattr(country, attr, None)
            if value:
                names.append((value, code))
                for tr in translators:
                    names.append((tr.gettext(value), code))
    for value, code in names:
        index.setdefault(normalize_key(value), code)
    # "Bolivia, Plurinational State of" is also known as "Bolivia"; keep such short forms
    # only when no other name has them ("Korea, ..." and "Virgin Islands, ..." are ambiguous)
    short: dict[str, set[str]] = {}
    for value, code in names:
        if "," in value:
            short.setdefault(normalize_key(value.split(",")[0]), set()).add(code)
    for key, codes in short.items():
        if len(codes) == 1:
            index.setdefault(key, codes.pop())
    for alias, code in _ALIASES.items():
        index.setdefault(alias, code)
    return index


def resolve_country(value: str, languages: tuple[str, ...] = ()) -> str | None:
    """Return the alpha-2 code for a country name or code, or None when unknown."""
    return country_index(languages).get(normalize_key(value))


class CountryParams(Params):
    """Parameters of ``country``."""

    languages: tuple[str, ...] = Field((), description="Also accept names in these languages.")
    aliases: dict[str, str] = Field({}, description="Extra names -> alpha-2 codes.")
    fuzzy: bool = Field(False, description="Try pycountry's fuzzy search on unknown names.")

    @field_validator("languages")
    @classmethod
    def _catalogues_exist(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        country_index(v)
        return v

    @field_validator("aliases")
    @classmethod
    def _codes_exist(cls, v: dict[str, str]) -> dict[str, str]:
        for name, code in v.items():
            if pycountry.countries.get(alpha_2=str(code).upper()) is None:
                raise ValueError(f"alias {name!r} maps to {code!r}, not an ISO alpha-2 code")
        return {normalize_key(k): c.upper() for k, c in v.items()}


@transform("country", CountryParams, cache=4096)
def _country(params: CountryParams, ctx: FieldContext) -> ValueFn:
    """Country name or code ("Germany", "DE", "DEU", "USA") to upper-case ISO alpha-2."""
    index = {**country_index(params.languages), **params.aliases}
    fuzzy = params.fuzzy

    def lookup(value: Any) -> Any:
        if value is None:
            return None
        if value.__class__ is not str:
            raise ctx.fail("country", f"a {type(value).__name__} is not a country", value)
        key = normalize_key(value)
        if not key:
            return None
        code = index.get(key)
        if code is None and fuzzy:
            code = _fuzzy(value)
        if code is None:
            raise ctx.fail("country", "unknown country name or code", value)
        return code

    # a country column has a few hundred distinct spellings at most (hence cache=4096)
    return lookup


def _fuzzy(value: str) -> str | None:
    # search_fuzzy scans every name (milliseconds); the caller's cache makes it once per spelling
    try:
        found = pycountry.countries.search_fuzzy(value)
    except LookupError:
        return None
    if len(found) != 1:
        return None
    return str(found[0].alpha_2)
