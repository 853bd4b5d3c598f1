"""In-flight limits: a cap per client, a cap per instance, and load shedding before the cap.

The rate limit (``ratelimit.py``) bounds how many requests a client *starts* per second; this
module bounds how many are *being served* at once, so slow requests (a store under a long lock,
a big export) cannot pile up without limit.  In the manner of Stripe's concurrent-requests
limiter and fleet-usage load shedder, for one instance (each replica sheds its own load):

* **probes** (``/healthz``, ``/readyz``, ``/metrics``): always admitted, not counted;
* **ingestion and authentication** (signed hooks, provider callbacks, the CommerceML exchange,
  ``POST`` records, scoring, outcomes, the token endpoint, the dashboard's login): admitted while
  the instance serves fewer than ``max_in_flight``, else 503 ``overloaded`` at once;
* **everything else** (listings, exports, operations, the dashboard): admitted while it serves
  fewer than ``shed_ratio`` x ``max_in_flight``, else 503 ``shed`` at once;
* **per client**: an authenticated client may have ``client_max_in_flight`` requests in flight;
  the next gets 429 ``too_many_concurrent`` at once.

The last ``1 - shed_ratio`` of the capacity is thus reserved for ingestion and authentication:
when listings and exports crowd an instance, records still come in and clients still log in.
Every refusal is a problem+json answer with ``Retry-After: 1``, sent before anything is stored
(a 503 even before the request's body is read), so a client that retries (with its
Idempotency-Key) loses nothing.

The counts live on the event loop (every change happens there, between awaits, so no lock is
needed); the per-client slot is taken by the route's ``Policy`` once the caller is known and
given back by the middleware when the response has been sent, whatever happened in between.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from junction.api.problems import ApiProblem, answer
from junction.api.schemas import problem

RETRY_AFTER_S = 1
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
# ingestion and authentication, reserved capacity: any method under these prefixes ...
CRITICAL_PREFIXES = ("/hooks/", "/callbacks/", "/exchange/commerceml/")
# ... and these POSTs (``{api}`` is the API's prefix)
CRITICAL_POSTS = (
    "{api}/records/",
    "{api}/score",
    "{api}/outcomes",
    "{api}/oauth/token",
    "/ui/login",
)
_ADMITTED = "junction.in_flight"  # scope state: the middleware counted this request
_CLIENT = "junction.client_slot"  # scope state: the client whose slot this request holds


class InFlightGate:
    """What one API instance is serving now, and whether it may take one request more."""

    def __init__(
        self,
        max_in_flight: int,
        shed_ratio: float,
        client_max_in_flight: int,
        *,
        api_prefix: str = "/api/v1",
    ) -> None:
        """``shed_ratio`` of ``max_in_flight`` (at least one request) is open to every route."""
        self.max_in_flight = max_in_flight
        self.shed_at = max(1, math.floor(max_in_flight * shed_ratio))
        self.client_max = client_max_in_flight
        self.in_flight = 0
        self.per_client: dict[str, int] = {}
        self.refused: Counter[str] = Counter()
        self._posts = tuple(p.format(api=api_prefix) for p in CRITICAL_POSTS)

    @staticmethod
    def is_probe(path: str) -> bool:
        """Probes are neither counted nor refused: an orchestrator must see an instance's state."""
        return path in PROBES

    def is_critical(self, method: str, path: str) -> bool:
        """Ingestion or authentication, which keeps the reserved capacity."""
        if path.startswith(CRITICAL_PREFIXES):
            return True
        return method == "POST" and path.startswith(self._posts)

    def enter(self, scope: Scope) -> ApiProblem | None:
        """Count a request in, or return the 503 that refuses it."""
        critical = self.is_critical(scope.get("method", "GET"), scope.get("path", ""))
        if self.in_flight >= self.max_in_flight:
            return self._refuse(503, "overloaded", "the service is at its capacity")
        if not critical and self.in_flight >= self.shed_at:
            return self._refuse(
                503, "shed", "the service is busy; capacity is kept for ingestion now"
            )
        self.in_flight += 1
        scope.setdefault("state", {})[_ADMITTED] = True
        return None

    def enter_client(self, scope: Scope, client_id: str) -> None:
        """Take a slot of ``client_id`` for this request (once; only for counted requests).

        Raises:
            ApiProblem: 429, the client already has ``client_max_in_flight`` requests in flight.
        """
        state = scope.setdefault("state", {})
        if not state.get(_ADMITTED) or _CLIENT in state:
            return
        held = self.per_client.get(client_id, 0)
        if held >= self.client_max:
            raise self._refuse(
                429,
                "client_limit",
                "this client has too many requests in flight; wait for one to finish",
                code="too_many_concurrent",
            )
        self.per_client[client_id] = held + 1
        state[_CLIENT] = client_id

    def leave(self, scope: Scope) -> None:
        """Give back the request's place and its client's slot."""
        state = scope.get("state", {})
        if not state.pop(_ADMITTED, False):
            return
        self.in_flight -= 1
        client_id = state.pop(_CLIENT, None)
        if client_id is not None:
            left = self.per_client[client_id] - 1
            if left:
                self.per_client[client_id] = left
            else:
                del self.per_client[client_id]

    def refused_counts(self) -> Mapping[str, int]:
        """Requests refused since start, by reason."""
        return dict(self.refused)

    def _refuse(self, status: int, reason: str, detail: str, *, code: str = "") -> ApiProblem:
        self.refused[reason] += 1
        title = "Too many requests in flight" if status == 429 else "Service overloaded"
        return ApiProblem(
            status,
            title,
            detail,
            code=code or reason,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )


def document_limits(schema: dict[str, Any], *, api_prefix: str, token_path: str) -> None:
    """Add the answers the limits may give to every operation of an OpenAPI ``schema``.

    Any operation but a probe may be refused with 503 (``overloaded``, ``shed``); an
    authenticated one (under ``api_prefix``, but the token endpoint) also with 429 (the
    client's in-flight or rate limit).
    """
    busy = problem(
        "Overloaded or shedding (the instance's in-flight limits), or a dependency is down: "
        "retry after Retry-After seconds."
    )
    limited = problem(
        "Too many requests: the client's rate limit or in-flight limit; retry after "
        "Retry-After seconds."
    )
    for path, operations in schema.get("paths", {}).items():
        if path in PROBES:
            continue
        authenticated = path.startswith(api_prefix + "/") and path != token_path
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.setdefault("503", busy)
            if authenticated:
                responses.setdefault("429", limited)


class InFlightMiddleware:
    """Admit each HTTP request through an :class:`InFlightGate` and count it out at the end."""

    def __init__(self, app: ASGIApp, *, gate: InFlightGate) -> None:
        """Refuse with the gate's 503 before the app (and its body reading) runs."""
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.gate.is_probe(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        refusal = self.gate.enter(scope)
        if refusal is not None:
            response = answer(refusal, scope.get("state", {}).get("request_id"))
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.gate.leave(scope)
