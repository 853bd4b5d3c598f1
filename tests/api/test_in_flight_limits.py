"""In-flight limits over real HTTP (RELIABILITY case 16): a client's N+1st concurrent request is
refused at once with 429, listings shed with 503 past 80 % of the instance's capacity while
ingestion and the token endpoint keep the reserved rest, and nothing refused is lost.

The requests are held in flight by a real slow dependency: another connection holds the SQLite
store's write lock, so every ingest request waits inside its handler (busy timeout) until the
test lets go.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from junction.api.concurrency import InFlightGate
from junction.api.problems import ApiProblem
from tests.api.harness import ApiHarness, running_api, write_api_config
from tests.integration.helpers import records_held

URL = "/api/v1/records/leads"
LIMITS = "  max_in_flight: 10\n  shed_ratio: 0.8\n  client_max_in_flight: 3\n"
LEAD = {
    "email": "grace@example.com",
    "first_name": "Grace",
    "company": "Harvard Mark I",
    "country": "US",
}


@pytest.fixture
def api(tmp_path: Path, models_dir: Path) -> Iterator[ApiHarness]:
    """The API on SQLite with 10 requests in flight at most, 8 for listings, 3 per client."""
    store = f"sqlite:///{tmp_path / 'junction.db'}"
    config = write_api_config(tmp_path, store=store, models=models_dir, extra=LIMITS)
    with running_api(config) as h:
        yield h


@contextmanager
def store_locked(api: ApiHarness) -> Iterator[None]:
    """Hold the store's write lock (readers go on: WAL); writers wait until the block ends."""
    with records_held(f"sqlite:///{api.root / 'junction.db'}"):
        yield


def ingest_headers(api: ApiHarness, name: str) -> dict[str, str]:
    _, token = api.new_client_token(name, ["ingest"])
    return {"Authorization": f"Bearer {token}"}


def post(api: ApiHarness, headers: dict[str, str], tag: str) -> httpx.Response:
    body = {"records": [{**LEAD, "lead_id": f"L-{tag}"}]}
    with api.http(timeout=60) as c:
        return c.post(URL, json=body, headers={**headers, "Idempotency-Key": tag})


def wait_in_flight(api: ApiHarness, n: int) -> None:
    deadline = time.monotonic() + 20
    while api.metric("junction_api_requests_in_flight") != n:
        assert time.monotonic() < deadline, "the requests never reached the handler"
        time.sleep(0.02)


