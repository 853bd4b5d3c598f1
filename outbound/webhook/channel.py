"""The webhook channel: signed HTTP POSTs per the Standard Webhooks spec, over one aiohttp session.

One attempt per ``send``: the channel classifies the answer (see ``classify``) and never retries;
the delivery worker owns the retry policy.  Every attempt carries the same ``webhook-id`` (the
delivery's idempotency key) and a fresh ``webhook-timestamp`` and signature, so receivers can dedupe
retries.

A channel given a ``SigningKeySource`` (``outbound.signing_keys``) asks it for the keys of
the delivery's channel before each send: once a secret was rotated through the store, the store's
secrets sign instead of the config's (ADR-0023).

Every request goes through the egress policy (``outbound.egress``): the URL's shape is checked at
construction, an IP-literal host before each send, and a host name on every resolution, so the
connection only ever goes to an address that was checked.
"""

from __future__ import annotations

import base64
import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import aiohttp
from yarl import URL

from junction.core.errors import InternalError
from outbound.base import Delivery, Receipt
from outbound.config_errors import validate_config
from outbound.delivery_headers import refuse_reserved
from outbound.egress import EgressPolicy, ip_literal
from outbound.http_pool import (
    BODY_EXCERPT_CHARS,
    MAX_BODY_READ,
    HttpPool,
    read_capped,
    user_agent,
)
from outbound.lifecycle import ClosesOnExit
from outbound.signing_keys import SigningKey, SigningKeySource
from outbound.webhook.classify import ABORT_HEADER, classify_exception, classify_response
from outbound.webhook.config import RESERVED_HEADERS, WebhookConfig, secret_key_bytes


