"""phone_e164 and email: library-backed normalization, regions from another field, caches."""

from __future__ import annotations

import random

import pytest
from email_validator import EmailNotValidError, validate_email

from junction.core.errors import ConfigError, MappingError
from mappings.registry import RecordTransform
from mappings.selectors import compile_selector
from mappings.transforms import FieldContext, compile_transform

CTX = FieldContext("phone", pii=True, selector=lambda expr: compile_selector(expr).read)


def phone(params=None):
    return compile_transform("phone_e164", params, CTX)


@pytest.mark.parametrize(
    ("params", "raw", "expected"),
    [
        (None, "+49 30 1234567", "+49301234567"),
        (None, "+1 (415) 555-0132", "+14155550132"),
        ("US", "(415) 555-0132", "+14155550132"),
        ("RU", "8 916 123-45-67", "+79161234567"),
        ("RU", "+7 (495) 123-45-67", "+74951234567"),
        ("DE", "030 1234567", "+49301234567"),
        ("GB", "020 7946 0958", "+442079460958"),
        ("US", 4155550132, "+14155550132"),
        ("DE", "+44 20 7946 0958", "+442079460958"),  # the + wins over the region
        ({"default_region": "US", "check": "possible"}, "555-0100", "+15550100"),
        (None, "  ", None),
        (None, None, None),
    ],
    ids=lambda v: repr(v)[:24],
)
def test_phone_good(params, raw, expected):
    assert phone(params)(raw) == expected


@pytest.mark.parametrize(
    ("params", "raw", "reason"),
    [
        ("US", "555-0100", "not a valid phone number for region US"),
        ("DE", "12345", "not a valid phone number"),
        (None, "(415) 555-0132", "no country code and no region"),
        (None, "+999 1234567", "unknown country calling code"),
        ("US", "call me", "not a phone number"),
        (None, ["+4930123456"], "is not a phone number"),
    ],
    ids=lambda v: repr(v)[:24],
)
def test_phone_bad(params, raw, reason):
    with pytest.raises(MappingError) as info:
        phone(params)(raw)
    assert info.value.field == "phone"
    assert reason in info.value.user_message


def test_phone_region_from_reads_the_country_column_by_name_or_code():
    built = phone({"region_from": "country", "default_region": "US"})
    assert isinstance(built, RecordTransform)
    norm = built.fn
    assert norm("030 1234567", {"country": "Germany"}) == "+49301234567"
    assert norm("030 1234567", {"country": "DEU"}) == "+49301234567"
    assert norm("8 916 123-45-67", {"country": "Russia"}) == "+79161234567"
    # unknown or missing country: the default region
    assert norm("(415) 555-0132", {"country": "Atlantis"}) == "+14155550132"
    assert norm("(415) 555-0132", {}) == "+14155550132"
    assert norm(None, {"country": "DE"}) is None
    # the cache is per region: the same text in two regions gives two numbers
    assert norm("0301234567", {"country": "DE"}) == "+49301234567"
    with pytest.raises(MappingError):
        norm("0301234567", {"country": "US"})


def test_phone_region_from_needs_record_access():
    with pytest.raises(ConfigError, match="region_from needs access"):
        compile_transform("phone_e164", {"region_from": "country"}, FieldContext("phone"))


def email(params=None):
    return compile_transform("email", params, FieldContext("email", pii=True))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("jane.doe@acme-corp.com", "jane.doe@acme-corp.com"),
        ("Jane.Doe@Acme-Corp.COM", "Jane.Doe@acme-corp.com"),  # the library keeps local case
        ("Postmaster@Acme-Corp.com", "postmaster@acme-corp.com"),  # RFC 2142 names fold
        ("jane@münchen.de", "jane@münchen.de"),
        ("jane@xn--mnchen-3ya.de", "jane@münchen.de"),
        ("иван@пример.рф", "иван@пример.рф"),
        ("a+tag@x.io", "a+tag@x.io"),
        ("   ", None),
        (None, None),
    ],
    ids=lambda v: repr(v)[:24],
)
def test_email_good(raw, expected):
    assert email()(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "not-an-email",
        "jane@",
        "@acme.com",
        "jane..doe@acme.com",
        "jane@acme",
        "jane@localhost",
        "jane@acme.test",
        "Jane <jane@acme.com>",
        "jane doe@acme.com",
        "jane@acme_corp.com",
        '"jane doe"@acme.com',
        "a" * 250 + "@acme.com",  # over the 254-character limit
        42,
    ],
    ids=lambda v: repr(v)[:24],
)
def test_email_bad(raw):
    with pytest.raises(MappingError) as info:
        email()(raw)
    assert info.value.field == "email"
    assert info.value.context["transform"] == "email"


def test_email_smtputf8_can_be_refused():
    with pytest.raises(MappingError):
        email({"allow_smtputf8": False})("иван@example.com")


def _library(address):
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        return "ERROR"


def test_email_fast_path_agrees_with_the_library_on_a_corpus():
    rng = random.Random(2026)
    atoms = ["jane", "J.Doe", "a+b", "x_y", "o'neil", "#!$%&*", "", ".", "..", "a.", ".a", "Ab"]
    domains = [
        "acme.com",
        "ACME.COM",
        "acme",
        "acme.test",
        "a_b.com",
        "localhost",
        "-acme.com",
        "acme-.com",
        "xn--mnchen-3ya.de",
        "münchen.de",
        "acme.c0m",
        "acme.123",
        "acme..com",
        "[127.0.0.1]",
        "a" * 64 + ".com",
        "acme.com.",
        "sub.acme.example.org",
        "",
    ]
    corpus = [
        rng.choice(atoms)
        + rng.choice(["", ".", "x"])
        + rng.choice(atoms)
        + rng.choice(["@", "@", "@@", ""])
        + rng.choice(domains)
        for _ in range(3000)
    ]
    corpus += ["abuse@acme.com", "POSTMASTER@acme.com", "a" * 64 + "@acme.com", "x@" + "a" * 250]
    check = email()
    for address in corpus:
        try:
            got = check(address)
        except MappingError:
            got = "ERROR"
        want = None if not address.strip() else _library(address)
        assert got == want, address
