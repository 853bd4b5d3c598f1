"""The Airflow DAG example: imports without Airflow, and its backfill works on a real API."""

from __future__ import annotations

import importlib.util
import urllib.error
from collections.abc import Iterator
from types import ModuleType

import httpx
import pytest

from tests.api.harness import SIGNING_KEY, ApiHarness, running_api
from tests.deploy.support import DEPLOY

DAG_FILE = DEPLOY / "airflow" / "junction_backfill_dag.py"
HOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

CONFIG = """\
store: "sqlite:///{db}"
models_dir: models
pipelines:
  leads:
    source: {{connector: csv_file, path: inbox/*.csv, settle_seconds: 0}}
    mapping: csv.lead
    workers: 0
    routes:
      - otherwise: [webhook.sales]
channels:
  webhook.sales: {{url: "http://127.0.0.1:9/sales/", secret: "{hook}", timeout_s: 2}}
api:
  signing_key: "{key}"
"""


def _load_dag_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("junction_backfill_dag", DAG_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiHarness]:
    """One API for the module: each test uses its own client."""
    tmp_path = tmp_path_factory.mktemp("airflow")
    (tmp_path / "inbox").mkdir()
    config = tmp_path / "junction.yaml"
    config.write_text(
        CONFIG.format(db=tmp_path / "junction.db", hook=HOOK_SECRET, key=SIGNING_KEY),
        encoding="utf-8",
    )
    with running_api(config) as harness:
        yield harness


def test_the_dag_file_compiles_and_imports_without_airflow() -> None:
    compile(DAG_FILE.read_text(encoding="utf-8"), str(DAG_FILE), "exec")
    module = _load_dag_module()
    if importlib.util.find_spec("airflow") is None:
        assert module.dag is None
    else:  # pragma: no cover - Airflow is not a dependency of Junction
        assert module.dag.dag_id == "junction_backfill"
    # Airflow's safe mode only parses files that mention both words
    text = DAG_FILE.read_text(encoding="utf-8")
    assert "airflow" in text
    assert "dag" in text.lower()


def test_backfill_pauses_resets_resumes_and_runs(api: ApiHarness) -> None:
    dag = _load_dag_module()
    client, secret = api.clients.create("airflow", ["operator"])
    token = dag.fetch_token(api.base_url, client.id, secret)

    out = dag.backfill(api.base_url, token, "leads", "leads", {"offset": 7}, "test backfill")

    assert out["reset"]["stream"] == "leads"
    assert out["reset"]["value"] == {"offset": 7}
    assert out["run"]["pipeline"] == "leads"
    with api.http(headers={"Authorization": f"Bearer {token}"}) as http:
        pipeline = http.get("/api/v1/pipelines/leads").json()
        cursors = http.get("/api/v1/pipelines/leads/cursors").json()["items"]
    assert pipeline["paused"] is False
    assert {c["stream"] for c in cursors} == {"leads"}


def test_a_failed_reset_still_resumes_the_pipeline(api: ApiHarness) -> None:
    dag = _load_dag_module()
    client, secret = api.clients.create("airflow-reset", ["operator"])
    token = dag.fetch_token(api.base_url, client.id, secret)

    with pytest.raises(urllib.error.HTTPError) as err:
        # an empty stream name fails the request's validation, after the pause
        dag.backfill(api.base_url, token, "leads", "", None)

    assert err.value.code == 422
    pipeline = httpx.get(
        f"{api.base_url}/api/v1/pipelines/leads",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()
    assert pipeline["paused"] is False


def test_a_viewer_cannot_backfill(api: ApiHarness) -> None:
    dag = _load_dag_module()
    client, secret = api.clients.create("airflow-viewer", ["viewer"])
    token = dag.fetch_token(api.base_url, client.id, secret)
    with pytest.raises(urllib.error.HTTPError) as err:
        dag.backfill(api.base_url, token, "leads", "leads")
    assert err.value.code == 403