class WebhookChannel(ClosesOnExit):
    """Deliver to one HTTP endpoint, signed with every active secret of its config.

    Args:
        config: The endpoint config, or a mapping validated into one.
        clock: Returns the Unix time used for ``webhook-timestamp`` and to expire rotated-out
            secrets (tests inject one).
        egress: The egress policy (SSRF protection); None reads ``JUNCTION_EGRESS_ALLOW`` only.
        signing_keys: Rotated keys by channel name (the store's); None, or None for a channel,
            signs with the config's secrets.

    Raises:
        ConfigError: ``config`` is a mapping that does not validate.
        InvalidUrlError: The URL's scheme, userinfo or port is refused.
    """

    name: ClassVar[str] = "webhook"
    config_model: ClassVar[type[WebhookConfig]] = WebhookConfig
    # build_channels passes the hub's egress policy to channels that declare this
    uses_egress: ClassVar[bool] = True
    # ... and its signing-key source (secrets rotated through the store) to those that declare this
    uses_signing_keys: ClassVar[bool] = True

    def __init__(
        self,
        config: WebhookConfig | Mapping[str, Any],
        *,
        clock: Callable[[], float] = time.time,
        egress: EgressPolicy | None = None,
        signing_keys: SigningKeySource | None = None,
    ) -> None:
        self._egress = EgressPolicy.from_env() if egress is None else egress
        if not isinstance(config, WebhookConfig):
            raw_url = config.get("url")
            if isinstance(raw_url, str):
                # a typed InvalidUrlError for file://, gopher://, user:pw@ before pydantic's text
                self._egress.check_url(raw_url, check_literal=False)
        self.config = config = validate_config(WebhookConfig, config, kind="webhook")
        self._clock = clock
        self._url = self._egress.check_url(URL(str(config.url)), check_literal=False)
        # aiohttp connects to an IP literal without resolving it: send() checks it instead
        self._literal = ip_literal(self._url.host or "")
        # the policy is immutable, so the verdict on a literal is decided once (sends refuse it)
        self._literal_ok = self._literal is None or self._egress.allows(self._literal)
        # one HMAC key per signing secret (with its expiry), decoded once here
        self._signing_keys = signing_keys
        self._keys: list[SigningKey] = [
            (secret_key_bytes(secret), expires_at)
            for secret, expires_at in config.signing_secrets()
        ]
        self._base_headers = {
            **config.static_headers(),
            "content-type": "application/json",
            "user-agent": user_agent(),
        }
        self._pool = HttpPool(
            self._egress,
            kind="webhook",
            max_connections=config.max_connections,
            timeout_s=config.timeout_s,
        )

    @property
    def _session(self) -> aiohttp.ClientSession | None:
        return self._pool.session

    def _headers(
        self, delivery: Delivery, timestamp: int, keys: Sequence[SigningKey] | None = None
    ) -> dict[str, str]:
        msg_id = delivery.delivery_id
        if not msg_id or "." in msg_id or not msg_id.isprintable() or " " in msg_id:
            # the signed string is "id.timestamp.body": a '.' in the id makes it ambiguous
            raise InternalError(
                "delivery_id is not a valid webhook-id (empty, or has '.', spaces or controls)",
                context={"channel": delivery.channel},
            )
        try:
            delivery.payload.decode("utf-8")
        except UnicodeDecodeError:
            raise InternalError(
                "delivery payload is not UTF-8 JSON", context={"channel": delivery.channel}
            ) from None
        # Standard Webhooks v1: base64(HMAC-SHA256(key, "id.timestamp.body")), one per secret;
        # a rotated-out secret signs until its expiry, judged by this attempt's clock
        signed = f"{msg_id}.{timestamp}.".encode() + delivery.payload
        signature = " ".join(
            "v1," + base64.b64encode(hmac.digest(key, signed, "sha256")).decode("ascii")
            for key, expires_at in (self._keys if keys is None else keys)
            if expires_at is None or timestamp < expires_at
        )
        headers = self._base_headers.copy()
        if delivery.headers:
            refuse_reserved(delivery, RESERVED_HEADERS)
            if any(ch in v for v in delivery.headers.values() for ch in "\r\n\0"):
                raise InternalError(
                    "a delivery header value has a control character",
                    context={"channel": delivery.channel},
                )
            headers.update(delivery.headers)
        headers["webhook-id"] = msg_id
        headers["webhook-timestamp"] = str(timestamp)
        headers["webhook-signature"] = signature
        return headers

    async def send(self, delivery: Delivery) -> Receipt:
        """POST one delivery and classify the answer.

        Args:
            delivery: The message; ``delivery_id`` becomes ``webhook-id`` and must not contain '.'.

        Returns:
            A Receipt for a 2xx answer, with ``detail["body_excerpt"]`` (at most 1 KiB).

        Raises:
            InternalError: The delivery id or payload cannot be signed.
            ConfigError: The signing-key source cannot open the channel's rotated secrets (e.g.
                the store's key-encryption key is missing); nothing was sent.
            BlockedAddressError: The egress policy refuses the address (an IP literal, or every
                address the host name resolved to); nothing was sent.
            EndpointGoneError: 410.
            FatalError: Other 4xx, or the receiver sent ``webhook-delivery: abort-message``.
            RateLimitedError: 429 (``retry_after`` from Retry-After).
            UnavailableError: 408, 5xx, refused, reset, DNS failure or truncated answer.
            RemoteTimeoutError: No complete answer within ``timeout_s``.
            RetryableError: A 3xx redirect (never followed).
        """
        if not self._literal_ok:
            assert self._literal is not None
            self._egress.check_ip(self._literal)
        keys = None
        if self._signing_keys is not None:
            keys = await self._signing_keys.signing_keys(delivery.channel)
        session, slots = self._pool.open()
        headers = self._headers(delivery, int(self._clock()), keys)
        async with slots:
            started = time.perf_counter()
            try:
                async with session.post(
                    self._url,
                    data=delivery.payload,
                    headers=headers,
                    allow_redirects=False,
                ) as resp:
                    status = resp.status
                    length = resp.content_length
                    if length is not None and length <= MAX_BODY_READ:
                        raw = await resp.read()
                    else:
                        raw = await read_capped(resp.content)
                    resp_headers = resp.headers
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise classify_exception(
                    exc, duration_ms=(time.perf_counter() - started) * 1000.0
                ) from exc
            duration_ms = (time.perf_counter() - started) * 1000.0
        excerpt = raw[:BODY_EXCERPT_CHARS].decode("utf-8", "replace") if raw else ""
        error = classify_response(
            status, resp_headers, duration_ms=duration_ms, body_excerpt=excerpt
        )
        if error is not None:
            raise error
        detail: dict[str, Any] = {"body_excerpt": excerpt}
        if ABORT_HEADER in resp_headers:
            detail[ABORT_HEADER] = resp_headers[ABORT_HEADER]
        return Receipt(
            delivery_id=delivery.delivery_id,
            status_code=status,
            duration_ms=duration_ms,
            detail=detail,
        )

    async def aclose(self) -> None:
        """Close the connection pool; safe to call twice (a later send opens a new one)."""
        await self._pool.aclose()
