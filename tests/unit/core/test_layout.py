"""The generic top-level package names resolve to this repository, not to something installed."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from junction.core.registry import Registry

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "name", ["connectors", "mappings", "scoring", "outbound", "schemas", "junction"]
)
def test_top_level_names_resolve_to_this_repo(name: str) -> None:
    mod = importlib.import_module(name)
    assert mod.__file__ is not None
    assert Path(mod.__file__).resolve().is_relative_to(REPO), mod.__file__


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("connectors", "csv_file"),
        ("connectors", "xml_file"),
        ("channels", "webhook"),
        ("scorers", "sklearn_lead"),
    ],
)
def test_builtin_plugins_register_through_entry_points(kind: str, name: str) -> None:
    reg = Registry()
    assert name in reg.names(kind)
    cls = reg.get(kind, name)
    assert Path(cls.__module__.replace(".", "/")).parts[0] in {"connectors", "outbound", "scoring"}


def test_unknown_plugin_is_a_config_error() -> None:
    from junction.core.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown connector 'nope'"):
        Registry().get("connectors", "nope")
