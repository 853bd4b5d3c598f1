"""Role-based access: every route declares a ``Policy`` dependency (deny by default).

Roles: ``admin`` (everything), ``operator`` (run and repair pipelines), ``viewer`` (read),
``ingest`` (push records and score).  A test walks the route table and fails for a route without a
policy, and the RBAC matrix tests are generated from the same table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from fastapi import Request

from junction.api.concurrency import InFlightGate
from junction.api.problems import ApiProblem

ROLES = ("admin", "operator", "viewer", "ingest")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a client id, its roles, and how it authenticated."""

    client_id: str
    roles: frozenset[str] = field(default_factory=frozenset)
    method: str = "anonymous"  # jwt | apikey | anonymous | signature
    rate_limit: str | None = None


ANONYMOUS = Principal("anonymous")


class Authenticator(Protocol):
    """Turns a request's credentials into a Principal, or raises AuthError."""

    async def authenticate(self, request: Request) -> Principal:
        """Return the caller; raise ``AuthError`` when credentials are missing or bad."""
        ...


class RateLimiter(Protocol):
    """Counts a caller's requests; raises RateLimitedError (429) over the limit."""

    async def hit(self, principal: Principal) -> None:
        """Count one request by ``principal``."""
        ...


async def count_request(request: Request, principal: Principal) -> None:
    """Hold one of the caller's in-flight slots, then count the request against its rate limit.

    Raises:
        ApiProblem: 429, the client has too many requests in flight.
        RateLimitedError: the client is over its rate limit (429).
    """
    gate: InFlightGate | None = getattr(request.app.state, "in_flight", None)
    if gate is not None:
        gate.enter_client(request.scope, principal.client_id)
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        await limiter.hit(principal)


class Policy:
    """A route's access rule, used as a FastAPI dependency that returns the caller."""

    def __init__(self, *roles: str, public: str | None = None) -> None:
        """``roles`` may call; ``public`` (a reason) opens the route without credentials."""
        unknown = set(roles) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}")
        if bool(roles) == bool(public):
            raise ValueError("a policy names roles or is public with a reason, not both")
        self.roles = frozenset(roles)
        self.public = public

    def __repr__(self) -> str:
        return f"Policy(public={self.public!r})" if self.public else f"Policy{tuple(self.roles)}"

    def allows(self, roles: frozenset[str]) -> bool:
        """Whether a caller with ``roles`` may use the route."""
        return self.public is not None or bool(self.roles & roles)

    async def __call__(self, request: Request) -> Principal:
        if self.public is not None:
            request.state.principal = ANONYMOUS
            return ANONYMOUS
        authenticator: Authenticator = request.app.state.authenticator
        principal = await authenticator.authenticate(request)
        request.state.principal = principal
        # count before the role check: a client probing routes it may not use is limited too
        await count_request(request, principal)
        if not self.allows(principal.roles):
            raise ApiProblem(
                403, "Forbidden", "this client's roles do not allow this action", code="forbidden"
            )
        return principal


# the policies routes use; keep the set small so the matrix stays readable
READ = Policy("admin", "operator", "viewer")
OPERATE = Policy("admin", "operator")
ADMIN = Policy("admin")
INGEST = Policy("admin", "operator", "ingest")
SCORE = Policy("admin", "operator", "ingest")


def public(reason: str) -> Policy:
    """A route open without credentials (health probes, the token endpoint, signed hooks)."""
    return Policy(public=reason)
