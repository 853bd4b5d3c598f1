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


def _phone_library(text: str, region: str | None) -> str:
    """What phonenumbers itself answers: the E.164 form, or ERROR."""
    import phonenumbers

    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return "ERROR"
    if not phonenumbers.is_valid_number(number):
        return "ERROR"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _spelled(rng: random.Random, digits: str) -> str:
    """``digits`` written with random spaces, dashes, dots and parentheses between them."""
    out = []
    for d in digits:
        if rng.random() < 0.3:
            out.append(rng.choice([" ", "-", ".", "(", ")", " (", ") ", "  "]))
        out.append(d)
    return "".join(out)


def test_phone_shape_cache_agrees_with_the_library_on_spelled_variants():
    """A number seen once answers its other spellings from the shape cache: each spelling
    must get exactly what phonenumbers answers for it (E.164 or an error), in any order."""
    rng = random.Random(2026)
    bases = [
        ("+1", "3125550188", None),
        ("+44", "2079460958", None),
        ("+44", "02079460958", None),  # the trunk 0 written after the country code
        ("+7", "89161234567", None),
        ("+39", "0612345678", None),  # Italian leading zero
        ("+49", "301234567", None),
        ("+33", "465711460", None),
        ("+61", "755507000", None),
        ("", "4155550132", "US"),
        ("", "14155550132", "US"),
        ("", "0301234567", "DE"),
        ("", "0301234567", "US"),  # valid in one region, not in the other
        ("", "89161234567", "RU"),
        ("", "0117946095", "GB"),
        ("", "00442079460958", "DE"),  # the international prefix, then the number
        ("", "011442079460958", "US"),
        ("", "5550100", "US"),  # too short to be valid
        ("+", "99912345678", None),  # no such country code
        ("+1", "555", None),
    ]
    for round_ in range(3):
        built = phone({"region_from": "country"})
        assert isinstance(built, RecordTransform)
        norm = built.fn
        cases = [
            (plus + _spelled(rng, digits), region)
            for plus, digits, region in bases
            for _ in range(15)
        ]
        cases += [(plus + digits, region) for plus, digits, region in bases]
        rng.shuffle(cases)
        for text, region in cases:
            try:
                got = norm(text, {"country": region} if region else {})
            except MappingError:
                got = "ERROR"
            assert got == _phone_library(text.strip(), region), (round_, text, region)


def test_phone_shape_cache_agrees_with_the_library_in_every_region():
    """Every region's example numbers (and a digit changed), international and national,
    spelled two ways, in a shuffled order: the shape cache never answers differently."""
    import phonenumbers

    from mappings.countries import resolve_country

    rng = random.Random(11)
    regions = [r for r in sorted(phonenumbers.SUPPORTED_REGIONS) if resolve_country(r) == r]
    kinds = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
    bases: list[tuple[str, str | None]] = []
    for region in regions:
        for kind in kinds:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            national = phonenumbers.national_significant_number(example)
            changed = e164[:-1] + str(rng.randrange(10))
            bases += [(e164, None), (changed, None), ("00" + e164[1:], rng.choice(regions))]
            bases += [(national, region), ("0" + national, rng.choice(regions))]
    assert len(bases) > 1000
    built = phone({"region_from": "country"})
    assert isinstance(built, RecordTransform)
    cases = [("+" + _spelled(rng, t[1:]) if t[0] == "+" else _spelled(rng, t), r) for t, r in bases]
    cases += [(t, r) for t, r in bases]
    rng.shuffle(cases)
    for text, region in cases:
        try:
            got = built.fn(text, {"country": region} if region else {})
        except MappingError:
            got = "ERROR"
        assert got == _phone_library(text.strip(), region), (text, region)


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
