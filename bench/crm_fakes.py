"""The CRM fakes ``bench crm`` reads from, each served from its own process.

A fake runs in a child process so that its CPU is not counted as Junction's: the bench process's
CPU time is Junction's work (SDK calls, mapping, scoring, the store), and the rest of its wall time
is waiting on the fake.  Records are synthetic leads with the fields a lead pipeline maps.
"""

from __future__ import annotations

import multiprocessing as mp
import random
from typing import Any

T0_MS = 1_772_355_600_000  # 2026-03-01T09:00:00Z
# records change about once a minute across the portal/org, as in a CRM of this size: a
# backfill's overlap window then holds a handful of records, not tens of thousands
STEP_MS = 60_000
INDUSTRIES = ["software", "retail", "finance", "manufacturing", "health", "education"]


def _lead_values(rng: random.Random, i: int) -> dict[str, Any]:
    return {
        "first": f"First{i}",
        "last": f"Last{i}",
        "email": f"lead{i}@example.com",
        "company": f"Company {i % 997}",
        "industry": rng.choice(INDUSTRIES),
        "employees": rng.randint(1, 5000),
        "views": rng.randint(0, 200),
        "visits": rng.randint(0, 50),
    }


def _hubspot(n: int) -> tuple[Any, dict[str, Any]]:
    from tests.fakes.hubspot import PRIVATE_TOKEN, HubSpotFake

    fake = HubSpotFake()
    rng = random.Random(2026)
    for i in range(n):
        v = _lead_values(rng, i)
        fake.put(
            "contacts",
            updated=T0_MS + i * STEP_MS,
            email=v["email"],
            firstname=v["first"],
            lastname=v["last"],
            company=v["company"],
            industry=v["industry"],
            numemployees=str(v["employees"]),
            hs_analytics_num_page_views=str(v["views"]),
            hs_analytics_num_visits=str(v["visits"]),
        )
    return fake.app, {"access_token": PRIVATE_TOKEN}


def _salesforce(n: int) -> tuple[Any, dict[str, Any]]:
    from datetime import UTC, datetime, timedelta

    from tests.fakes.salesforce import FakeOrg
    from tests.fakes.salesforce_data import lead_fields

    org = FakeOrg()
    t0 = datetime.fromtimestamp(T0_MS / 1000, UTC)
    for i in range(n):
        org.insert("Lead", lead_fields(i), modstamp=t0 + timedelta(milliseconds=i * STEP_MS))
    return org.app(), {
        "client_id": org.client_id,
        "client_secret": org.client_secret,
        "version": org.version,
    }


def _serve(system: str, n: int, conn: Any) -> None:
    import socket

    import uvicorn

    app, secrets = {"hubspot": _hubspot, "salesforce": _salesforce}[system](n)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections queue from now on, before uvicorn starts accepting
    conn.send((sock.getsockname()[1], secrets))
    uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, ws="none", lifespan="off")
    ).run(sockets=[sock])


def start(system: str, n: int) -> tuple[Any, str, dict[str, Any]]:
    """Start ``system``'s fake holding ``n`` leads; return (process, base URL, credentials)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(system, n, child), daemon=True)
    proc.start()
    port, secrets = parent.recv()
    return proc, f"http://127.0.0.1:{port}", secrets
