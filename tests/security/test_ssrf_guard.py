"""Every outbound HTTP client built from a configured URL is accounted for (RELIABILITY.md 45, 46).

* an inventory (AST scan) of every place the code base builds an HTTP client (aiohttp, requests,
  httpx, urllib, vendor SDKs, zeep): each site is either guarded, meaning its connections go
  through the egress policy's connector (``outbound.egress``), or listed in ``OPERATOR_HOSTS``
  with the reason it is exempt.  ADR-0014 draws the line: URLs a user types for delivery
  (webhooks, Slack) are guarded; vendor API hosts and ERP addresses are operator configuration
  (the ERP is on the customer's private network by design) and their SDKs connect themselves.  A
  new client anywhere fails here until it is classified;
* a registry walk: every URL-like field of every registered connector and channel config either
  belongs to a channel that declares ``uses_egress`` or is listed as an operator host;
* the guarded channels (``webhook`` and ``slack``), built the way the hub builds them
  (``build_channels``), refuse the metadata address, IPv6 loopback, a hex integer spelling of
  127.0.0.1 and a DNS name resolving to loopback, with no connection reaching the loopback
  listeners, and never follow a redirect to the metadata address or to a second listener.

The full SSRF table (every private range, NAT64/6to4, rebinding with a scripted resolver) runs
against the policy itself in ``tests/unit/outbound/test_egress.py``.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import functools
import re
import socket
import typing
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import AnyUrl, BaseModel, HttpUrl

from junction.core.errors import BlockedAddressError, JunctionError
from junction.core.registry import Registry
from junction.pipeline.config import EgressConfig
from junction.pipeline.deliver import build_channels
from outbound.base import Delivery, Receipt
from outbound.egress import EgressPolicy
from outbound.webhook import generate_secret
from tests.security.source_scan import dotted, enclosing, import_aliases, parsed, project_modules

# what builds an HTTP client (helpers such as Retry, HTTPBasicAuth or HTTPAdapter do not)
CLIENT_BUILDERS = re.compile(
    r"^(aiohttp\.(ClientSession|TCPConnector|request)"
    r"|httpx\.(Client|AsyncClient|get|post|put|patch|delete|request|stream)"
    r"|requests\.(Session|session|get|post|put|patch|delete|request|head)"
    r"|urllib\.request\.(urlopen|build_opener|Request)"
    r"|urllib3\.(PoolManager|HTTPConnectionPool|HTTPSConnectionPool|request)"
    r"|http\.client\.HTTPS?Connection"
    r"|hubspot\.HubSpot|simple_salesforce\..*(Salesforce|SFBulk2Handler|_Bulk2Client)"
    r"|sendgrid\.SendGridAPIClient|python_http_client\.Client"
    r"|twilio\.rest\.Client|twilio\.http\.http_client\.TwilioHttpClient"
    r"|zeep\.(Client|AsyncClient|CachingClient|Transport|AsyncTransport)"
    r"|slack_sdk\..*(WebClient|WebhookClient)"
    r"|confluent_kafka\.schema_registry\..*SchemaRegistryClient)$"
)

# (module, enclosing class/function, target) -> how the connection is guarded
GUARDED: dict[tuple[str, str, str], str] = {
    (
        "outbound/http_pool.py",
        "HttpPool.open",
        "aiohttp.ClientSession",
    ): "connector=self._egress.connector(...): every connection resolves through EgressResolver",
    (
        "outbound/egress.py",
        "EgressConnector",
        "aiohttp.TCPConnector",
    ): "the guard itself: a TCPConnector whose resolver drops refused addresses",
}

_ADR = "operator configuration, not user input (ADR-0014): "
OPERATOR_HOSTS: dict[tuple[str, str, str], str] = {
    ("junction/cli/status.py", "_ready", "urllib.request.urlopen"): _ADR
    + "the operator's own running service (`junction status --url`), typed at the command line",
    ("connectors/hubspot/client.py", "HubSpotClient.__init__", "hubspot.HubSpot"): _ADR
    + "the HubSpot API host (base_url, default api.hubapi.com)",
    ("connectors/kafka/client.py", "JsonSchemaDecoder.__init__", "requests.Session"): _ADR
    + "the schema registry of the operator's own Kafka cluster (often a private address)",
    ("connectors/salesforce/client.py", "_Session", "requests.Session"): _ADR
    + "the Salesforce login host or a gateway (base_url)",
    (
        "connectors/salesforce/client.py",
        "SalesforceClient._login",
        "simple_salesforce.api.Salesforce",
    ): _ADR + "the login host, then the instance_url Salesforce's own login answer names",
    (
        "connectors/salesforce/client.py",
        "_bulk2",
        "simple_salesforce.bulk2.SFBulk2Handler",
    ): "the instance of an authenticated Salesforce session (from its login answer)",
    (
        "connectors/salesforce/client.py",
        "_bulk2",
        "simple_salesforce.bulk2._Bulk2Client",
    ): "the instance of an authenticated Salesforce session (from its login answer)",
    ("connectors/soap/client.py", "_LocalTransport", "zeep.Transport"): _ADR
    + "the 1C/SAP address, on the customer's private network by design; the WSDL and its "
    "imports are local files only (remote documents are refused)",
    ("connectors/soap/client.py", "SoapClient._build", "requests.Session"): _ADR
    + "the 1C/SAP address (see zeep.Transport); trust_env=False, no proxy from the environment",
    ("connectors/soap/client.py", "SoapClient._build", "zeep.Client"): _ADR
    + "loads a local WSDL; calls go to the configured ERP address",
    (
        "outbound/email_sendgrid/client.py",
        "SendGridClient.__init__",
        "sendgrid.SendGridAPIClient",
    ): _ADR + "the SendGrid API host (default api.sendgrid.com)",
    (
        "outbound/sms_twilio/client.py",
        "RoutedHttpClient",
        "twilio.http.http_client.TwilioHttpClient",
    ): _ADR + "the Twilio API host, or the api_base gateway the operator sets",
    ("outbound/sms_twilio/client.py", "TwilioSender.__init__", "twilio.rest.Client"): _ADR
    + "the Twilio API host, or the api_base gateway the operator sets",
}


LIBRARIES = (
    "aiohttp",
    "httpx",
    "requests",
    "urllib",
    "http.client",
    "hubspot",
    "simple_salesforce",
    "sendgrid",
    "python_http_client",
    "twilio",
    "zeep",
    "slack_sdk",
    "confluent_kafka",
)


@functools.cache
def client_sites() -> dict[tuple[str, str, str], ast.AST]:
    """(module, enclosing scope, builder) -> the node, for every HTTP client built in the code."""
    sites: dict[tuple[str, str, str], ast.AST] = {}
    for rel in project_modules(mentioning=LIBRARIES):
        tree = parsed(rel)
        aliases = import_aliases(tree)
        scopes = enclosing(tree)
        for node in ast.walk(tree):
            targets: list[str | None] = []
            if isinstance(node, ast.Call):
                targets = [dotted(node.func, aliases)]
            elif isinstance(node, ast.ClassDef):  # a subclass of a client builds one too
                targets = [dotted(base, aliases) for base in node.bases]
                scopes[node] = node.name
            for target in targets:
                if target is not None and CLIENT_BUILDERS.match(target):
                    sites.setdefault((rel, scopes.get(node, "<module>"), target), node)
    return sites


def test_every_http_client_is_guarded_or_an_operator_host() -> None:
    sites = client_sites()
    unknown = sorted(set(sites) - set(GUARDED) - set(OPERATOR_HOSTS))
    assert not unknown, (
        "HTTP clients not classified (route them through outbound.egress, or add them to "
        "OPERATOR_HOSTS with a reason):\n" + "\n".join(map(str, unknown))
    )
    stale = sorted((set(GUARDED) | set(OPERATOR_HOSTS)) - set(sites))
    assert not stale, f"classified sites no longer in the code: {stale}"


def test_guarded_sessions_connect_through_the_egress_connector() -> None:
    for (rel, scope, target), node in client_sites().items():
        if (rel, scope, target) not in GUARDED or target != "aiohttp.ClientSession":
            continue
        assert isinstance(node, ast.Call)
        connector = next((k.value for k in node.keywords if k.arg == "connector"), None)
        assert isinstance(connector, ast.Call), f"{rel}:{node.lineno} has no connector="
        assert isinstance(connector.func, ast.Attribute)
        assert connector.func.attr == "connector", ast.unparse(connector)
        assert "egress" in ast.unparse(connector.func.value), ast.unparse(connector)


def test_the_scan_finds_new_clients() -> None:
    source = (
        "import aiohttp, requests, httpx\nfrom urllib.request import urlopen\n"
        "def f(u):\n    aiohttp.ClientSession()\n    requests.get(u)\n    httpx.AsyncClient()\n"
        "    urlopen(u)\n"
    )
    tree = ast.parse(source)
    aliases = import_aliases(tree)
    found = {
        dotted(n.func, aliases)
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and CLIENT_BUILDERS.match(dotted(n.func, aliases) or "")
    }
    assert found == {
        "aiohttp.ClientSession",
        "requests.get",
        "httpx.AsyncClient",
        "urllib.request.urlopen",
    }


# --------------------------------------------------------------------------- config fields

URL_NAME = re.compile(r"(^|_)(url|uri|base|host|address|endpoint)$")
GUARDED_CHANNELS = {"webhook", "slack"}
# (kind, plugin, field) -> why a URL field of a plugin that does not use the egress policy is fine
OPERATOR_FIELDS: dict[tuple[str, str, str], str] = {
    ("connectors", "hubspot", "base_url"): "HubSpot API host (operator)",
    ("connectors", "kafka", "schema_registry_url"): "the operator's schema registry",
    ("connectors", "salesforce", "instance_url"): "Salesforce instance (operator, session auth)",
    ("connectors", "salesforce", "base_url"): "Salesforce login host or gateway (operator)",
    ("connectors", "sap", "address"): "the SAP system on the customer's network (operator)",
    ("connectors", "soap_1c", "address"): "the 1C base on the customer's network (operator)",
    ("channels", "email_sendgrid", "host"): "SendGrid API host (operator)",
    ("channels", "sms_twilio", "api_base"): "Twilio API host or gateway (operator)",
    ("channels", "sms_twilio", "status_callback"): "our own callback URL, sent to Twilio: the "
    "hub never connects to it",
    ("channels", "sms_twilio", "public_url"): "our own public URL, used to verify Twilio "
    "signatures: the hub never connects to it",
}


def _is_url_type(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, AnyUrl | HttpUrl):
        return True
    return any(_is_url_type(a) for a in typing.get_args(annotation))


def _models(annotation: Any) -> list[type[BaseModel]]:
    found = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        found.append(annotation)
    for arg in typing.get_args(annotation):
        found += _models(arg)
    return found


def url_fields(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> set[str]:
    seen = set() if seen is None else seen
    if model in seen:
        return set()
    seen.add(model)
    out: set[str] = set()
    for name, field in model.model_fields.items():
        if URL_NAME.search(name) or _is_url_type(field.annotation):
            out.add(name)
        for inner in _models(field.annotation):
            out |= url_fields(inner, seen)
    return out


def test_every_configured_url_is_guarded_or_an_operator_host() -> None:
    registry = Registry()
    unguarded: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    for kind in ("connectors", "channels"):
        for name in registry.names(kind):
            cls = registry.get(kind, name)
            guarded = getattr(cls, "uses_egress", False)
            if kind == "channels" and name in GUARDED_CHANNELS:
                assert guarded, f"channel {name} must declare uses_egress"
            for field in url_fields(cls.config_model):
                key = (kind, name, field)
                seen.add(key)
                if not guarded and key not in OPERATOR_FIELDS:
                    unguarded.append(f"{kind}:{name}.{field}")
    assert not unguarded, "URL fields without the egress guard:\n" + "\n".join(unguarded)
    assert set(OPERATOR_FIELDS) <= seen, set(OPERATOR_FIELDS) - seen
    assert ("channels", "webhook", "url") in seen  # the walk really sees URL fields


# --------------------------------------------------------------------------- guarded channels

EVENT = (
    b'{"type": "lead.scored", "record_id": "leads:L-1", "pipeline": "leads", "entity": "lead",'
    b' "source_key": "L-1", "record": {"external_id": "L-1", "company": "Initech"},'
    b' "score": {"value": 0.91, "grade": "A", "top_factors": [["page_views", 0.42]]}}'
)


class Listener:
    """Counts accepted connections; answers each request with ``answer``."""

    def __init__(self, answer: bytes) -> None:
        self.accepted = 0
        self.answer = answer
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            await reader.readexactly(int(match.group(1)) if match else 0)
            writer.write(self.answer)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


@contextlib.asynccontextmanager
async def listener(host: str, answer: bytes = OK, port: int = 0) -> AsyncIterator[Listener]:
    handler = Listener(answer)
    server = await asyncio.start_server(handler.handle, host, port)
    handler.port = server.sockets[0].getsockname()[1]
    try:
        yield handler
    finally:
        server.close()
        await server.wait_closed()


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def channel_config(kind: str, url: str) -> dict[str, Any]:
    if kind == "webhook":
        return {"url": url, "secret": generate_secret(), "timeout_s": 3}
    return {"webhook_url": url, "timeout_s": 3}


async def send_via_hub(kind: str, url: str, allow: list[str]) -> Receipt | Exception:
    """Build the channel as the hub does (``build_channels``) and send one delivery."""
    try:
        channels = build_channels(
            {f"{kind}.t": channel_config(kind, url)}, egress=EgressConfig(allow_networks=allow)
        )
    except JunctionError as exc:
        return exc
    channel = channels[f"{kind}.t"]
    async with channel:
        try:
            return await channel.send(Delivery("d-1", f"{kind}.t", "lead.scored", EVENT))
        except Exception as exc:
            return exc


BLOCKED = [
    "http://169.254.169.254:{port}/latest/meta-data/",
    "http://[::1]:{port}/hook",
    "http://0x7f000001:{port}/hook",
    "http://localhost:{port}/hook",
]


@pytest.mark.parametrize("kind", sorted(GUARDED_CHANNELS))
@pytest.mark.parametrize("template", BLOCKED)
def test_guarded_channels_refuse_private_targets_without_connecting(
    kind: str, template: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JUNCTION_EGRESS_ALLOW", raising=False)

    async def run() -> tuple[Receipt | Exception, list[int]]:
        async with contextlib.AsyncExitStack() as stack:
            v4 = await stack.enter_async_context(listener("127.0.0.1"))
            seen = [v4]
            if _ipv6():
                with contextlib.suppress(OSError):
                    seen.append(await stack.enter_async_context(listener("::1", port=v4.port)))
            result = await send_via_hub(kind, template.format(port=v4.port), [])
            await asyncio.sleep(0)
            return result, [s.accepted for s in seen]

    result, accepted = asyncio.run(run())
    assert isinstance(result, BlockedAddressError), result
    assert set(accepted) == {0}
    # with the loopback network allow-listed the same URL is sent (so the refusal is the guard's)
    if "169.254" not in template:
        monkeypatch.setenv("JUNCTION_EGRESS_ALLOW", "127.0.0.0/8,::1/128")

        async def allowed() -> Receipt | Exception:
            async with listener("127.0.0.1") as v4, contextlib.AsyncExitStack() as stack:
                if "::1" in template:
                    v4 = await stack.enter_async_context(listener("::1"))
                return await send_via_hub(kind, template.format(port=v4.port), [])

        if "::1" not in template or _ipv6():
            assert isinstance(asyncio.run(allowed()), Receipt)


@pytest.mark.parametrize("kind", sorted(GUARDED_CHANNELS))
@pytest.mark.parametrize("target", ["metadata", "second_listener"])
def test_guarded_channels_never_follow_a_redirect(
    kind: str, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JUNCTION_EGRESS_ALLOW", raising=False)

    async def run() -> tuple[Receipt | Exception, int, int]:
        async with listener("127.0.0.2") as second:
            where = (
                "http://169.254.169.254/latest/meta-data/"
                if target == "metadata"
                else f"http://127.0.0.2:{second.port}/stolen"
            )
            answer = (
                f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {where}\r\n"
                "Content-Length: 0\r\nConnection: close\r\n\r\n"
            ).encode()
            async with listener("127.0.0.1", answer) as first:
                # only the first receiver's address is allow-listed
                result = await send_via_hub(
                    kind,
                    f"http://127.0.0.1:{first.port}/hook",
                    ["127.0.0.1/32"],
                )
                await asyncio.sleep(0)
                return result, first.accepted, second.accepted

    result, first, second = asyncio.run(run())
    assert first == 1
    assert second == 0
    assert not isinstance(result, Receipt), result  # a 3xx is never a delivery
    assert isinstance(result, JunctionError)


def test_registration_check_refuses_names_resolving_to_private_ranges(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("JUNCTION_EGRESS_ALLOW", raising=False)
    policy = EgressPolicy.from_env()
    for url in ("http://localhost/hook", "http://0x7f000001/", "http://[::1]/"):
        with pytest.raises(BlockedAddressError):
            asyncio.run(policy.acheck_url(url))
