"""Airflow DAG: backfill one Junction pipeline stream through the HTTP API.

Copy this file into Airflow's ``dags/`` folder and create an HTTP connection ``junction_api``:
host = Junction's base URL (``http://junction.junction.svc``), login = an OAuth2 client id with
the ``operator`` role (``junction clients create airflow --role operator``), password = its
secret. Trigger the DAG with params ``pipeline``, ``stream``, ``cursor`` (JSON; null starts the
stream from the beginning) and ``reason`` (goes to the audit log).

The backfill is the API's own procedure: get a token (client credentials), pause the pipeline,
move the stream's cursor back (``POST /api/v1/pipelines/{name}/cursors/reset``; the live cursor
is saved), resume, and run (``POST /api/v1/pipelines/{name}/run``: queued with the scheduler of
``junction serve``, or run inline). Records read again are not stored twice. The pipeline is
resumed even when the reset fails, so a failed DAG run never leaves it paused.

Junction does not need Airflow: the HTTP helpers use only the standard library, and the file
imports cleanly where Airflow is not installed (``dag`` is then None), which is how the test
suite exercises the helpers against a real Junction API.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from datetime import datetime
from typing import Any

API = "/api/v1"
CONNECTION_ID = "junction_api"
TIMEOUT_S = 30.0


def fetch_token(base_url: str, client_id: str, client_secret: str) -> str:
    """An access token for the client (OAuth2 client-credentials grant)."""
    form = urllib.parse.urlencode(
        {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret}
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - the operator configures an http(s) URL
        f"{base_url.rstrip('/')}{API}/oauth/token", data=form, method="POST"
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
        token: str = json.load(response)["access_token"]
    return token


def call(base_url: str, token: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """POST ``body`` as JSON to ``path`` under the API; the decoded answer (errors raise)."""
    request = urllib.request.Request(  # noqa: S310 - as above
        f"{base_url.rstrip('/')}{API}{path}",
        data=json.dumps(body or {}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
        return json.load(response)


def backfill(
    base_url: str,
    token: str,
    pipeline: str,
    stream: str,
    cursor: dict[str, Any] | None = None,
    reason: str = "backfill from Airflow",
) -> dict[str, Any]:
    """Pause, move ``stream``'s cursor to ``cursor``, resume and run ``pipeline``.

    Returns ``{"reset": <reset answer>, "run": <run answer>}``.
    """
    name = urllib.parse.quote(pipeline, safe="")
    call(base_url, token, f"/pipelines/{name}/pause")
    try:
        reset = call(
            base_url,
            token,
            f"/pipelines/{name}/cursors/reset",
            {"stream": stream, "value": cursor, "reason": reason},
        )
    finally:
        call(base_url, token, f"/pipelines/{name}/resume")
    run = call(base_url, token, f"/pipelines/{name}/run")
    return {"reset": reset, "run": run}


def _build_dag() -> Any:
    """The DAG object, or None where Airflow is not installed."""
    try:
        from airflow.decorators import dag as airflow_dag  # type: ignore[import-not-found,unused-ignore]
        from airflow.decorators import task  # type: ignore[import-not-found,unused-ignore]
        from airflow.hooks.base import BaseHook  # type: ignore[import-not-found,unused-ignore]
        from airflow.models.param import Param  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None

    @airflow_dag(  # type: ignore[misc,untyped-decorator,unused-ignore]
        dag_id="junction_backfill",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=["junction"],
        params={
            "pipeline": Param("crm-leads", type="string"),
            "stream": Param("Lead", type="string"),
            "cursor": Param(None, type=["null", "object"]),
            "reason": Param("backfill from Airflow", type="string"),
        },
    )
    def junction_backfill() -> None:
        @task  # type: ignore[misc,untyped-decorator,unused-ignore]
        def run_backfill(**context: Any) -> dict[str, Any]:
            conn = BaseHook.get_connection(CONNECTION_ID)
            base_url = conn.host if "://" in conn.host else f"{conn.schema or 'http'}://{conn.host}"
            if conn.port:
                base_url = f"{base_url}:{conn.port}"
            token = fetch_token(base_url, conn.login, conn.password)
            p = context["params"]
            return backfill(base_url, token, p["pipeline"], p["stream"], p["cursor"], p["reason"])

        run_backfill()

    return junction_backfill()


dag = _build_dag()
