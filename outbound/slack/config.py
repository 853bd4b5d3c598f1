"""Configuration of the Slack channel: an incoming webhook, or a bot token and a channel.

Both credentials are secrets: an incoming webhook URL lets anyone who holds it post, so it is a
``SecretStr`` like the bot token, and neither is ever echoed in a validation error.
"""

from __future__ import annotations

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    field_validator,
    model_validator,
)
from yarl import URL

from outbound.slack.render import check_blocks_template, check_text_template
from outbound.template_sets import require_default

DEFAULT_TEXT = (
    "{{ type }}{% if record_id is defined %}: {{ record_id }}{% endif %}"
    "{% if score is defined and score %} scored {{ score.value }} ({{ score.grade }}){% endif %}"
)
DIGEST_TEXT = (
    "{{ count }} deliveries:\n"
    "{% for item in items %}• {{ item.type | default('item') }}"
    "{% if item.record_id is defined %}: {{ item.record_id }}{% endif %}"
    "{% if item.score is defined and item.score %} ({{ item.score.grade }}){% endif %}\n"
    "{% endfor %}"
)
# the hub's own alerts (junction.store.events): {"type": "junction.alert", kind, subject, detail}
ALERT_TEXT = (
    "Junction alert: {{ kind }} ({{ subject }})"
    "{% for key, value in detail | dictsort %}\n• {{ key }}: {{ value }}{% endfor %}"
)
ALERT_EVENT_TYPE = "junction.alert"


class SlackTemplate(BaseModel):
    """One message template: plain text, and optionally Block Kit blocks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(
        description="Jinja2 template of the message text (Slack mrkdwn; also the notification "
        "fallback when blocks are given). Every {{ value }} is escaped for Slack (&, <, >).",
        examples=["Hot lead {{ record.company_name }}: grade {{ score.grade }}"],
    )
    blocks: str | None = Field(
        default=None,
        description="Jinja2 template rendering a JSON list of Block Kit blocks. Values are "
        "escaped for Slack and as JSON string content; `tojson` writes a whole value as JSON.",
        examples=['[{"type": "section", "text": {"type": "mrkdwn", "text": "*{{ record_id }}*"}}]'],
    )

    @field_validator("text")
    @classmethod
    def _check_text(cls, source: str) -> str:
        return check_text_template(source)

    @field_validator("blocks")
    @classmethod
    def _check_blocks(cls, source: str | None) -> str | None:
        return None if source is None else check_blocks_template(source)


def _default_templates() -> dict[str, SlackTemplate]:
    return {"default": SlackTemplate(text=DEFAULT_TEXT)}


# used for digests and alerts when the config names no template of that name, since a
# configured "default" usually reads record fields that digests and alerts do not have
BUILTIN_TEMPLATES = {
    "default": SlackTemplate(text=DEFAULT_TEXT),
    "digest": SlackTemplate(text=DIGEST_TEXT),
    "alert": SlackTemplate(text=ALERT_TEXT),
}


def _check_http_url(value: str, what: str) -> URL:
    url = URL(value)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{what} must be an http(s) URL with a host")
    if url.user or url.password:
        raise ValueError(f"{what} may not carry credentials")
    return url


class SlackConfig(BaseModel):
    """Where Slack messages go, and how they look.

    Exactly one mode: ``webhook_url`` (an incoming webhook, bound to one channel by Slack), or
    ``bot_token`` with ``channel`` (``chat.postMessage`` on ``api_base``).  Redirects are never
    followed.
    """

    # inputs stay out of validation errors: a webhook URL or token must not be echoed into logs
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    webhook_url: SecretStr | None = Field(
        default=None,
        description="Incoming webhook URL (https://hooks.slack.com/services/T.../B.../...). It is "
        "the credential: reference it from the environment.",
        examples=["${env:SLACK_SALES_WEBHOOK}"],
    )
    bot_token: SecretStr | None = Field(
        default=None,
        description="Bot token (xoxb-...) with chat:write, for chat.postMessage.",
        examples=["${env:SLACK_BOT_TOKEN}"],
    )
    channel: str | None = Field(
        default=None,
        description="Channel id (C0123456789) or name for chat.postMessage; with bot_token only.",
        examples=["C0123456789"],
    )
    api_base: HttpUrl = Field(
        default=HttpUrl("https://slack.com/api"),
        description="Slack Web API base URL (tests point it at a local fake).",
    )
    templates: dict[str, SlackTemplate] = Field(
        default_factory=_default_templates,
        description="Named message templates; routes pick one by name. 'default' is required. "
        "Digest deliveries of routes that name no template use 'digest', and the hub's alerts "
        "use 'alert' (built-in ones when not configured).",
    )
    unfurl_links: bool = Field(
        default=False, description="Let Slack unfurl links in the message (off: no previews)."
    )
    timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Total time allowed for one attempt (connect, send, read the answer), seconds.",
    )
    max_connections: int = Field(
        default=10, ge=1, le=1000, description="Most connections open to Slack at once."
    )

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _check_http_url(value.get_secret_value(), "webhook_url")
        return value

    @field_validator("api_base")
    @classmethod
    def _check_api_base(cls, value: HttpUrl) -> HttpUrl:
        _check_http_url(str(value), "api_base")
        return value

    @field_validator("bot_token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            token = value.get_secret_value()
            # it goes into a header: no spaces or control characters that could split it
            if not token or not token.isprintable() or " " in token:
                raise ValueError("bot_token is empty or has spaces or control characters")
        return value

    @field_validator("channel")
    @classmethod
    def _check_channel(cls, value: str | None) -> str | None:
        if value is not None and (not value or not value.isprintable() or " " in value):
            raise ValueError("channel is empty or has spaces or control characters")
        return value

    @field_validator("templates")
    @classmethod
    def _check_templates(cls, value: dict[str, SlackTemplate]) -> dict[str, SlackTemplate]:
        return require_default(value)

    @model_validator(mode="after")
    def _one_mode(self) -> SlackConfig:
        if (self.webhook_url is None) == (self.bot_token is None):
            raise ValueError("set either webhook_url, or bot_token with channel")
        if self.bot_token is not None and self.channel is None:
            raise ValueError("bot_token needs channel")
        if self.webhook_url is not None and self.channel is not None:
            raise ValueError("an incoming webhook posts to its own channel: leave channel unset")
        return self

    def target_url(self) -> URL:
        """Return the URL messages are POSTed to (revealing the webhook URL: for the wire only)."""
        if self.webhook_url is not None:
            return URL(self.webhook_url.get_secret_value())
        return URL(str(self.api_base).rstrip("/") + "/chat.postMessage")

    def template(self, name: str) -> SlackTemplate | None:
        """Return the template called ``name``, or None."""
        return self.templates.get(name)
