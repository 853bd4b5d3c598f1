"""A running API follows `junction model promote` / `rollback` without a restart.

The scorer cache checks the model's stages revision at most once a second per pipeline; the
request that sees a change reloads in a worker thread while the others keep scoring.  A new
production that fails to load keeps the previously verified model (and says so); a pinned
version never reloads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from junction.api.scoring import CHECK_INTERVAL_S, LeadScoring
from scoring.stages import promote, rollback
from tests.api.harness import ApiHarness, running_api, write_api_config
from tests.registry_support import add_version, copy_on_version_1, two_trained_versions

LEAD: dict[str, Any] = {
    "external_id": "L-reload",
    "email": "ada@analytical-engines.example",
    "title": "CEO",
    "lead_source": "referral",
    "industry": "software",
    "country": "US",
    "employees": 500,
    "page_views": 12,
}
MODEL = "lead-score"
# how long a test waits for a promotion to reach the API (the check runs once a second)
REACH_S = 5.0


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with the default version 1 and a differently trained version 2."""
    return two_trained_versions(tmp_path_factory.mktemp("reload-models"), MODEL, seed=31)


@pytest.fixture
def models(two_versions: Path, tmp_path: Path) -> Path:
    """This test's own copy of the registry, version 1 in production."""
    return copy_on_version_1(two_versions, tmp_path / "models", MODEL)


def _config(tmp_path: Path, models: Path) -> Path:
    """The harness config plus a pipeline pinned to version 1."""
    path = write_api_config(tmp_path, store=f"sqlite:///{tmp_path / 'j.db'}", models=models)
    text = path.read_text(encoding="utf-8")
    pinned = (
        "  pinned:\n"
        "    source: {connector: csv_file, path: inbox/*.pinned, settle_seconds: 0}\n"
        "    mapping: csv.lead\n"
        "    workers: 0\n"
        '    scoring: {model: lead-score, version: "1"}\n'
    )
    path.write_text(text.replace("channels:\n", pinned + "channels:\n", 1), encoding="utf-8")
    return path


@pytest.fixture
def api(tmp_path: Path, models: Path) -> Iterator[ApiHarness]:
    with running_api(_config(tmp_path, models)) as h:
        yield h


def _score(api: ApiHarness, **params: str) -> dict[str, Any]:
    with api.http() as h:
        r = h.post("/api/v1/score-lead", json=LEAD, params=params, headers=api.headers("ingest"))
    assert r.status_code == 200, r.text  # never a failed request during a swap
    body: dict[str, Any] = r.json()
    return body


def _wait_for_version(api: ApiHarness, version: str, **params: str) -> float:
    """Score until the answers carry ``version``; return how long that took (seconds)."""
    started = time.monotonic()
    while True:
        body = _score(api, **params)
        if body["model_version"] == version:
            return time.monotonic() - started
        assert time.monotonic() - started < REACH_S, f"still {body['model_version']}"
        time.sleep(0.05)


def _svc(api: ApiHarness) -> LeadScoring:
    svc = api.ctx.extras["lead_scoring"]
    assert isinstance(svc, LeadScoring)
    return svc


def test_promote_and_rollback_reach_a_running_api_within_a_second_or_so(
    api: ApiHarness, models: Path
) -> None:
    assert _score(api)["model_version"] == "1"
    assert _score(api, pipeline="leads")["model_version"] == "1"

    promote(models, MODEL, "2", actor="test", reason="v2 wins")
    assert _wait_for_version(api, "2") <= CHECK_INTERVAL_S + 1.0
    _wait_for_version(api, "2", pipeline="leads")
    v2 = _score(api)
    assert (v2["model"], v2["variant"]) == (MODEL, "production")

    rollback(models, MODEL, actor="test", reason="v2 misbehaves")
    assert _wait_for_version(api, "1") <= CHECK_INTERVAL_S + 1.0
    _wait_for_version(api, "1", pipeline="leads")
    assert _svc(api).reload_failures() == {}


def test_a_pinned_version_never_reloads(api: ApiHarness, models: Path) -> None:
    assert _score(api, pipeline="pinned")["model_version"] == "1"
    promote(models, MODEL, "2", actor="test", reason="v2 wins")
    _wait_for_version(api, "2")  # the unpinned default model moved ...
    deadline = time.monotonic() + CHECK_INTERVAL_S + 0.5
    while time.monotonic() < deadline:  # ... and the pinned pipeline stays where it is
        assert _score(api, pipeline="pinned")["model_version"] == "1"
        time.sleep(0.1)


def _corrupt_copy(models: Path, version: str) -> None:
    """A copy of version 2 whose compiled model no longer matches its card's hash."""
    vdir = add_version(models / MODEL / "2", models, MODEL, version)
    compiled = vdir / "compiled.json"
    compiled.write_text(compiled.read_text(encoding="utf-8") + " ", encoding="utf-8")


