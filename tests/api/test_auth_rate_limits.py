"""Per-client rate limits over real HTTP: 429 with Retry-After, per client, shared through Redis."""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
import redis

from junction.api.token_bucket import CLIENT_NAME
from tests.api.harness import ApiHarness, running_api, write_api_config
from tests.conftest import REDIS_URL

PROTECTED = "/api/v1/audit"


def get(api: ApiHarness, headers: dict[str, str]) -> httpx.Response:
    with api.http() as h:
        return h.get(PROTECTED, headers=headers, params={"limit": 1})


def bearer(api: ApiHarness, rate_limit: str | None = None) -> dict[str, str]:
    """A new admin client (unique id, so runs never share counters) and its token."""
    _, token = api.new_client_token("rl-test", ["admin"], rate_limit=rate_limit)
    return {"Authorization": f"Bearer {token}"}


def assert_429(r: httpx.Response, window_s: int) -> None:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "rate_limited"
    retry = int(r.headers["retry-after"])
    assert 1 <= retry <= window_s


def test_a_client_over_its_limit_gets_429_with_retry_after(api_sqlite: ApiHarness) -> None:
    limited = bearer(api_sqlite, "3/minute")
    assert [get(api_sqlite, limited).status_code for _ in range(3)] == [200, 200, 200]
    assert_429(get(api_sqlite, limited), 60)
    # limits are per client: another client with the same limit, and one on the default, go on
    assert get(api_sqlite, bearer(api_sqlite, "3/minute")).status_code == 200
    assert get(api_sqlite, bearer(api_sqlite)).status_code == 200
    assert_429(get(api_sqlite, limited), 60)
    assert api_sqlite.metric('junction_api_requests_refused_total{reason="rate_limited"}') == 2


def test_api_key_clients_are_limited_too(api_sqlite: ApiHarness) -> None:
    _, key = api_sqlite.clients.create("rl-key", ["admin"], kind="apikey", rate_limit="2/minute")
    codes = [get(api_sqlite, {"X-API-Key": key}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_the_bucket_refills_one_token_at_a_time(api_sqlite: ApiHarness) -> None:
    headers = bearer(api_sqlite, "2/4 seconds")  # two tokens, one back every 2 s
    # a loaded machine may let a token back in between the first calls: call until refused
    codes = [get(api_sqlite, headers).status_code for _ in range(2)]
    while codes[-1] != 429 and len(codes) < 20:
        codes.append(get(api_sqlite, headers).status_code)
    assert codes[:2] == [200, 200]
    refused = get(api_sqlite, headers)
    assert_429(refused, 2)  # the ceiling of at most 2 s
    time.sleep(2.2)  # one token back, continuously: no window to wait out
    assert get(api_sqlite, headers).status_code == 200
    assert get(api_sqlite, headers).status_code == 429


def test_forbidden_calls_count_against_the_limit(api_sqlite: ApiHarness) -> None:
    _, token = api_sqlite.new_client_token("rl-viewer", ["viewer"], rate_limit="2/minute")
    codes = [get(api_sqlite, {"Authorization": f"Bearer {token}"}).status_code for _ in range(3)]
    assert codes == [403, 403, 429]


def limiter_connections() -> int:
    clients = redis.Redis.from_url(REDIS_URL, socket_timeout=1).client_list()
    return sum(c["name"] == CLIENT_NAME for c in clients)


def _two_instances(
    tmp_path: Path, models_dir: Path, storage: str | None
) -> tuple[AbstractContextManager[ApiHarness], AbstractContextManager[ApiHarness]]:
    extra = f"  rate_limit_storage: {storage}\n" if storage else ""
    cfg = write_api_config(
        tmp_path, store=f"sqlite:///{tmp_path / 'j.db'}", models=models_dir, extra=extra
    )
    return running_api(cfg), running_api(cfg)


@pytest.mark.usefixtures("redis_available")
def test_two_instances_share_one_limit_through_redis(tmp_path: Path, models_dir: Path) -> None:
    first, second = _two_instances(tmp_path, models_dir, REDIS_URL)
    with first as a, second as b:
        headers = bearer(a, "4/minute")  # one client; its token works on both instances
        assert [get(a, headers).status_code for _ in range(2)] == [200, 200]
        assert [get(b, headers).status_code for _ in range(2)] == [200, 200]
        assert_429(get(a, headers), 60)
        assert_429(get(b, headers), 60)
        # another client on the same Redis has its own budget
        assert get(b, bearer(b, "4/minute")).status_code == 200
        assert limiter_connections() > 0
    # each instance closed its pool of Redis connections when it shut down
    assert limiter_connections() == 0


@pytest.mark.usefixtures("redis_available")
def test_a_burst_across_two_instances_takes_exactly_the_capacity(
    tmp_path: Path, models_dir: Path
) -> None:
    # RELIABILITY.md case 15: A sends twice its capacity at once, spread over both instances,
    # while B calls at its normal pace
    first, second = _two_instances(tmp_path, models_dir, REDIS_URL)
    with first as a, second as b:
        client_a = bearer(a, "10/minute")  # 10 tokens, one back every 6 s
        client_b = bearer(b, "10/minute")
        began = time.monotonic()
        with ThreadPoolExecutor(20) as pool:
            burst = [pool.submit(get, (a, b)[i % 2], client_a) for i in range(20)]
            b_codes = []
            for _ in range(5):
                b_codes.append(get(b, client_b).status_code)
                time.sleep(0.02)
            answers = [f.result() for f in burst]
        elapsed = time.monotonic() - began
    codes = [r.status_code for r in answers]
    assert set(codes) <= {200, 429}
    # the capacity, plus at most what refilled while the burst lasted (nothing, unless the
    # machine stretched it past 6 s)
    assert 10 <= codes.count(200) <= 10 + math.floor(elapsed / 6)
    for r in answers:
        if r.status_code == 429:
            assert_429(r, 6)
            # the ceiling of the time until the next token: 6 s less what has refilled
            assert int(r.headers["retry-after"]) >= 6 - math.ceil(elapsed)
    assert b_codes == [200] * 5


def test_without_redis_each_instance_counts_alone(tmp_path: Path, models_dir: Path) -> None:
    # the control for the test above: in-memory counters are per process
    first, second = _two_instances(tmp_path, models_dir, None)
    with first as a, second as b:
        headers = bearer(a, "4/minute")
        assert [get(a, headers).status_code for _ in range(3)] == [200, 200, 200]
        assert [get(b, headers).status_code for _ in range(3)] == [200, 200, 200]


def test_an_unreachable_redis_means_503_not_unlimited(tmp_path: Path, models_dir: Path) -> None:
    extra = "  rate_limit_storage: redis://127.0.0.1:1\n"  # nothing listens on port 1
    cfg = write_api_config(
        tmp_path, store=f"sqlite:///{tmp_path / 'j.db'}", models=models_dir, extra=extra
    )
    with running_api(cfg) as api:
        r = get(api, bearer(api))
        refused = api.metric('junction_api_requests_refused_total{reason="limiter_unavailable"}')
    assert refused == 1
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"] == "1"
    assert "redis" not in r.text.lower()
