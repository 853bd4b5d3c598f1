"""The verifier registry: built-ins plus the ``junction.verifiers`` entry-point group.

Adding a verifier is one class (see ``base.Verifier``) plus one registration: a line in
``BUILTIN`` for the verifiers shipped here, or an entry point in an external package::

    [project.entry-points."junction.verifiers"]
    acme = "acme_junction.verifier:AcmeVerifier"

Loading is lazy (a verifier module is imported when a hook asks for it); two registrations of one
name that point at different classes are an error, as for connectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points

from pydantic import ValidationError

from junction.api.verifiers.base import Verifier, VerifierSettings
from junction.core.errors import ConfigError

GROUP = "junction.verifiers"

# the verifiers shipped with Junction ("module:Class", loaded on first use)
BUILTIN: dict[str, str] = {
    "standard_webhooks": "junction.api.verifiers.standard_webhooks:StandardWebhooksVerifier",
    "hubspot": "junction.api.verifiers.hubspot:HubSpotVerifier",
    "salesforce_outbound": "junction.api.verifiers.salesforce:SalesforceOutboundVerifier",
}


def _load(target: str) -> type[Verifier]:
    module, _, attr = target.partition(":")
    obj: type[Verifier] = getattr(import_module(module), attr)
    return obj


@dataclass
class VerifierRegistry:
    """An isolated view of the available verifiers (tests build their own with ``extra``)."""

    extra: dict[str, type[Verifier]] = field(default_factory=dict)
    _loaded: dict[str, type[Verifier]] = field(default_factory=dict)

    def _targets(self) -> dict[str, str]:
        found = dict(BUILTIN)
        for ep in entry_points(group=GROUP):
            if ep.name in found and found[ep.name] != ep.value:
                raise ConfigError(
                    f"two plugins register the verifier name {ep.name!r}",
                    details=f"{found[ep.name]} and {ep.value}",
                )
            found[ep.name] = ep.value
        return found

    def names(self) -> list[str]:
        """The sorted names of every available verifier."""
        return sorted(set(self._targets()) | set(self.extra))

    def get(self, name: str) -> type[Verifier]:
        """The verifier class registered as ``name``."""
        if name in self.extra:
            return self.extra[name]
        if name not in self._loaded:
            targets = self._targets()
            if name not in targets:
                known = ", ".join(sorted(set(targets) | set(self.extra)))
                raise ConfigError(f"unknown verifier {name!r} (known: {known})")
            self._loaded[name] = _load(targets[name])
        return self._loaded[name]

    def build(self, name: str, settings: VerifierSettings) -> Verifier:
        """Create verifier ``name`` for one hook; bad options or secrets raise ``ConfigError``."""
        cls = self.get(name)
        try:
            return cls(settings)
        except ValidationError as exc:
            # locations only: pydantic's messages may echo the (secret) input
            fields = ", ".join(
                ".".join(str(p) for p in e["loc"]) or "options" for e in exc.errors()
            )
            raise ConfigError(
                f"hook {settings.source}: invalid options for verifier {name!r} ({fields})"
            ) from None


default_verifiers = VerifierRegistry()
