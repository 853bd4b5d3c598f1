"""The OAuth2 token endpoint (client-credentials grant, RFC 6749 §4.4)."""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from pydantic import BaseModel

from junction.api.audit import audit_decision
from junction.api.auth import StoreAuthenticator
from junction.api.policy import Principal, public
from junction.api.problems import ApiProblem
from junction.core.errors import AuthError

router = APIRouter(tags=["auth"])
_FAILED = "client authentication failed"


class TokenResponse(BaseModel):
    """An access token (RFC 6749 §5.1)."""

    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, sep, pw = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, pw) if sep else None


def _oauth_error(status: int, error: str, detail: str) -> ApiProblem:
    headers = {"WWW-Authenticate": 'Basic realm="junction"'} if status == 401 else None
    return ApiProblem(
        status, "Token request failed", detail, code=error, headers=headers, extra={"error": error}
    )


def _deny(
    request: Request, client_id: str | None, reason: str, error: str, status: int, detail: str
) -> ApiProblem:
    # the attempted id is the actor (clipped, pseudonymized if it looks like an email); never
    # the secret.  Buffered: a flood of bad attempts must not turn into a flood of commits.
    audit_decision(
        request,
        "auth.token_denied",
        "oauth/token",
        {"reason": reason},
        actor=(client_id or "anonymous")[:64],
    )
    return _oauth_error(status, error, detail)


@router.post("/oauth/token", response_model=TokenResponse)
async def token(
    request: Request,
    _: Annotated[Principal, Depends(public("the token endpoint authenticates the client itself"))],
    grant_type: Annotated[str, Form(max_length=64)],
    client_id: Annotated[str | None, Form(max_length=256)] = None,
    client_secret: Annotated[str | None, Form(max_length=512)] = None,
) -> TokenResponse:
    """Exchange client credentials (form fields or HTTP Basic) for a short-lived access token."""
    basic = _basic(request)
    if basic is not None:
        client_id, client_secret = basic
    if grant_type != "client_credentials":
        raise _deny(
            request,
            client_id,
            "unsupported_grant_type",
            "unsupported_grant_type",
            400,
            "only client_credentials is supported",
        )
    if not client_id or not client_secret:
        raise _deny(
            request,
            client_id,
            "missing_credentials",
            "invalid_client",
            401,
            "client_id and client_secret are required",
        )
    authenticator: StoreAuthenticator = request.app.state.authenticator
    try:
        access, ttl = await asyncio.to_thread(authenticator.token_for, client_id, client_secret)
    except AuthError as exc:
        raise _deny(request, client_id, "bad_credentials", "invalid_client", 401, _FAILED) from exc
    audit_decision(request, "auth.token_issued", client_id, {"expires_in": ttl}, actor=client_id)
    return TokenResponse(access_token=access, expires_in=ttl)
