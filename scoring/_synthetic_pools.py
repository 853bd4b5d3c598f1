"""Fixed value pools for :mod:`scoring.synthetic` (all fictitious).

Names are from short hand-made lists; companies are invented and live under the reserved
``example.com``/``example.org``/``example.net`` domains (RFC 2606); phone numbers come only from
ranges that regulators reserve for fiction (NANP 555-0100..0199, Ofcom drama numbers, ACMA
``5550``, ARCEP ``01 99 00`` etc., the Bundesnetzagentur film numbers), so no generated number
reaches a real person.
"""

from __future__ import annotations

import functools
import unicodedata

import phonenumbers

FIRST_NAMES: tuple[str, ...] = (
    "Anna", "Ben", "Carla", "David", "Elena", "Felix", "Grace", "Hugo", "Ines", "Jonas",
    "Karin", "Liam", "Mia", "Noah", "Olga", "Paul", "Quinn", "Rosa", "Sam", "Tara",
    "Uwe", "Vera", "Wei", "Ximena", "Yusuf", "Zoe", "Amélie", "Björn", "Chloé", "Dmitri",
    "Emma", "Farid", "Giulia", "Hannah", "Ivan", "Julia", "Kenji", "Lena", "Marco", "Nina",
)  # fmt: skip
LAST_NAMES: tuple[str, ...] = (
    "Smith", "Müller", "Schmidt", "Martin", "Dubois", "Jones", "Brown", "Taylor", "Wilson",
    "Nguyen", "Garcia", "Rossi", "Kowalski", "Novak", "Jensen", "Larsen", "Weber", "Fischer",
    "Lefebvre", "Moreau", "Clarke", "Walker", "Patel", "Singh", "Kim", "Chen", "Silva",
    "Santos", "Costa", "Ivanova", "Petrov", "Hansen", "Berg", "Lindqvist", "O'Brien",
    "Murphy", "Kelly", "Becker", "Hoffmann", "Schulz",
)  # fmt: skip
COMPANY_STEMS: tuple[str, ...] = (
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Soylent", "Cyberdyne",
    "Tyrell", "Wonka", "Aperture", "Northwind", "Contoso", "Fabrikam", "Tailspin",
)  # fmt: skip
COMPANY_KINDS: tuple[str, ...] = (
    "Analytics", "Systems", "Logistics", "Labs", "Foods", "Health", "Partners", "Industries",
)  # fmt: skip
DOMAIN_ROOTS: tuple[str, ...] = ("example.com", "example.org", "example.net")
FREE_MAIL: tuple[str, ...] = ("gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "gmx.de")

# (canonical slug, as a human types it in a CRM export)
LEAD_SOURCES: tuple[tuple[str, str], ...] = (
    ("web_form", "Web Form"), ("paid_search", "Paid Search"), ("event", "Event"),
    ("referral", "Referral"), ("webinar", "Webinar"), ("partner", "Partner"),
    ("cold_call", "Cold Call"), ("purchased_list", "Purchased List"),
)  # fmt: skip
LEAD_SOURCE_WEIGHTS: tuple[float, ...] = (0.28, 0.15, 0.10, 0.08, 0.10, 0.07, 0.11, 0.11)
INDUSTRIES: tuple[tuple[str, str], ...] = (
    ("software", "Software"), ("financial_services", "Financial Services"),
    ("healthcare", "Healthcare"), ("manufacturing", "Manufacturing"), ("retail", "Retail"),
    ("education", "Education"), ("consulting", "Consulting"), ("government", "Government"),
)  # fmt: skip
INDUSTRY_WEIGHTS: tuple[float, ...] = (0.20, 0.13, 0.12, 0.14, 0.12, 0.09, 0.12, 0.08)

# seniority level -> job titles that scoring.features maps to that level
TITLES: dict[str, tuple[str, ...]] = {
    "c_level": ("CEO", "Chief Technology Officer", "CFO", "Founder", "Co-Founder", "Owner"),
    "vp": ("VP Sales", "VP of Marketing", "Vice President Engineering", "SVP Operations"),
    "director": ("Director of IT", "Marketing Director", "Head of Operations", "Sales Director"),
    "manager": ("Marketing Manager", "Sales Manager", "IT Manager", "Product Manager", "Team Lead"),
    "individual": (
        "Software Engineer", "Analyst", "Account Executive", "Consultant", "Data Scientist",
        "Office Administrator", "Buyer",
    ),
    "missing": ("",),
}  # fmt: skip
SENIORITY_WEIGHTS: dict[str, float] = {
    "c_level": 0.08,
    "vp": 0.07,
    "director": 0.15,
    "manager": 0.25,
    "individual": 0.40,
    "missing": 0.05,
}

# ISO2 -> (English name, legal suffix, weight, [(city, fictional E.164 prefix, free digits)])
COUNTRIES: dict[str, tuple[str, str, float, tuple[tuple[str, str, int], ...]]] = {
    "US": ("United States", "Inc.", 0.40, (
        ("San Francisco", "+141555501", 2), ("New York", "+121255501", 2),
        ("Chicago", "+131255501", 2), ("Boston", "+161755501", 2),
        ("Seattle", "+120655501", 2), ("Austin", "+151255501", 2),
    )),
    "CA": ("Canada", "Inc.", 0.12, (
        ("Toronto", "+141655501", 2), ("Vancouver", "+160455501", 2),
        ("Ottawa", "+161355501", 2),
    )),
    "GB": ("United Kingdom", "Ltd", 0.15, (
        ("London", "+4420794600", 2), ("Manchester", "+441614960", 3),
        ("Birmingham", "+441214960", 3),
    )),
    "DE": ("Germany", "GmbH", 0.15, (
        ("Berlin", "+493023125", 3), ("Frankfurt", "+496990009", 3),
        ("Hamburg", "+494066969", 3), ("München", "+498999998", 3),
    )),
    "FR": ("France", "SAS", 0.08, (
        ("Paris", "+33199001", 3), ("Lyon", "+33465711", 3), ("Nantes", "+33261911", 3),
    )),
    "AU": ("Australia", "Pty Ltd", 0.10, (
        ("Sydney", "+6125550", 4), ("Melbourne", "+6135550", 4), ("Brisbane", "+6175550", 4),
    )),
}  # fmt: skip

NUMBERS_PER_CITY = 100


def ascii_slug(text: str) -> str:
    """Lower-case ASCII letters and digits only ("O'Brien" -> "obrien", "Müller" -> "muller")."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in folded.lower() if c.isalnum())


@functools.cache
def phone_pool(prefix: str, free_digits: int) -> tuple[tuple[str, str, str], ...]:
    """Return ``NUMBERS_PER_CITY`` fictional numbers as (E.164, national, international)."""
    step = max(1, 10**free_digits // NUMBERS_PER_CITY)
    out = []
    for k in range(NUMBERS_PER_CITY):
        e164 = f"{prefix}{k * step:0{free_digits}d}"
        parsed = phonenumbers.parse(e164)
        out.append(
            (
                e164,
                phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL),
                phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
            )
        )
    return tuple(out)


def weighted_table(weights: tuple[float, ...], size: int = 1000) -> tuple[int, ...]:
    """Return a table of indexes where index ``i`` fills a ``weights[i]`` share of the slots.

    Drawing ``table[int(rng.random() * size)]`` is a weighted choice at the cost of one
    ``random()`` call (``random.choices`` costs ten times as much per draw).
    """
    total = sum(weights)
    table: list[int] = []
    acc = 0.0
    for i, w in enumerate(weights):
        acc += w / total
        table.extend([i] * (round(acc * size) - len(table)))
    return tuple(table)
