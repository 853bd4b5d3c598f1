"""The Slack channel: one message per delivery, by incoming webhook or ``chat.postMessage``.

One attempt per ``send`` over one aiohttp session; the channel classifies the answer (see
``classify``) and never retries: the delivery worker owns the retry policy.  Every message carries
the delivery id as Slack message metadata (``event_type`` ``junction_delivery``), so a receiver, or
an operator reading the channel history, can tell a retry of a message that did arrive from a new
one.  Values from records are escaped for Slack in the text and in every Block Kit string, so a
record cannot ping ``<!channel>`` or hide a link (RELIABILITY.md case 29).

The webhook URL and ``api_base`` are user-configured, so every request goes through the egress
policy (``outbound.egress``), as the webhook channel's do: the URL's shape is checked at
construction, an IP-literal host before each send, and a host name on every resolution.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

import aiohttp
import orjson

from junction.core.errors import ConfigError, JunctionError, RetryableError
from outbound.base import Delivery, Receipt
from outbound.config_errors import validate_config
from outbound.egress import EgressPolicy, ip_literal
from outbound.http_pool import BODY_EXCERPT_CHARS, HttpPool, read_capped, user_agent
from outbound.lifecycle import ClosesOnExit
from outbound.masking import template_context
from outbound.slack.classify import classify_api_error, classify_webhook_answer
from outbound.slack.config import (
    ALERT_EVENT_TYPE,
    BUILTIN_TEMPLATES,
    SlackConfig,
    SlackTemplate,
)
from outbound.slack.render import render_blocks, render_text
from outbound.templates import event_context
from outbound.webhook.classify import classify_exception

METADATA_EVENT_TYPE = "junction_delivery"


def _for_slack(error: JunctionError) -> JunctionError:
    # the shared transport classification speaks of a "webhook receiver"; here it is Slack
    if not isinstance(error, RetryableError):
        return error
    return type(error)(
        error.user_message.replace("webhook receiver", "Slack"),
        retry_after=error.retry_after,
        details=error.details,
        context=error.context,
    )


class SlackChannel(ClosesOnExit):
    """Post deliveries to one Slack channel.

    Args:
        config: The channel config, or a mapping validated into one.
        egress: The egress policy (SSRF protection); None reads ``JUNCTION_EGRESS_ALLOW`` only.

    Raises:
        ConfigError: ``config`` is a mapping that does not validate.
        InvalidUrlError: The URL's scheme, userinfo or port is refused by the egress policy.
    """

    name: ClassVar[str] = "slack"
    config_model: ClassVar[type[SlackConfig]] = SlackConfig
    # build_channels passes the hub's egress policy to channels that declare this
    uses_egress: ClassVar[bool] = True

    def __init__(
        self, config: SlackConfig | Mapping[str, Any], *, egress: EgressPolicy | None = None
    ) -> None:
        self._egress = EgressPolicy.from_env() if egress is None else egress
        if not isinstance(config, SlackConfig):
            for key in ("webhook_url", "api_base"):
                raw_url = config.get(key)
                if isinstance(raw_url, str):
                    # a typed InvalidUrlError for file://, gopher://, user:pw@ before pydantic's
                    # text (the egress policy's messages never repeat the URL)
                    self._egress.check_url(raw_url, check_literal=False)
        self.config = config = validate_config(SlackConfig, config, kind="slack")
        self._webhook = config.webhook_url is not None
        self._url = self._egress.check_url(config.target_url(), check_literal=False)
        # aiohttp connects to an IP literal without resolving it: send() checks it instead
        self._literal = ip_literal(self._url.host or "")
        self._headers = {
            "content-type": "application/json; charset=utf-8",
            "user-agent": user_agent(),
        }
        if config.bot_token is not None:
            self._headers["authorization"] = f"Bearer {config.bot_token.get_secret_value()}"
        self._pool = HttpPool(
            self._egress,
            kind="slack",
            max_connections=config.max_connections,
            timeout_s=config.timeout_s,
        )

    def __repr__(self) -> str:
        config = getattr(self, "config", None)
        if config is None:
            return "SlackChannel(unconfigured)"
        mode = "webhook" if config.webhook_url else f"chat.postMessage to {config.channel}"
        return f"SlackChannel({mode})"

    def _template(self, delivery: Delivery, event: Mapping[str, Any]) -> SlackTemplate:
        name = delivery.template
        template: SlackTemplate | None = None
        if name is None:
            if event.get("type") == "digest" and isinstance(event.get("items"), list):
                name = "digest"
            elif event.get("type") == ALERT_EVENT_TYPE:
                name = "alert"
            else:
                name = "default"
            template = self.config.template(name) or BUILTIN_TEMPLATES[name]
        else:
            template = self.config.template(name)
        if template is None:
            raise ConfigError(
                f"slack channel has no template {name!r}",
                context={"channel": delivery.channel},
            )
        return template

    def message(self, delivery: Delivery) -> dict[str, Any]:
        """Build the JSON body of one delivery's message (text, blocks, metadata, channel).

        Raises:
            InternalError: The payload is not a JSON object.
            ConfigError: The delivery names a template this channel lacks.
            RecordError: The template cannot render this event.
        """
        event = event_context(delivery.payload)
        template = self._template(delivery, event)
        # masked phone/email/name unless the route reveals them (outbound.masking)
        context = template_context(delivery, event)
        body: dict[str, Any] = {"text": render_text(template.text, context)}
        if template.blocks is not None:
            body["blocks"] = render_blocks(template.blocks, context)
        body["metadata"] = {
            "event_type": METADATA_EVENT_TYPE,
            "event_payload": {"delivery_id": delivery.delivery_id},
        }
        # no processing of bare text: "@channel" or "#general" in a value stays plain text, and
        # only the template's own <...> markup links or mentions
        body["parse"] = "none"
        body["link_names"] = False
        body["unfurl_links"] = self.config.unfurl_links
        body["unfurl_media"] = self.config.unfurl_links
        if self.config.channel is not None:
            body["channel"] = self.config.channel
        return body

    async def send(self, delivery: Delivery) -> Receipt:
        """Post one delivery and classify Slack's answer.

        Returns:
            A Receipt; in chat.postMessage mode ``remote_id`` is ``<channel id>:<message ts>``.

        Raises:
            BlockedAddressError: The egress policy refuses the address (an IP literal, or every
                address the host name resolved to); nothing was sent.
            RecordError: The template cannot render this event (or renders invalid blocks).
            ConfigError: The delivery names a template this channel lacks.
            AuthError: Slack refused the token (or the webhook's).
            EndpointGoneError: The incoming webhook was removed or its channel archived.
            FatalError: Slack rejected the message for good (channel_not_found, msg_too_long, ...).
            RateLimitedError: HTTP 429 or ``ratelimited`` (``retry_after`` from Retry-After).
            UnavailableError: 5xx, Slack's internal errors, refused or reset connections.
            RemoteTimeoutError: No complete answer within ``timeout_s``.
        """
        data = orjson.dumps(self.message(delivery))
        if self._literal is not None:
            self._egress.check_ip(self._literal)
        session, slots = self._pool.open()
        async with slots:
            started = time.perf_counter()
            try:
                async with session.post(
                    self._url, data=data, headers=self._headers, allow_redirects=False
                ) as resp:
                    status = resp.status
                    raw = await read_capped(resp.content)
                    resp_headers = resp.headers
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise _for_slack(
                    classify_exception(exc, duration_ms=(time.perf_counter() - started) * 1000)
                ) from exc
        duration_ms = (time.perf_counter() - started) * 1000.0
        text = raw[:BODY_EXCERPT_CHARS].decode("utf-8", "replace")
        if self._webhook:
            refused = classify_webhook_answer(status, resp_headers, text, duration_ms=duration_ms)
            if refused is not None:
                raise refused
            return Receipt(
                delivery_id=delivery.delivery_id,
                status_code=status,
                duration_ms=duration_ms,
                detail={"body_excerpt": text},
            )
        return self._api_receipt(delivery, status, resp_headers, raw, duration_ms)

    def _api_receipt(
        self,
        delivery: Delivery,
        status: int,
        headers: Mapping[str, str],
        raw: bytes,
        duration_ms: float,
    ) -> Receipt:
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            # no Slack answer to read (a proxy page, a cut-off body): classify by status alone
            error = classify_webhook_answer(
                status if status >= 300 else 502, headers, "", duration_ms=duration_ms
            )
            assert error is not None
            raise error
        if answer.get("ok") is not True or not 200 <= status < 300:
            raise classify_api_error(
                str(answer.get("error", "")), status, headers, duration_ms=duration_ms
            )
        channel = answer.get("channel")
        ts = answer.get("ts")
        remote_id = f"{channel}:{ts}" if isinstance(channel, str) and isinstance(ts, str) else None
        detail: dict[str, Any] = {}
        if isinstance(answer.get("warning"), str):
            detail["warning"] = answer["warning"]
        return Receipt(
            delivery_id=delivery.delivery_id,
            status_code=status,
            remote_id=remote_id,
            duration_ms=duration_ms,
            detail=detail,
        )

    async def aclose(self) -> None:
        """Close the connection pool; safe to call twice (a later send opens a new one)."""
        await self._pool.aclose()
