"""The token endpoint and bearer/API-key authentication over real HTTP."""

from __future__ import annotations

from tests.api.harness import ApiHarness


def test_health_is_public_and_ready_checks_the_store(api: ApiHarness) -> None:
    with api.http() as h:
        assert h.get("/healthz").json() == {"status": "ok"}
        ready = h.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["store"] == "ok"
    assert ready.headers["x-request-id"]


def test_token_endpoint_issues_a_token_that_authenticates(api_sqlite: ApiHarness) -> None:
    client, secret = api_sqlite.clients.create("partner", ["viewer"])
    with api_sqlite.http() as h:
        r = h.post(
            "/api/v1/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client.id,
                "client_secret": secret,
            },
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 900
        bad = h.post(
            "/api/v1/oauth/token",
            data={"grant_type": "client_credentials", "client_id": client.id, "client_secret": "x"},
        )
    assert bad.status_code == 401
    assert bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["error"] == "invalid_client"
    assert secret not in bad.text
