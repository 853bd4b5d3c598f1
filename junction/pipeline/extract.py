"""Extract stage: build a pipeline's source connector from its configuration."""

from __future__ import annotations

from connectors.base import SourceConnector
from junction.core.errors import ConfigError
from junction.core.registry import Registry, default_registry
from junction.pipeline.config import PipelineConfig


def build_connector(
    name: str, cfg: PipelineConfig, registry: Registry = default_registry
) -> SourceConnector:
    """Instantiate pipeline ``name``'s connector; invalid options are a ConfigError."""
    cls = registry.get("connectors", cfg.source.connector)
    options = {"batch_size": cfg.batch_size, **cfg.source.connector_options()}
    try:
        conn_cfg = cls.config_model.model_validate(options)
    except ValueError as exc:
        raise ConfigError(f"pipeline {name}: source options are invalid", details=str(exc)) from exc
    connector: SourceConnector = cls(conn_cfg)
    return connector
