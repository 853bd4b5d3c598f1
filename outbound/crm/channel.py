"""The ``crm`` channel: batched, idempotent write-back of scores to Salesforce or HubSpot.

Each delivery is one scored record (the outbox event).  The channel takes the configured values
from it (score, grade, top factors, ...), addresses the CRM record by its id or an external id, and
collects the deliveries that arrive within ``batch_window_s`` into one CRM call of at most the
backend's ``max_batch`` items (HubSpot batch update: 100; Salesforce sObject Collections: 200).
Every delivery still gets its own outcome: a partial failure (HubSpot's 207, a Salesforce row
error) fails only its item, and a failure of the whole call fails every item with the same typed
error, so the delivery worker's one retry policy applies per delivery.

Writing the same values twice leaves the CRM as it was, so a retried delivery is harmless.  Two
deliveries for one CRM record in the same window are written in arrival order, in separate calls,
as CRMs refuse a batch that names one record twice.
"""

from __future__ import annotations

import asyncio
import time
from importlib import import_module
from typing import Any, ClassVar

import orjson
from pydantic import ValidationError

from junction.core.errors import ConfigError, FatalError, InternalError, JunctionError
from junction.core.logging import get_logger
from outbound.base import Delivery, Receipt
from outbound.crm.base import WriteBack, WriteBackend, WriteResult
from outbound.crm.config import CrmWriteBackConfig

log = get_logger(__name__)

BACKENDS = {
    "salesforce": "outbound.crm.salesforce:SalesforceWriteBackend",
    "hubspot": "outbound.crm.hubspot:HubSpotWriteBackend",
}


def load_backend(system: str) -> type[WriteBackend]:
    """The write-back backend class of ``system`` (imported on first use)."""
    target = BACKENDS.get(system)
    if target is None:
        raise ConfigError(f"no write-back for CRM {system!r}")
    module, _, attr = target.partition(":")
    cls: type[WriteBackend] = getattr(import_module(module), attr)
    return cls


def _connection_error(system: str, exc: ValidationError) -> ConfigError:
    # pydantic's own text echoes the input, i.e. the credentials: keep locations and reasons
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'connection'}: {err['msg']}"
        for err in exc.errors(include_input=False)
    )
    return ConfigError(f"invalid {system} connection for the crm channel: {problems}")


def _factors_text(factors: Any, limit: int) -> str:
    parts = []
    for item in (factors or [])[:limit]:
        if isinstance(item, list | tuple) and len(item) == 2:
            parts.append(f"{item[0]} {float(item[1]):+.2f}")
    return "; ".join(parts)


