"""The RBAC matrix, generated from the app's route table (never from a hand-kept list).

Every API route must declare exactly one ``Policy``; a public one must say why.  Then, for every
non-public route and method, each role calls it over real HTTP with a real token (path parameters
filled with dummy values, an empty JSON body): 403 exactly when the policy does not allow the
role, never 401 or 403 when it does, and 401 with a challenge when no credentials are sent.
Routes added later are covered without touching this file.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.convertors import FloatConvertor, IntegerConvertor, UUIDConvertor

from junction.api.policy import ROLES, Policy
from tests.api.harness import ApiHarness

# routes every build has; proves the walk sees the whole table, not an empty one
KNOWN = {("POST", "/api/v1/oauth/token"), ("GET", "/healthz"), ("GET", "/api/v1/audit")}


@dataclass(frozen=True)
class RouteCase:
    method: str
    path: str  # with dummy values filled in
    template: str
    policy: Policy

    @property
    def id(self) -> str:
        return f"{self.method} {self.template}"


def policies_in(dependant: Dependant) -> list[Policy]:
    """Every Policy in a route's dependency tree (router-level ones included)."""
    found: list[Policy] = []
    for dep in dependant.dependencies:
        if isinstance(dep.call, Policy):
            found.append(dep.call)
        found.extend(policies_in(dep))
    return found


def api_routes(app: FastAPI) -> Iterator[tuple[str, set[str], dict[str, object], Dependant]]:
    """(path template, methods, param convertors, dependant) of every API route."""
    for rc in iter_route_contexts(app.routes):
        if isinstance(rc.original_route, APIRoute):
            path = str(rc.path_format)
            yield path, set(rc.methods or ()), dict(rc.param_convertors), rc.dependant


def dummy(convertor: object) -> str:
    if isinstance(convertor, IntegerConvertor):
        return "1"
    if isinstance(convertor, FloatConvertor):
        return "1.0"
    if isinstance(convertor, UUIDConvertor):
        return str(uuid.UUID(int=1))
    return "1"


def route_cases(app: FastAPI) -> tuple[list[RouteCase], list[str]]:
    """The callable cases, and the problems found in the table itself."""
    cases: list[RouteCase] = []
    problems: list[str] = []
    for template, methods, convertors, dependant in api_routes(app):
        policies = policies_in(dependant)
        for method in sorted(methods):
            name = f"{method} {template}"
            if len(policies) != 1:
                problems.append(f"{name}: {len(policies)} Policy dependencies, need exactly one")
                continue
            policy = policies[0]
            if policy.public is not None:
                if len(policy.public.strip()) < 10:
                    problems.append(f"{name}: a public route must give a real reason")
                cases.append(RouteCase(method, template, template, policy))
                continue
            path = template
            for pname, conv in convertors.items():
                path = path.replace("{" + pname + "}", dummy(conv))
            cases.append(RouteCase(method, path, template, policy))
    return cases, problems


def test_every_route_declares_exactly_one_policy(api_sqlite: ApiHarness) -> None:
    cases, problems = route_cases(api_sqlite.app)
    seen = {(c.method, c.template) for c in cases}
    assert seen >= KNOWN, f"the route walk missed {KNOWN - seen}"
    assert not problems, "\n".join(problems)


def test_policy_objects_refuse_ambiguity() -> None:
    with pytest.raises(ValueError, match="unknown roles"):
        Policy("root")
    with pytest.raises(ValueError, match="not both"):
        Policy()
    with pytest.raises(ValueError, match="not both"):
        Policy("admin", public="and also public")


def _call(api: ApiHarness, case: RouteCase, headers: dict[str, str]) -> tuple[int, str, str]:
    with api.http() as h:
        r = h.request(case.method, case.path, json={}, headers=headers)
    return r.status_code, r.headers.get("content-type", ""), r.headers.get("www-authenticate", "")


def test_without_credentials_every_protected_route_is_401(api_sqlite: ApiHarness) -> None:
    cases, _ = route_cases(api_sqlite.app)
    protected = [c for c in cases if c.policy.public is None]
    assert protected
    failures = []
    for case in protected:
        status, ctype, challenge = _call(api_sqlite, case, {})
        if status != 401 or ctype != "application/problem+json" or not challenge:
            failures.append(f"{case.id}: {status} {ctype} challenge={challenge!r}")
    assert not failures, "\n".join(failures)


def test_role_matrix(api_sqlite: ApiHarness) -> None:
    cases, _ = route_cases(api_sqlite.app)
    protected = [c for c in cases if c.policy.public is None]
    headers = {role: api_sqlite.headers(role) for role in ROLES}
    failures = []
    for case in protected:
        for role in ROLES:
            allowed = case.policy.allows(frozenset({role}))
            status, ctype, _ = _call(api_sqlite, case, headers[role])
            if allowed and status in (401, 403):
                failures.append(f"{case.id} as {role}: {status}, but the policy allows it")
            elif allowed and status == 500:
                failures.append(f"{case.id} as {role}: 500 (an unhandled error)")
            elif not allowed and (status != 403 or ctype != "application/problem+json"):
                failures.append(f"{case.id} as {role}: {status} {ctype}, expected 403")
    assert not failures, "\n".join(failures)


def test_every_role_is_allowed_somewhere_and_denied_somewhere(api_sqlite: ApiHarness) -> None:
    # a matrix where a role passes everywhere (or nowhere) would prove little
    cases, _ = route_cases(api_sqlite.app)
    protected = [c for c in cases if c.policy.public is None]
    for role in ROLES:
        verdicts = {c.policy.allows(frozenset({role})) for c in protected}
        if role == "admin":
            assert verdicts == {True}, "admin is allowed everything"
        else:
            assert False in verdicts, f"{role} is allowed every route"
