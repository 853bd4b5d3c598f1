"""Secrets are ``SecretStr`` in every config model and never come back out (RELIABILITY.md D).

* every registered connector and channel config model, and the hub's own config (hooks, API
  signing key), is walked field by field (nested models included): a field whose name says it
  holds a secret (password, secret, token, key, auth, credential) must be typed ``SecretStr``
  (alone, optional or in a list), unless ``NOT_SECRETS`` says why it is not one;
* a config holding a canary in every secret field is dumped (``repr``, ``str``,
  ``model_dump_json``) without the canary;
* a running API whose config holds canary secrets (webhook signing secret, Slack bot token,
  SendGrid API key, Twilio auth token, a hook secret, the token signing key) is read on every
  GET route, the OpenAPI document included, as an admin: no response and no log line the
  process writes meanwhile holds a canary.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretBytes, SecretStr

from junction.core.registry import Registry
from junction.pipeline.config import ApiConfig, HubConfig
from tests.api.harness import ApiHarness, running_api
from tests.api.test_rbac_matrix import api_routes

SECRET_NAME = re.compile(
    r"(password|passwd|pwd|secret|token|(^|_)key($|_)|api_?key|auth|credential|private)", re.I
)

# model path of a field whose name looks secret -> why it is not one (numbers, booleans and
# Literal selectors such as ``auth: basic | ws_security`` are never secrets and need no entry)
NOT_SECRETS: dict[str, str] = {
    "connectors:odbc.tables.key_columns": "column names",
    "connectors:odbc.queries.key_columns": "column names",
    "connectors:sap.functions.key_fields": "field names",
    "channels:email_sendgrid.event_public_key": "SendGrid's public ECDSA key (verifies events)",
    "channels:kafka.key_field": "the record field used as the Kafka message key",
    "channels:kafka.ssl_key_location": "a file path; the key's password is ssl_key_password",
    "hub.pipelines.routes.dedupe.key": "a CEL expression naming the dedupe key",
}


def _models(annotation: Any) -> list[type[BaseModel]]:
    found = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        found.append(annotation)
    for arg in typing.get_args(annotation):
        found += _models(arg)
    return found


def _never_secret(annotation: Any) -> bool:
    """A number, a boolean or a Literal selector (optional or not) cannot hold a secret."""
    if annotation is type(None) or typing.get_origin(annotation) is typing.Literal:
        return True
    if isinstance(annotation, type):
        return issubclass(annotation, int | float | bool)
    args = typing.get_args(annotation)
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and all(
        _never_secret(a) for a in args
    )


def _is_secret(annotation: Any) -> bool:
    """``SecretStr``, or only ``SecretStr``s (optional, in a list, next to a nested model)."""
    if annotation is type(None):
        return True
    if isinstance(annotation, type):
        if issubclass(annotation, SecretStr | SecretBytes):
            return True
        # a nested model carrying the secret (e.g. a previous secret with its expiry) is walked
        return issubclass(annotation, BaseModel)
    args = [a for a in typing.get_args(annotation) if not isinstance(a, typing.ForwardRef)]
    if typing.get_origin(annotation) is typing.Annotated:
        return _is_secret(args[0])
    return bool(args) and all(_is_secret(a) for a in args)


def secret_looking_fields(
    model: type[BaseModel], path: str, seen: set[type[BaseModel]] | None = None
) -> Iterator[tuple[str, Any]]:
    seen = set() if seen is None else seen
    if model in seen:
        return
    seen.add(model)
    for name, field in model.model_fields.items():
        names = [name] + ([field.alias] if field.alias else [])
        if any(SECRET_NAME.search(n) for n in names) and not _never_secret(field.annotation):
            yield f"{path}.{name}", field.annotation
        for inner in _models(field.annotation):
            yield from secret_looking_fields(inner, f"{path}.{name}", seen)


def all_config_models() -> list[tuple[str, type[BaseModel]]]:
    registry = Registry()
    out: list[tuple[str, type[BaseModel]]] = [("hub", HubConfig)]
    for kind in ("connectors", "channels"):
        for name in registry.names(kind):
            out.append((f"{kind}:{name}", registry.get(kind, name).config_model))
    return out


def test_every_secret_field_is_a_secret_str() -> None:
    plain: list[str] = []
    found: set[str] = set()
    for path, model in all_config_models():
        for field_path, annotation in secret_looking_fields(model, path):
            found.add(field_path)
            if field_path in NOT_SECRETS:
                continue
            if not _is_secret(annotation):
                plain.append(f"{field_path}: {annotation}")
    assert not plain, "secret-looking fields that are not SecretStr:\n" + "\n".join(plain)
    assert set(NOT_SECRETS) <= found, f"stale NOT_SECRETS entries: {set(NOT_SECRETS) - found}"
    # the walk really reaches the secrets (a walk that finds nothing proves nothing)
    assert {
        "channels:webhook.secret",
        "channels:email_sendgrid.api_key",
        "connectors:salesforce.client_secret",
        "hub.api.signing_key",
        "hub.api.hooks.secret",
    } <= found


@pytest.mark.parametrize(
    ("annotation", "secret"),
    [
        (SecretStr, True),
        (SecretStr | None, True),
        (list[SecretStr], True),
        (str, False),
        (str | None, False),
        (SecretStr | str, False),
        (dict[str, str], False),
    ],
)
def test_the_secret_type_check(annotation: Any, secret: bool) -> None:
    assert _is_secret(annotation) is secret


CANARY = "canary-secret-5b0e"


def test_config_dumps_never_show_secrets() -> None:
    hub = ApiConfig.model_validate(
        {
            "signing_key": CANARY + "-signing",
            "hooks": {"h": {"pipeline": "p", "secret": CANARY + "-hook"}},
        }
    )
    registry = Registry()
    webhook = registry.get("channels", "webhook").config_model.model_validate(
        {"url": "https://hooks.example/x", "secret": "whsec_" + "A" * 32}
    )
    salesforce = registry.get("connectors", "salesforce").config_model.model_validate(
        {
            "auth": "client_credentials",
            "client_id": "id",
            "client_secret": CANARY + "-sf",
            "domain": "acme.my",
        }
    )
    for config in (hub, webhook, salesforce):
        for text in (repr(config), str(config), config.model_dump_json()):
            assert CANARY not in text
            assert "A" * 32 not in text


ACCOUNT_SID = "AC" + "0" * 32
SECRETS = {
    "webhook": "whsec_Y2FuYXJ5LXdlYmhvb2stc2VjcmV0LTViMGU=",
    "hook": "whsec_Y2FuYXJ5LWhvb2stc2VjcmV0LTViMGUtMDA=",
    "signing": CANARY + "-signing-key-0123456789abcdef",
    "slack": "xoxb-" + CANARY + "-slack",
    "sendgrid": "SG." + CANARY + "-sendgrid.x",
    "twilio": CANARY + "-twilio-token",
    "db": CANARY + "-db-password",
}

CONFIG = f"""\
store: "{{store}}"
models_dir: {{models}}
pipelines:
  leads:
    source: {{{{connector: csv_file, path: inbox/*.csv, settle_seconds: 0}}}}
    mapping: csv.lead
    workers: 0
    scoring: {{{{model: lead-score}}}}
    routes:
      - when: "score.value >= 0.5"
        to: [webhook.sales, slack.ops, email_sendgrid.sales, sms_twilio.ops]
channels:
  webhook.sales: {{{{url: "http://127.0.0.1:9/sales/", secret: "{SECRETS["webhook"]}"}}}}
  slack.ops: {{{{bot_token: "{SECRETS["slack"]}", channel: "C123", api_base: "http://127.0.0.1:9/api"}}}}
  email_sendgrid.sales:
    api_key: "{SECRETS["sendgrid"]}"
    from_email: alerts@junction.example
    to: [sales@example.com]
    templates: {{{{default: {{{{subject: "Lead", text: "Lead"}}}}}}}}
  sms_twilio.ops:
    account_sid: "{ACCOUNT_SID}"
    auth_token: "{SECRETS["twilio"]}"
    from: "+14155550100"
    to_path: record.phone
    templates: {{{{default: {{{{body: "Hot lead"}}}}}}}}
api:
  signing_key: "{SECRETS["signing"]}"
  hooks:
    partner: {{{{pipeline: leads, secret: "{SECRETS["hook"]}"}}}}
"""


@pytest.fixture
def api(tmp_path: Path, store_url: str, models_dir: Path) -> Iterator[ApiHarness]:
    (tmp_path / "inbox").mkdir()
    if (
        store_url.startswith("postgresql")
        and "@" in store_url
        and ":" not in store_url.split("://", 1)[1].split("@", 1)[0]
    ):
        # the test server trusts local connections, so a password in the URL is a pure canary
        store_url = store_url.replace("://postgres@", f"://postgres:{SECRETS['db']}@", 1)
    path = tmp_path / "junction.yaml"
    path.write_text(CONFIG.format(store=store_url, models=models_dir), encoding="utf-8")
    with running_api(path) as harness:
        yield harness


def _fill(template: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value, template)


def _leaks(text: str) -> list[str]:
    fragments = [CANARY] + [s.removeprefix("whsec_")[:24] for s in SECRETS.values()]
    return [f for f in fragments if f in text]


def test_the_api_never_returns_or_logs_a_secret(
    api: ApiHarness, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    headers = api.headers("admin")
    # real names first (a pipeline, every channel), then a dummy for routes keyed otherwise
    values = ["leads", *sorted(api.ctx.cfg.channels), "partner", "1"]
    seen_ok = 0
    with api.http(headers=headers) as http:
        paths = {"/api/v1/openapi.json", "/api/v1/docs"}
        for template, methods, _convertors, _dependant in api_routes(api.app):
            if "GET" in methods:
                paths |= {_fill(template, v) for v in values}
        for path in sorted(paths):
            r = http.get(path)
            assert r.status_code < 500, (path, r.status_code, r.text[:200])
            seen_ok += r.status_code == 200
            assert not _leaks(r.text), (path, _leaks(r.text))
            assert not _leaks(str(r.headers)), path
    assert seen_ok >= 10  # the reads really answered (channels, pipelines, audit, ...)
    out, err = capfd.readouterr()
    logged = out + err + caplog.text
    assert not _leaks(logged), _leaks(logged)