class CrmWriteBackChannel:
    """Writes scored records back to their CRM, batching concurrent deliveries."""

    name: ClassVar[str] = "crm"
    config_model: ClassVar[type[CrmWriteBackConfig]] = CrmWriteBackConfig

    def __init__(self, config: CrmWriteBackConfig, backend: WriteBackend | None = None) -> None:
        """Build the backend of ``config.system`` (or use ``backend``, for tests)."""
        self.config = config
        if backend is None:
            cls = load_backend(config.system)
            try:
                options = cls.options_model.model_validate(config.connection)
            except ValidationError as exc:
                raise _connection_error(config.system, exc) from None
            backend = cls(options, match=config.match)  # type: ignore[call-arg]
        self.backend = backend
        self._pending: list[tuple[WriteBack, asyncio.Future[WriteResult]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def max_in_flight(self) -> int:
        """Deliveries the worker keeps in flight here (one full CRM call's worth)."""
        return self.backend.max_batch

    # -- one delivery ------------------------------------------------------------------------

    def item_of(self, delivery: Delivery) -> WriteBack:
        """The CRM write one delivery asks for (``FatalError`` when it carries nothing to write)."""
        try:
            event = orjson.loads(delivery.payload)
        except orjson.JSONDecodeError:
            raise FatalError("the delivery is not a JSON event", code="bad_payload") from None
        cfg = self.config
        target = self._value(event, cfg.target)
        if target in (None, ""):
            raise FatalError(
                f"the delivery has no {cfg.target} to find the CRM record by",
                code="no_crm_target",
            )
        fields: dict[str, Any] = {}
        for src, dest in cfg.fields.items():
            value = self._value(event, src)
            if value is not None:
                fields[dest] = value
        if not fields:
            raise FatalError(
                "the delivery carries none of the values to write back (is it scored?)",
                code="nothing_to_write",
            )
        return WriteBack(delivery.delivery_id, cfg.object, str(target), fields)

    def _value(self, event: dict[str, Any], path: str) -> Any:
        score = event.get("score") or {}
        if path == "source_key":
            return event.get("source_key")
        if path.startswith("record."):
            return (event.get("record") or {}).get(path[len("record.") :])
        if not score:
            return None
        if path == "score.value_pct":
            return round(float(score["value"]) * 100)
        if path == "score.top_factors":
            text = _factors_text(score.get("top_factors"), self.config.factors_limit)
            return text[: self.config.text_max] or None
        if path == "score.scored_at":
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return score.get(path[len("score.") :])

    async def send(self, delivery: Delivery) -> Receipt:
        """Queue the delivery's write into the current batch and wait for its own outcome."""
        if self._closed:
            raise FatalError("the channel is closed", code="channel_closed")
        item = self.item_of(delivery)
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WriteResult] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self.backend.max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.config.batch_window_s, self._flush)
        result = await future
        if result.error is not None:
            raise result.error
        return Receipt(
            delivery_id=delivery.delivery_id,
            status_code=200,
            remote_id=result.remote_id,
            duration_ms=(time.perf_counter() - started) * 1000,
            detail=dict(result.detail),
        )

    # -- batches -----------------------------------------------------------------------------

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            take = self._pending[: self.backend.max_batch]
            del self._pending[: len(take)]
            task = asyncio.get_running_loop().create_task(self._write(take))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _write(self, batch: list[tuple[WriteBack, asyncio.Future[WriteResult]]]) -> None:
        # one CRM call per round: a record named twice goes to the next round, in arrival order
        rounds: list[list[tuple[WriteBack, asyncio.Future[WriteResult]]]] = []
        for entry in batch:
            for r in rounds:
                if all(e[0].target != entry[0].target for e in r):
                    r.append(entry)
                    break
            else:
                rounds.append([entry])
        for r in rounds:
            await self._write_round(r)

    async def _write_round(
        self, batch: list[tuple[WriteBack, asyncio.Future[WriteResult]]]
    ) -> None:
        items = [item for item, _ in batch]
        try:
            results = await asyncio.to_thread(self.backend.write, items)
            if len(results) != len(items):
                raise InternalError(
                    "the CRM write-back returned a different number of results",
                    details=f"{len(results)} results for {len(items)} items",
                )
        except FatalError as exc:
            if len(batch) > 1:
                # the CRM refused the whole call (e.g. one record's bad value): halve the batch
                # until the refused records stand alone, so the others are still written
                half = len(batch) // 2
                await self._write_round(batch[:half])
                await self._write_round(batch[half:])
                return
            self._fail_all(batch, exc, len(items))
            return
        except JunctionError as exc:
            self._fail_all(batch, exc, len(items))
            return
        except Exception as exc:  # noqa: BLE001 - a stage boundary: classify, never lose
            err = InternalError("the CRM write-back failed unexpectedly", details=repr(exc))
            self._fail_all(batch, err, len(items))
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    def _fail_all(
        self,
        batch: list[tuple[WriteBack, asyncio.Future[WriteResult]]],
        exc: JunctionError,
        n: int,
    ) -> None:
        log.warning(
            "crm write-back failed", system=self.config.system, items=n, error=type(exc).__name__
        )
        for _, future in batch:
            if not future.done():
                future.set_exception(exc)

    async def aclose(self) -> None:
        """Write what is queued, then release the CRM session; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._pending:
            self._flush()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self.backend.close)
