"""Plugin registry: connectors, channels and scorers found through entry points.

Built-in plugins register through the same entry points as external ones (see pyproject.toml).
Loading is lazy: a plugin module is imported only when it is asked for.  A plugin that fails to
load is reported, not fatal to the others.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from junction.core.errors import ConfigError

GROUPS = {
    "connectors": "junction.connectors",
    "channels": "junction.channels",
    "scorers": "junction.scorers",
}


@dataclass
class PluginInfo:
    """One registered plugin as the registry sees it."""

    kind: str
    name: str
    target: str
    distribution: str | None
    error: str | None = None


@dataclass
class Registry:
    """An isolated view of the installed plugins (tests build their own)."""

    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    _loaded: dict[tuple[str, str], Any] = field(default_factory=dict)

    def _entry_points(self, kind: str) -> dict[str, EntryPoint]:
        group = GROUPS[kind]
        found: dict[str, EntryPoint] = {}
        for ep in entry_points(group=group):
            if ep.name in found and found[ep.name].value != ep.value:
                raise ConfigError(
                    f"two plugins register the {kind[:-1]} name {ep.name!r}",
                    details=f"{found[ep.name].value} and {ep.value}",
                )
            found[ep.name] = ep
        return found

    def names(self, kind: str) -> list[str]:
        """Return the sorted names registered for ``kind``."""
        return sorted(set(self._entry_points(kind)) | set(self.extra.get(kind, {})))

    def get(self, kind: str, name: str) -> Any:
        """Load and return the plugin class ``name`` of ``kind``."""
        if name in self.extra.get(kind, {}):
            return self.extra[kind][name]
        key = (kind, name)
        if key in self._loaded:
            return self._loaded[key]
        eps = self._entry_points(kind)
        if name not in eps:
            known = ", ".join(sorted(eps)) or "none"
            close = difflib.get_close_matches(name, list(eps), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown {kind[:-1]} {name!r}{hint} (known: {known})")
        obj = eps[name].load()
        self._loaded[key] = obj
        return obj

    def describe(self, kind: str) -> list[PluginInfo]:
        """List the plugins of ``kind`` with their load status."""
        out: list[PluginInfo] = []
        for name, ep in sorted(self._entry_points(kind).items()):
            dist = ep.dist.name if ep.dist is not None else None
            info = PluginInfo(kind, name, ep.value, dist)
            try:
                self.get(kind, name)
            except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, not fatal
                info.error = f"{type(exc).__name__}: {exc}"
            out.append(info)
        for name, obj in sorted(self.extra.get(kind, {}).items()):
            out.append(PluginInfo(kind, name, f"{obj.__module__}:{obj.__qualname__}", None))
        return out


default_registry = Registry()
