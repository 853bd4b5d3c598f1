"""The committed OpenAPI document (``docs/openapi.json``): generated from the app, checked in CI."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import orjson
from pydantic import SecretStr

from junction.api.app import create_app
from junction.api.context import ApiContext
from junction.pipeline.config import ApiConfig, HubConfig
from junction.pipeline.hub import Hub

DEFAULT_PATH = Path("docs/openapi.json")


def build_openapi() -> dict[str, Any]:
    """The OpenAPI document of an app with no pipelines (routes do not depend on the config)."""
    with tempfile.TemporaryDirectory(prefix="junction-openapi-") as tmp:
        cfg = HubConfig(
            store=f"sqlite:///{tmp}/openapi.db",
            models_dir=f"{tmp}/models",
            api=ApiConfig(signing_key=SecretStr("openapi-export-" + "k" * 32)),
        )
        hub = Hub(cfg)
        try:
            return create_app(ApiContext(cfg=cfg, hub=hub)).openapi()
        finally:
            hub.close()


def render(spec: dict[str, Any]) -> bytes:
    """Stable bytes for the committed file."""
    return orjson.dumps(spec, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def export_openapi(path: Path = DEFAULT_PATH, *, check_only: bool = False) -> bool:
    """Write the document, or with ``check_only`` report whether the committed copy is stale."""
    data = render(build_openapi())
    current = path.read_bytes() if path.exists() else None
    if check_only:
        return current != data
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return False
