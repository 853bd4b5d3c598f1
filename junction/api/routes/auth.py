"""The OAuth2 token endpoint (client-credentials grant, RFC 6749 §4.4)."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from pydantic import BaseModel

from junction.api.auth import StoreAuthenticator
from junction.api.policy import Principal, public
from junction.api.problems import ApiProblem

router = APIRouter(tags=["auth"])


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


@router.post("/oauth/token", response_model=TokenResponse)
async def token(
    request: Request,
    _: Annotated[Principal, Depends(public("the token endpoint authenticates the client itself"))],
    grant_type: Annotated[str, Form()],
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
) -> TokenResponse:
    """Exchange client credentials (form fields or HTTP Basic) for a short-lived access token."""
    if grant_type != "client_credentials":
        raise _oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
    basic = _basic(request)
    if basic is not None:
        client_id, client_secret = basic
    if not client_id or not client_secret:
        raise _oauth_error(401, "invalid_client", "client_id and client_secret are required")
    authenticator: StoreAuthenticator = request.app.state.authenticator
    try:
        access, ttl = authenticator.token_for(client_id, client_secret)
    except Exception as exc:
        if getattr(exc, "code", "") == "invalid_client":
            raise _oauth_error(401, "invalid_client", "client authentication failed") from exc
        raise
    return TokenResponse(access_token=access, expires_in=ttl)
