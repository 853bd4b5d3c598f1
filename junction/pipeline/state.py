"""Where the hub keeps the keys it generates (API signing key, pseudonym key)."""

from __future__ import annotations

from pathlib import Path

from junction.pipeline.config import HubConfig


def state_dir(cfg: HubConfig) -> Path:
    """Where the hub keeps its generated keys: the models folder's parent."""
    return Path(cfg.models_dir).parent
