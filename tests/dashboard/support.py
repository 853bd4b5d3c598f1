"""What the dashboard tests share: lead files, a client per role, signed-in HTTP clients."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from junction.store.clients import ClientStore
from junction.store.repo import Store

HEADER = (
    "lead_id,first_name,last_name,email,phone,company,title,industry,country,city,lead_source,"
    "employees,annual_revenue,website,page_views,visits,email_opens,created_at"
)
# (lead_id, email, created_at): three good rows, one without an email (the has_email rule
# quarantines it) and one without a lead id (the mapping quarantines it)
ROWS = [
    ("L-1001", "ann.lee@example.com", "05.11.2026"),
    ("L-1002", "bo.chen@example.com", "06.11.2026"),
    ("L-1003", "cy.diaz@example.com", "07.11.2026"),
    ("L-1004", "", "08.11.2026"),
    ("", "no.key@example.com", "09.11.2026"),
]
ROLES = ("admin", "operator", "viewer", "ingest")
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_TOKEN = re.compile(r'name="token" value="([^"]+)"')


def lead_row(lead_id: str, email: str, created_at: str, *, hot: bool = True) -> str:
    """One CSV row in the ``csv.lead`` layout (a busy, well-qualified lead when ``hot``)."""
    views, visits, opens = ("42", "9", "7") if hot else ("1", "1", "0")
    return (
        f"{lead_id},Ann,Lee,{email},+14155550132,Acme Inc,VP Sales,software,US,Austin,"
        f"referral,250,12000000,https://acme.example,{views},{visits},{opens},{created_at}"
    )


def write_leads(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A lead CSV with ``rows``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "\n".join([HEADER, *(lead_row(*r) for r in rows)]) + "\n"
    path.write_text(body, encoding="utf-8")
    return path


def make_clients(store: Store) -> dict[str, tuple[str, str]]:
    """One oauth client per role: ``{role: (client id, secret)}``."""
    clients = ClientStore(store)
    out = {}
    for role in ROLES:
        client, secret = clients.create(f"ui-{role}", [role])
        out[role] = (client.id, secret)
    return out


def csrf_of(page: str) -> str:
    """The CSRF token a signed-in page carries in its forms."""
    found = _CSRF.search(page)
    assert found, "the page has no CSRF token"
    return found.group(1)


@contextmanager
def login(base_url: str, client_id: str, secret: str) -> Iterator[httpx.Client]:
    """An HTTP client signed in to the dashboard (its cookie jar holds the session)."""
    with httpx.Client(base_url=base_url, timeout=30, headers={"Accept": "text/html"}) as http:
        form = http.get("/ui/login")
        token = _TOKEN.search(form.text)
        assert token, form.text
        data = {"client_id": client_id, "secret": secret, "token": token.group(1), "next": "/ui/"}
        r = http.post("/ui/login", data=data)
        assert r.status_code == 303, r.text
        yield http
