"""A real API server for tests: uvicorn on 127.0.0.1 in a thread, real store, real credentials."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml

from junction.api.app import create_app
from junction.api.context import ApiContext
from junction.pipeline.config import load_config
from junction.pipeline.hub import Hub
from junction.store.clients import ApiClient, ClientStore
from tests.fakes.server import serve_app

if TYPE_CHECKING:
    from fastapi import FastAPI

SIGNING_KEY = "test-signing-key-0123456789abcdefghijklmnop"
HOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

CONFIG = """\
store: "{store}"
models_dir: {models}
pipelines:
  leads:
    source: {{connector: csv_file, path: inbox/*.csv, settle_seconds: 0}}
    mapping: csv.lead
    workers: 0
    rules:
      - {{name: has_email, expr: "lead.email != null"}}
    scoring: {{model: lead-score}}
    routes:
      - when: "score.value >= 0.5"
        to: [webhook.sales]
channels:
  webhook.sales: {{url: "http://127.0.0.1:9/sales/", secret: "{hook_secret}", timeout_s: 2}}
api:
  signing_key: "{signing_key}"
  rate_limit: "{rate_limit}"
  hooks:
    partner: {{pipeline: leads, secret: "{hook_secret}", max_body_bytes: 65536}}
"""


def write_api_config(
    root: Path, *, store: str, models: Path, rate_limit: str = "1000/second", extra: str = ""
) -> Path:
    """A hub config with one scored pipeline, one webhook channel and one inbound hook."""
    (root / "inbox").mkdir(parents=True, exist_ok=True)
    path = root / "junction.yaml"
    path.write_text(
        CONFIG.format(
            store=store,
            models=models,
            hook_secret=HOOK_SECRET,
            signing_key=SIGNING_KEY,
            rate_limit=rate_limit,
        )
        + extra,
        encoding="utf-8",
    )
    return path


@dataclass
class ApiHarness:
    """A running app and ways to call it as any role."""

    base_url: str
    app: FastAPI
    ctx: ApiContext
    root: Path
    _tokens: dict[tuple[str, ...], str] = field(default_factory=dict)

    @property
    def clients(self) -> ClientStore:
        """The store's API clients."""
        return ClientStore(self.ctx.store)

    def http(self, **kw: Any) -> httpx.Client:
        """An HTTP client for the server."""
        return httpx.Client(base_url=self.base_url, timeout=kw.pop("timeout", 30), **kw)

    def metric(self, series: str) -> float:
        """One sample of the server's /metrics (0 when absent), read over HTTP as Prometheus
        does; ``series`` is the name with its labels, e.g. ``x_total{reason="shed"}``."""
        with self.http() as h:
            text = h.get("/metrics").text
        found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    def issue_token(self, client_id: str, secret: str) -> str:
        """An access token from the token endpoint (client-credentials grant)."""
        with self.http() as h:
            r = h.post(
                "/api/v1/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": client_id,
                    "client_secret": secret,
                },
            )
        r.raise_for_status()
        token: str = r.json()["access_token"]
        return token

    def new_client_token(
        self, name: str, roles: list[str], *, rate_limit: str | None = None
    ) -> tuple[ApiClient, str]:
        """A new oauth client with ``roles`` (its own counters and cache) and a token for it."""
        client, secret = self.clients.create(name, roles, rate_limit=rate_limit)
        return client, self.issue_token(client.id, secret)

    def token(self, *roles: str, rate_limit: str | None = None) -> str:
        """An access token for an oauth client with ``roles`` (one client per role set)."""
        key = tuple(sorted(roles)) + ((rate_limit,) if rate_limit else ())
        if key not in self._tokens:
            _, self._tokens[key] = self.new_client_token(
                f"test-{'-'.join(key)}", list(roles), rate_limit=rate_limit
            )
        return self._tokens[key]

    def headers(self, *roles: str) -> dict[str, str]:
        """``Authorization`` headers for a client with ``roles``."""
        return {"Authorization": f"Bearer {self.token(*roles)}"}

    def api_key(self, *roles: str) -> str:
        """A new API key with ``roles``."""
        _, key = self.clients.create("test-key", list(roles), kind="apikey")
        return key


@contextmanager
def running_api(config_path: Path) -> Iterator[ApiHarness]:
    """Load ``config_path``, build the app and serve it."""
    cfg = load_config(config_path)
    hub = Hub(cfg)
    ctx = ApiContext(cfg=cfg, hub=hub, config_path=config_path)
    app = create_app(ctx)
    try:
        with serve_app(app) as url:
            yield ApiHarness(url, app, ctx, config_path.parent)
    finally:
        hub.close()


@contextmanager
def running_channels_api(root: Path, store: str, channels: dict[str, Any]) -> Iterator[ApiHarness]:
    """The API over a config of only ``channels`` (no pipeline), e.g. for provider callbacks."""
    config = {
        "store": store,
        "models_dir": str(root / "state" / "models"),
        "channels": channels,
        "api": {"signing_key": SIGNING_KEY},
    }
    path = root / "junction.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with running_api(path) as h:
        yield h