def assert_refused(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == code
    assert r.headers["retry-after"] == "1"
    assert r.headers["x-request-id"]  # inside the request id: the refusal can be traced


def records(api: ApiHarness) -> int:
    return api.ctx.store.counts("leads")["records"]


def test_a_client_past_its_cap_gets_429_at_once_and_other_clients_go_on(api: ApiHarness) -> None:
    a, b = ingest_headers(api, "client-a"), ingest_headers(api, "client-b")
    with ThreadPoolExecutor(8) as pool:
        with store_locked(api):
            held = [pool.submit(post, api, a, f"a-{i}") for i in range(3)]
            wait_in_flight(api, 3)
            assert_refused(post(api, a, "a-3"), 429, "too_many_concurrent")
            held.append(pool.submit(post, api, b, "b-0"))  # its own slots
            wait_in_flight(api, 4)
            assert not any(f.done() for f in held)  # still waiting for the store
        answers = [f.result() for f in held]
    assert [r.status_code for r in answers] == [201] * 4
    # the refused request stored nothing; its retry with the same key goes through
    assert records(api) == 4
    assert post(api, a, "a-3").status_code == 201
    assert records(api) == 5
    assert api.metric("junction_api_requests_in_flight") == 0
    assert api.metric('junction_api_requests_refused_total{reason="client_limit"}') == 1


def test_listings_shed_past_80_percent_while_ingestion_and_tokens_keep_the_rest(
    api: ApiHarness,
) -> None:
    writers = [ingest_headers(api, f"writer-{i}") for i in range(6)]
    viewer, secret = api.clients.create("viewer", ["viewer"])
    listing = {"Authorization": f"Bearer {api.issue_token(viewer.id, secret)}"}
    with api.http() as c:
        assert c.get("/api/v1/runs", headers=listing).status_code == 200
    held: list[Future[httpx.Response]] = []
    with ThreadPoolExecutor(12) as pool:
        with store_locked(api):
            # 8 of 10 places taken by ingestion, 3 + 3 + 2 from three clients
            for n, i in enumerate((0, 0, 0, 1, 1, 1, 2, 2)):
                held.append(pool.submit(post, api, writers[i], f"w{i}-{n}"))
            wait_in_flight(api, 8)
            with api.http() as c:
                assert_refused(c.get("/api/v1/pipelines", headers=listing), 503, "shed")
                assert_refused(c.get("/api/v1/runs", headers=listing), 503, "shed")
                assert c.get("/healthz").status_code == 200  # probes are never refused
            # authentication and ingestion keep the last two places (the token endpoint
            # writes its client's last use, so it waits for the store too)
            token = pool.submit(api.issue_token, viewer.id, secret)
            held.append(pool.submit(post, api, writers[3], "w3"))
            wait_in_flight(api, 10)
            assert_refused(post(api, writers[5], "w5"), 503, "overloaded")
            with api.http() as c:
                assert_refused(c.get("/api/v1/runs", headers=listing), 503, "overloaded")
        answers = [f.result() for f in held]
        assert token.result()
    assert [r.status_code for r in answers] == [201] * 9
    assert post(api, writers[5], "w5").status_code == 201  # the refused one, retried
    assert records(api) == 10
    with api.http() as c:
        assert c.get("/api/v1/runs", headers=listing).status_code == 200
    assert api.metric('junction_api_requests_refused_total{reason="shed"}') == 2
    assert api.metric('junction_api_requests_refused_total{reason="overloaded"}') == 2


def test_the_gate_counts_each_request_once_and_gives_every_slot_back() -> None:
    gate = InFlightGate(4, 0.5, 2)
    scopes = [{"type": "http", "method": "GET", "path": "/api/v1/runs"} for _ in range(3)]
    assert gate.enter(scopes[0]) is None
    assert gate.enter(scopes[1]) is None
    refused = gate.enter(scopes[2])  # 2 of 4 is the listings' share
    assert refused is not None
    assert refused.code == "shed"
    for scope in scopes[:2]:
        gate.enter_client(scope, "c")
        gate.enter_client(scope, "c")  # a second policy on the same request takes no slot
    assert gate.per_client == {"c": 2}
    post = {"type": "http", "method": "POST", "path": "/api/v1/records/leads"}
    assert gate.enter(post) is None  # ingestion past the listings' share
    with pytest.raises(ApiProblem, match="too many requests in flight") as info:
        gate.enter_client(post, "c")
    assert info.value.status == 429
    for scope in [*scopes, post]:
        gate.leave(scope)
        gate.leave(scope)  # twice, or for a refused request: no effect
    assert (gate.in_flight, gate.per_client) == (0, {})
    # a slot is only taken for a request the middleware counted (never leaks)
    gate.enter_client({"type": "http", "path": "/api/v1/runs"}, "c")
    assert gate.per_client == {}
    assert gate.refused_counts() == {"shed": 1, "client_limit": 1}
    assert gate.is_critical("POST", "/hooks/partner")
    assert gate.is_critical("GET", "/callbacks/x")
    assert gate.is_critical("POST", "/api/v1/score-lead")
    assert not gate.is_critical("GET", "/api/v1/records/leads")
    assert not gate.is_critical("POST", "/api/v1/pipelines/leads/run")


def test_the_openapi_document_names_the_limits_answers(api: ApiHarness) -> None:
    with api.http() as c:
        paths = c.get("/api/v1/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for method, op in operations.items():
            codes = set(op["responses"])
            if path in ("/healthz", "/readyz", "/metrics"):
                assert "429" not in codes, (method, path)  # probes are never refused
                continue
            assert "503" in codes, (method, path)
            if path.startswith("/api/v1/") and path != "/api/v1/oauth/token":
                assert "429" in codes, (method, path)
