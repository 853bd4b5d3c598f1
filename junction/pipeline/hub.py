"""The hub: one configuration's store, pipelines and delivery worker, wired together."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from junction.core import tracing
from junction.core.errors import AuthError, ConfigError, RetryableError
from junction.core.registry import Registry, default_registry
from junction.pipeline.config import HubConfig, TracingConfig, load_config
from junction.pipeline.gates import SendGate, build_gates
from junction.pipeline.hygiene_sweeps import hygiene_sweeps
from junction.pipeline.runner import PipelineRunner, Progress, RunSummary
from junction.pipeline.state import state_dir
from junction.store.events import AlertPolicy
from junction.store.repo import Store

if TYPE_CHECKING:
    from junction.pipeline.deliver import DeliveryStats


def configure_tracing(t: TracingConfig) -> bool:
    """Configure this process's tracing from a ``tracing:`` section; return whether it is on.

    ``exporter: none`` leaves tracing as the process has it (a host or a test may have
    configured it).

    Raises:
        ConfigError: An exporter is asked for but the ``tracing`` extra is not installed.
    """
    if t.exporter != "none":
        tracing.configure(
            t.exporter,
            endpoint=t.endpoint,
            service_name=t.service_name,
            sample_ratio=t.sample_ratio,
        )
    return tracing.enabled()


class Hub:
    """Everything one configuration file describes, ready to run."""

    def __init__(self, cfg: HubConfig, registry: Registry = default_registry) -> None:
        """Open the store; pipelines and channels are built lazily."""
        self.cfg = cfg
        self.registry = registry
        self.store = Store.open(cfg.store)
        if cfg.privacy is not None and cfg.privacy.encrypt:
            from junction.store.crypto_rows import enable_privacy

            enable_privacy(self.store, kek=cfg.privacy.kek, key_cache=cfg.privacy.key_cache)
        configure_tracing(cfg.tracing)
        self._runners: dict[str, PipelineRunner] = {}
        self._gates: list[SendGate] | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> Hub:
        """Load a configuration file and open its hub."""
        return cls(load_config(path))

    def runner(self, name: str) -> PipelineRunner:
        """The runner of pipeline ``name`` (compiled once)."""
        if name not in self.cfg.pipelines:
            raise ConfigError(f"no pipeline named {name!r}")
        if name not in self._runners:
            self._runners[name] = PipelineRunner(
                name, self.cfg.pipelines[name], self.cfg, self.store, self.registry
            )
        return self._runners[name]

    def run_once(
        self, progress: Progress | None = None, *, keep_going: bool = False
    ) -> list[RunSummary]:
        """Run every pipeline once over its ready inputs.

        With ``keep_going``, a pipeline whose source is down, rate limiting or refusing its
        credentials (``RetryableError``, ``AuthError``) is reported in its summary's ``errors``
        and the others still run; its run is recorded as failed and its cursor stays after the
        last committed batch, so the next run resumes there.  Other errors still raise.
        """
        out = []
        for name in self.cfg.pipelines:
            try:
                out.append(self.runner(name).run_once(progress))
            except (RetryableError, AuthError) as exc:
                if not keep_going:
                    raise
                failed = RunSummary(name, 0)
                failed.errors.append(f"{type(exc).__name__}: {exc.user_message}")
                out.append(failed)
        return out

    def deliver(self, *, drain_wait_s: float = 0.0) -> DeliveryStats:
        """Send what is due, waiting up to ``drain_wait_s`` for retries that fall due soon."""
        # imported here: a hub that only ingests (a file run, the bench) keeps aiohttp and the
        # channels out of its memory (~9 MB)
        from junction.pipeline.deliver import DeliveryWorker, build_channels
        from junction.store.channel_secrets import StoreSigningKeys

        async def go() -> DeliveryStats:
            worker = DeliveryWorker(
                self.store,
                build_channels(
                    self.cfg.channels,
                    self.registry,
                    egress=self.cfg.egress,
                    signing_keys=StoreSigningKeys(self.store),
                ),
                self.cfg.delivery,
                **self.delivery_options(),
            )
            try:
                return await worker.run(drain_wait_s=drain_wait_s)
            finally:
                await worker.aclose()

        return asyncio.run(go())

    def delivery_options(self) -> dict[str, Any]:
        """The delivery worker's options from the config: gates, routes, sweeps, alerts, caps."""
        from junction.pipeline.deliver import channel_limits  # see deliver()

        if self._gates is None:
            self._gates = build_gates(self.cfg, self.store, state_dir(self.cfg))
        return {
            "gates": self._gates,
            "routes": {
                name: {route.key(i): route for i, route in enumerate(p.routes)}
                for name, p in self.cfg.pipelines.items()
            },
            "sweeps": hygiene_sweeps(self.store, self.cfg.pipelines),  # digests, escalations
            "alerts": AlertPolicy.of(self.cfg.alerts.to, self.cfg.alerts.kinds),
            "limits": channel_limits(self.cfg.channels),
        }

    def close(self) -> None:
        """Release connectors and the store."""
        for r in self._runners.values():
            r.close()
        self.store.close()
