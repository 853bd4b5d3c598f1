"""Object shapes and sample records for the Salesforce fake (modelled on real describe output)."""

from __future__ import annotations

from typing import Any

# (name, describe type, externalId) per object; compound fields (address) are never queried
FIELDS: dict[str, list[tuple[str, str, bool]]] = {
    "Lead": [
        ("Id", "id", False),
        ("IsDeleted", "boolean", False),
        ("FirstName", "string", False),
        ("LastName", "string", False),
        ("Company", "string", False),
        ("Title", "string", False),
        ("Email", "email", False),
        ("Phone", "phone", False),
        ("Website", "url", False),
        ("Industry", "picklist", False),
        ("LeadSource", "picklist", False),
        ("Status", "picklist", False),
        ("Country", "string", False),
        ("City", "string", False),
        ("Address", "address", False),
        ("NumberOfEmployees", "int", False),
        ("AnnualRevenue", "currency", False),
        ("IsConverted", "boolean", False),
        ("External_Id__c", "string", True),
        ("Score__c", "double", False),
        ("CreatedDate", "datetime", False),
        ("LastModifiedDate", "datetime", False),
        ("SystemModstamp", "datetime", False),
    ],
    "Contact": [
        ("Id", "id", False),
        ("IsDeleted", "boolean", False),
        ("AccountId", "reference", False),
        ("FirstName", "string", False),
        ("LastName", "string", False),
        ("Email", "email", False),
        ("Phone", "phone", False),
        ("MobilePhone", "phone", False),
        ("Title", "string", False),
        ("MailingCountry", "string", False),
        ("MailingCity", "string", False),
        ("MailingAddress", "address", False),
        ("External_Id__c", "string", True),
        ("CreatedDate", "datetime", False),
        ("LastModifiedDate", "datetime", False),
        ("SystemModstamp", "datetime", False),
    ],
    "Account": [
        ("Id", "id", False),
        ("IsDeleted", "boolean", False),
        ("Name", "string", False),
        ("Industry", "picklist", False),
        ("Website", "url", False),
        ("Phone", "phone", False),
        ("BillingStreet", "textarea", False),
        ("BillingCity", "string", False),
        ("BillingCountry", "string", False),
        ("BillingAddress", "address", False),
        ("NumberOfEmployees", "int", False),
        ("AnnualRevenue", "currency", False),
        ("CreatedDate", "datetime", False),
        ("LastModifiedDate", "datetime", False),
        ("SystemModstamp", "datetime", False),
    ],
    "Opportunity": [
        ("Id", "id", False),
        ("IsDeleted", "boolean", False),
        ("Name", "string", False),
        ("AccountId", "reference", False),
        ("StageName", "picklist", False),
        ("Amount", "currency", False),
        ("CloseDate", "date", False),
        ("CreatedDate", "datetime", False),
        ("LastModifiedDate", "datetime", False),
        ("SystemModstamp", "datetime", False),
    ],
}
KEY_PREFIX = {"Lead": "00Q", "Contact": "003", "Account": "001", "Opportunity": "006"}

_FIRST = ["Carla", "Jana", "Doug", "Jeraldine", "Henrik", "Amara", "Kenji", "Olga", "Luis", "Mia"]
_LAST = ["Walker", "Schmidt", "Bunting", "Black", "Nielsen", "Okafor", "Sato", "Ivanova", "Diaz"]
_COMPANY = ["Wonka Partners Inc.", "Northwind Logistics", "Globex", "Initech", "Umbrella Ltd"]
_INDUSTRY = ["Technology", "Financial Services", "Manufacturing", "Retail", "Healthcare"]
_SOURCE = ["Web", "Referral", "Partner", "Trade Show", "Phone Inquiry"]
_COUNTRY = [("USA", "Redmond"), ("Germany", "Berlin"), ("US", "San Francisco"), ("UK", "London")]


def lead_fields(i: int) -> dict[str, Any]:
    """A realistic Lead's writable fields (deterministic per ``i``)."""
    first, last = _FIRST[i % len(_FIRST)], _LAST[i % len(_LAST)]
    company = _COMPANY[i % len(_COMPANY)]
    country, city = _COUNTRY[i % len(_COUNTRY)]
    return {
        "FirstName": first,
        "LastName": f"{last}{i}",
        "Company": company,
        "Title": "Marketing Manager" if i % 2 else None,
        "Email": f"{first.lower()}.{last.lower()}{i}@example.com",
        "Phone": f"(555) 010-{i % 10000:04d}",
        "Website": f"https://www.{company.split()[0].lower()}.example",
        "Industry": _INDUSTRY[i % len(_INDUSTRY)],
        "LeadSource": _SOURCE[i % len(_SOURCE)],
        "Status": "Open - Not Contacted",
        "Country": country,
        "City": city,
        "NumberOfEmployees": 10 + i,
        "AnnualRevenue": 250000.0 + 1000 * i,
        "IsConverted": False,
        "External_Id__c": f"EXT-{i:05d}",
        "Score__c": None,
    }


def contact_fields(i: int) -> dict[str, Any]:
    """A realistic Contact's writable fields."""
    first, last = _FIRST[i % len(_FIRST)], _LAST[i % len(_LAST)]
    country, city = _COUNTRY[i % len(_COUNTRY)]
    return {
        "FirstName": first,
        "LastName": last,
        "Email": f"{first.lower()}.{last.lower()}{i}@example.org",
        "Phone": f"(850) 644-{i % 10000:04d}",
        "MobilePhone": None,
        "Title": "Buyer",
        "MailingCountry": country,
        "MailingCity": city,
        "External_Id__c": f"C-{i:05d}",
    }


def account_fields(i: int) -> dict[str, Any]:
    """A realistic Account's writable fields."""
    country, city = _COUNTRY[i % len(_COUNTRY)]
    return {
        "Name": f"{_COMPANY[i % len(_COMPANY)]} {i}",
        "Industry": _INDUSTRY[i % len(_INDUSTRY)],
        "Website": "https://www.example.com",
        "Phone": "(415) 555-0132",
        "BillingStreet": "1 Main St",
        "BillingCity": city,
        "BillingCountry": country,
        "NumberOfEmployees": 100 + i,
        "AnnualRevenue": 1_000_000.0 * (i + 1),
    }
