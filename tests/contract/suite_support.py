"""What both contract suites (channels and connectors) do alike: find a fixture, honour waivers,
build a registered plugin from its options."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from junction.core.registry import Registry


def fixture_module(what: str, folder: str, name: str) -> Any:
    """The fixture module ``tests/contract/<folder>/<name>.py``; fail the test when it is missing.

    Args:
        what: What is registered, for the failure message (``channel``, ``connector``).
        folder: The fixture folder under ``tests/contract``.
        name: The registered name (the module's name).
    """
    module = f"tests.contract.{folder}.{name}"
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        pytest.fail(f"{what} {name!r} is registered but has no tests/contract/{folder}/{name}.py")


@contextmanager
def open_contract(what: str, folder: str, name: str, tmp_path: Path) -> Iterator[Any]:
    """The contract inputs of ``name``'s fixture module, open for one test."""
    with fixture_module(what, folder, name).contract(tmp_path) as contract:
        yield contract


def skip_if_waived(waivers: Mapping[str, str], check: str) -> None:
    """Skip the test when the fixture waives ``check``; a waiver must name an issue (``#N``)."""
    if check in waivers:
        reason = waivers[check]
        assert "#" in reason, f"waiver for {check} needs an issue id (#N): {reason}"
        pytest.skip(f"waived: {reason}")


def build_plugin(registry: Registry, group: str, name: str, options: dict[str, Any]) -> Any:
    """An instance of the plugin ``name`` of ``group``, its options validated by its model."""
    cls = registry.get(group, name)
    return cls(cls.config_model.model_validate(options))
