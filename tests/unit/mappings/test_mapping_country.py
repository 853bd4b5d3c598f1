"""country: ISO codes, English names, common names, translations, aliases, fuzzy search."""

from __future__ import annotations

import pytest

from junction.core.errors import MappingError
from mappings.countries import resolve_country
from mappings.transforms import FieldContext, compile_transform


def country(params=None):
    return compile_transform("country", params, FieldContext("country"))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("DE", "DE"),
        ("de", "DE"),
        ("DEU", "DE"),
        ("Germany", "DE"),
        (" germany ", "DE"),
        ("United States", "US"),
        ("United States of America", "US"),
        ("USA", "US"),
        ("U.S.A.", "US"),
        ("UK", "GB"),
        ("United Kingdom", "GB"),
        ("Russia", "RU"),
        ("Russian Federation", "RU"),
        ("South Korea", "KR"),
        ("Korea, Republic of", "KR"),
        ("Bolivia", "BO"),
        ("Czech Republic", "CZ"),
        ("Czechia", "CZ"),
        ("Türkiye", "TR"),
        ("Turkiye", "TR"),
        ("Turkey", "TR"),
        ("Côte d\u2019Ivoire", "CI"),  # curly apostrophe, as typed by office software
        ("Netherlands", "NL"),
        ("Vietnam", "VN"),
        ("Congo", "CG"),
        ("", None),
        (None, None),
    ],
    ids=lambda v: repr(v)[:24],
)
def test_country_good(raw, expected):
    assert country()(raw) == expected


@pytest.mark.parametrize("raw", ["Atlantis", "Korea", "Virgin Islands", "XX", 49], ids=repr)
def test_country_unknown_or_ambiguous_fails(raw):
    with pytest.raises(MappingError) as info:
        country()(raw)
    assert info.value.field == "country"
    assert repr(raw) in info.value.user_message  # a country is not personal data


def test_country_translations_and_aliases():
    ru = country({"languages": ["ru"], "aliases": {"Неверленд": "nl"}})
    assert ru("Германия") == "DE"
    assert ru("Российская Федерация") == "RU"
    assert ru("неверленд") == "NL"
    assert ru("Germany") == "DE"
    # translations are opt-in
    with pytest.raises(MappingError):
        country()("Германия")


def test_country_fuzzy_only_when_asked_and_unique():
    fuzzy = country({"fuzzy": True})
    assert fuzzy("Republic of Germany") == "DE"
    assert fuzzy("Tasmania") == "AU"  # pycountry also matches subdivision names
    with pytest.raises(MappingError):
        fuzzy("Korea")  # two candidates: refused rather than guessed
    with pytest.raises(MappingError):
        country()("Republic of Germany")


def test_resolve_country_helper():
    assert resolve_country("Deutschland", ("de",)) == "DE"
    assert resolve_country("Narnia") is None