def test_a_corrupt_new_production_keeps_the_verified_model_and_says_so(
    api: ApiHarness, models: Path
) -> None:
    assert _score(api)["model_version"] == "1"
    with api.http() as h:  # builds the pipelines' runners with the verified v1
        assert h.get("/readyz").status_code == 200
    _corrupt_copy(models, "3")
    # promote skips its own verification here, as a hand edit of stages.json would
    promote(models, MODEL, "3", actor="test", reason="tampered", verify=False)

    deadline = time.monotonic() + CHECK_INTERVAL_S + 1.0
    while not _svc(api).reload_failures():
        assert time.monotonic() < deadline, "the failed reload was not recorded"
        assert _score(api)["model_version"] == "1"  # every request still answers, with v1
        time.sleep(0.05)
    assert _svc(api).reload_failures() == {"-": {"code": "model_load_error"}}
    for _ in range(5):
        assert _score(api)["model_version"] == "1"
    with api.http() as h:  # still ready (a 503 would drop every replica), but it says so
        ready = h.get("/readyz")
        exposed = h.get("/metrics", headers=api.headers("viewer")).text
    assert ready.status_code == 200, ready.json().get("checks")
    assert ready.json()["stale_models"]["api:-"] == "model_load_error"
    assert 'junction_model_reloads_total{model="lead-score",outcome="failed",owner="api:-"}' in (
        exposed
    )

    # one command recovers: the rollback returns production to the loaded v1 (no load at all)
    rollback(models, MODEL, actor="test", reason="v3 is corrupt")
    deadline = time.monotonic() + CHECK_INTERVAL_S + 1.0
    while _svc(api).reload_failures():
        assert time.monotonic() < deadline, "the rollback did not clear the failure"
        assert _score(api)["model_version"] == "1"
        time.sleep(0.05)
    promote(models, MODEL, "2", actor="test", reason="v2 then")
    _wait_for_version(api, "2")


def test_a_process_with_no_verified_model_refuses_to_score(tmp_path: Path, models: Path) -> None:
    _corrupt_copy(models, "3")
    promote(models, MODEL, "3", actor="test", reason="tampered", verify=False)
    with running_api(_config(tmp_path, models)) as api, api.http() as h:
        r = h.post("/api/v1/score-lead", json=LEAD, headers=api.headers("ingest"))
    assert r.status_code >= 400
    assert "model" in r.json()["code"]


def test_the_cache_checks_the_revision_at_most_once_per_interval(
    api: ApiHarness, models: Path
) -> None:
    _score(api)
    svc = _svc(api)
    watch = svc._watches[None]
    loaded = svc.cached_scorer(None)
    assert loaded is not None
    assert loaded.version == "1"

    watch.next_check = time.monotonic() + 60  # the check is not due
    promote(models, MODEL, "2", actor="test", reason="v2 wins")
    assert svc.cached_scorer(None) is loaded  # no stat: the loaded scorer, as it was
    watch.next_check = 0.0  # due now: the change is seen, and this caller reloads
    assert svc.cached_scorer(None) is None
    assert svc.cached_scorer(None) is loaded  # the others keep scoring meanwhile
    assert svc.load_scorer(None).version == "2"
    reloaded = svc.cached_scorer(None)
    assert reloaded is not None
    assert reloaded.version == "2"


def test_the_cache_adds_little_to_the_hot_path(api: ApiHarness) -> None:
    _score(api)
    svc = _svc(api)
    n = 200_000
    started = time.perf_counter()
    for _ in range(n):
        svc.cached_scorer(None)
    per_call = (time.perf_counter() - started) / n
    # one scoring costs ~10 µs; a cache hit (a dict lookup, a clock read) must stay far below it
    assert per_call < 2e-6, f"{per_call * 1e6:.2f} µs per cached_scorer call"


def test_no_request_fails_while_the_model_switches_under_load(
    api: ApiHarness, models: Path
) -> None:
    statuses: list[int] = []
    seen: set[str] = set()
    stop = threading.Event()
    token = api.headers("ingest")

    def hammer() -> None:
        with api.http() as h:
            while not stop.is_set():
                r = h.post("/api/v1/score-lead", json=LEAD, headers=token)
                statuses.append(r.status_code)
                if r.status_code == 200:
                    seen.add(r.json()["model_version"])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(2):
            promote(models, MODEL, "2", actor="test", reason="v2 wins")
            _wait_for_version(api, "2")
            rollback(models, MODEL, actor="test", reason="back to v1")
            _wait_for_version(api, "1")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(statuses) > 20
    assert set(statuses) == {200}
    assert seen == {"1", "2"}
