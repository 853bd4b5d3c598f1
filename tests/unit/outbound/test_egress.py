"""The egress policy (SSRF guard): RELIABILITY.md cases 45 (the SSRF table) and 46 (DNS rebinding).

Every refused URL is sent through a real WebhookChannel while real TCP listeners wait on the
loopback addresses it could reach; a refusal must leave them with zero accepted connections.
Host names resolve through a scripted resolver at the getaddrinfo level (the one layer a test DNS
server would replace), so rebinding answers are exact and nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from junction.core.errors import (
    BlockedAddressError,
    ConfigError,
    FatalError,
    InvalidUrlError,
    RetryableError,
)
from junction.pipeline.config import EgressConfig
from junction.pipeline.deliver import build_channels
from outbound.base import Delivery, Receipt
from outbound.egress import (
    STANDARD_PORTS,
    EgressConnector,
    EgressPolicy,
    EgressResolver,
    embedded_ipv4,
    ip_literal,
)
from outbound.webhook import WebhookChannel, generate_secret

SECRET = generate_secret()
DELIVERY = Delivery("lead-1-v1", "webhook.sales", "lead.scored", b'{"lead_id": "L-1"}')


class Listener:
    """A TCP listener that counts every accepted connection and answers HTTP 200."""

    def __init__(self) -> None:
        self.accepted = 0
        self.heads: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            await reader.readexactly(int(match.group(1)) if match else 0)
            self.heads.append(head)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def listening(host: str, port: int = 0) -> AsyncIterator[tuple[Listener, int]]:
    listener = Listener()
    server = await asyncio.start_server(listener.handle, host, port)
    try:
        yield listener, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@contextlib.asynccontextmanager
async def loopback_listeners() -> AsyncIterator[tuple[list[Listener], int]]:
    """Listeners on 127.0.0.1 (and ::1 when the host has it), all on one port."""
    async with contextlib.AsyncExitStack() as stack:
        first, port = await stack.enter_async_context(listening("127.0.0.1"))
        listeners = [first]
        if _ipv6_loopback():
            with contextlib.suppress(OSError):
                six, _ = await stack.enter_async_context(listening("::1", port))
                listeners.append(six)
        yield listeners, port


class ScriptedResolver(AbstractResolver):
    """Answers like getaddrinfo would, from a script: one list of addresses per lookup."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        addresses = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return [
            ResolveResult(
                hostname=host,
                host=addr,
                port=port,
                family=socket.AF_INET6 if ":" in addr else socket.AF_INET,
                proto=socket.IPPROTO_TCP,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for addr in addresses
        ]

    async def close(self) -> None:
        pass


class ScriptedPolicy(EgressPolicy):
    """An egress policy whose connector resolves through a ScriptedResolver."""

    def __init__(self, resolver: ScriptedResolver, allow: list[str]) -> None:
        super().__init__(allow)
        self.base = resolver

    def connector(self, **kwargs: Any) -> EgressConnector:
        return EgressConnector(EgressResolver(self, base=self.base), **kwargs)


async def send(url: str, policy: EgressPolicy | None) -> Receipt | Exception:
    try:
        channel = WebhookChannel({"url": url, "secret": SECRET, "timeout_s": 5}, egress=policy)
    except Exception as exc:
        return exc
    async with channel:
        try:
            return await channel.send(DELIVERY)
        except Exception as exc:
            return exc


# the SSRF table of RELIABILITY.md case 45: every URL is refused, at registration and at send time
SSRF_TABLE = [
    ("http://127.0.0.1:{port}/hook", BlockedAddressError),
    ("http://localhost:{port}/hook", BlockedAddressError),
    ("http://10.0.0.1:{port}/hook", BlockedAddressError),
    ("http://172.16.0.1:{port}/hook", BlockedAddressError),
    ("http://192.168.1.1:{port}/hook", BlockedAddressError),
    ("http://169.254.169.254/latest/meta-data/", BlockedAddressError),
    ("http://100.64.0.1:{port}/hook", BlockedAddressError),
    ("http://0.0.0.0:{port}/hook", BlockedAddressError),
    ("http://[::1]:{port}/hook", BlockedAddressError),
    ("http://[fe80::1]:{port}/hook", BlockedAddressError),
    ("http://[fc00::1]:{port}/hook", BlockedAddressError),
    ("http://[::ffff:127.0.0.1]:{port}/hook", BlockedAddressError),
    ("http://2130706433:{port}/hook", BlockedAddressError),
    ("http://0x7f.1:{port}/hook", BlockedAddressError),
    ("http://0177.0.0.1:{port}/hook", BlockedAddressError),
    ("http://224.0.0.1:{port}/hook", BlockedAddressError),
    ("http://[64:ff9b::a00:1]:{port}/hook", BlockedAddressError),
    ("http://[2002:a00:1::]:{port}/hook", BlockedAddressError),
    ("http://user:pw@127.0.0.1:{port}/hook", InvalidUrlError),
    ("http://user@hooks.example/hook", InvalidUrlError),
    ("file:///etc/passwd", InvalidUrlError),
    ("gopher://127.0.0.1:{port}/_GET", InvalidUrlError),
]


@pytest.mark.parametrize(("template", "error"), SSRF_TABLE, ids=[t for t, _ in SSRF_TABLE])
def test_ssrf_table_is_refused_and_nothing_connects(
    template: str, error: type[Exception], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JUNCTION_EGRESS_ALLOW")

    async def run() -> tuple[Exception | Receipt, list[Listener], str]:
        async with loopback_listeners() as (listeners, port):
            url = template.format(port=port)
            # None: the policy from the environment, which now allow-lists nothing
            result = await send(url, None)
            await asyncio.sleep(0)  # let a connection that was made reach accept()
            return result, listeners, url

    result, listeners, url = asyncio.run(run())
    assert isinstance(result, error), result
    assert [listener.accepted for listener in listeners] == [0] * len(listeners)
    # registration refuses it too (a URL check with no channel and no connection)
    with pytest.raises(error):
        asyncio.run(EgressPolicy().acheck_url(url))


def test_blocked_address_is_fatal_not_retryable_and_names_no_url() -> None:
    result = asyncio.run(send("http://169.254.169.254/latest/meta-data/?token=s3cr3t", None))
    assert isinstance(result, BlockedAddressError)
    assert isinstance(result, FatalError)
    assert not isinstance(result, RetryableError)
    assert "s3cr3t" not in str(result)
    assert result.context == {"address": "169.254.169.254", "reason": "link-local"}


def test_name_resolving_to_loopback_is_refused_by_the_real_resolver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``0x7f.1`` is a host *name* to yarl, but getaddrinfo reads it as 127.0.0.1."""
    monkeypatch.delenv("JUNCTION_EGRESS_ALLOW")

    async def run() -> None:
        resolver = EgressResolver(EgressPolicy())
        try:
            for name in ("localhost", "0x7f.1", "2130706433"):
                with pytest.raises(BlockedAddressError):
                    await resolver.resolve(name, 80)
        finally:
            await resolver.close()

    asyncio.run(run())


def test_allow_listed_subnet_is_allowed_and_the_rest_stays_blocked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("JUNCTION_EGRESS_ALLOW")

    async def run() -> tuple[list[Receipt | Exception], Listener, Listener]:
        async with (
            listening("127.0.0.2") as (allowed, port),
            listening("127.0.0.1", port) as (
                other,
                _,
            ),
        ):
            policy = EgressPolicy(["127.0.0.2/32"])
            results = [
                await send(f"http://127.0.0.2:{port}/hook", policy),
                await send(f"http://127.0.0.1:{port}/hook", policy),
                await send(f"http://[::ffff:127.0.0.2]:{port}/hook", EgressPolicy()),
            ]
            return results, allowed, other

    (ok, blocked, mapped), allowed, other = asyncio.run(run())
    assert isinstance(ok, Receipt)
    assert isinstance(blocked, BlockedAddressError)
    assert isinstance(mapped, BlockedAddressError)
    assert (allowed.accepted, other.accepted) == (1, 0)


def test_allow_list_comes_from_the_environment_and_the_hub_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JUNCTION_EGRESS_ALLOW", " 127.0.0.2/32 , fd00::/8")
    env_policy = EgressPolicy.from_env()
    assert [str(n) for n in env_policy.allow_networks] == ["127.0.0.2/32", "fd00::/8"]
    monkeypatch.delenv("JUNCTION_EGRESS_ALLOW")

    async def run() -> tuple[Receipt | Exception, Receipt | Exception, Listener]:
        async with listening("127.0.0.2") as (listener, port):
            url = f"http://127.0.0.2:{port}/hook"
            config = {"webhook.sales": {"url": url, "secret": SECRET}}
            refused = build_channels(config)["webhook.sales"]
            allowed = build_channels(config, egress=EgressConfig(allow_networks=["127.0.0.0/24"]))[
                "webhook.sales"
            ]
            try:
                try:
                    first: Receipt | Exception = await refused.send(DELIVERY)
                except BlockedAddressError as exc:
                    first = exc
                second = await allowed.send(DELIVERY)
            finally:
                await refused.aclose()
                await allowed.aclose()
            return first, second, listener

    first, second, listener = asyncio.run(run())
    assert isinstance(first, BlockedAddressError)
    assert isinstance(second, Receipt)
    assert listener.accepted == 1


@pytest.mark.parametrize("value", ["10.0.0.0/33", "not-a-network", "10.0.0.0/8,banana"])
def test_a_bad_allow_list_is_a_config_error(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUNCTION_EGRESS_ALLOW", value)
    with pytest.raises(ConfigError):
        EgressPolicy.from_env()
    with pytest.raises(ConfigError):
        EgressPolicy([value.split(",")[-1]])


def test_non_standard_ports_are_refused_when_the_policy_says_so() -> None:
    strict = EgressPolicy(allowed_ports=STANDARD_PORTS)
    assert strict.check_url("https://hooks.example/x").port == 443
    strict.check_url("http://hooks.example:80/x")
    with pytest.raises(InvalidUrlError):
        strict.check_url("https://hooks.example:8443/x")
    with pytest.raises(InvalidUrlError):
        WebhookChannel({"url": "http://hooks.example:8080/x", "secret": SECRET}, egress=strict)
    EgressPolicy().check_url("https://hooks.example:8443/x")  # any port by default


def test_dns_rebinding_connects_only_to_the_address_checked_in_the_same_resolution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Case 46: the first answer passes (127.0.0.2 plays the public address), the second is
    127.0.0.1; the connection goes where the check went, and Host keeps the name."""
    monkeypatch.delenv("JUNCTION_EGRESS_ALLOW")
    resolver = ScriptedResolver(["127.0.0.2"], ["127.0.0.1"])
    policy = ScriptedPolicy(resolver, ["127.0.0.2/32"])

    async def run() -> tuple[Receipt | Exception, Receipt | Exception, Listener, Listener]:
        async with (
            listening("127.0.0.2") as (good, port),
            listening("127.0.0.1", port) as (
                evil,
                _,
            ),
        ):
            url = f"http://hooks.rebind.test:{port}/hook"
            first = await send(url, policy)  # a fresh channel (and DNS cache) per send
            second = await send(url, policy)
            await asyncio.sleep(0)
            return first, second, good, evil

    first, second, good, evil = asyncio.run(run())
    assert isinstance(first, Receipt)
    assert isinstance(second, BlockedAddressError)
    assert resolver.lookups == ["hooks.rebind.test", "hooks.rebind.test"]
    assert (good.accepted, evil.accepted) == (1, 0)
    assert re.search(rb"(?im)^host: hooks\.rebind\.test:\d+\r$", good.heads[0])


def test_mixed_answers_keep_only_the_allowed_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUNCTION_EGRESS_ALLOW")
    # a blocked address listed first: unfiltered, aiohttp would try it first
    resolver = ScriptedResolver(["127.0.0.1", "127.0.0.2"])
    policy = ScriptedPolicy(resolver, ["127.0.0.2/32"])

    async def run() -> tuple[list[Receipt | Exception], Listener, Listener]:
        async with (
            listening("127.0.0.2") as (good, port),
            listening("127.0.0.1", port) as (
                evil,
                _,
            ),
        ):
            results = [await send(f"http://mixed.test:{port}/h", policy) for _ in range(3)]
            await asyncio.sleep(0)
            return results, good, evil

    results, good, evil = asyncio.run(run())
    assert all(isinstance(r, Receipt) for r in results)
    assert (good.accepted, evil.accepted) == (3, 0)


def test_resolver_filters_private_answers_out_of_a_public_resolution() -> None:
    async def run() -> None:
        resolver = EgressResolver(
            EgressPolicy(), base=ScriptedResolver(["93.184.215.14", "10.0.0.5"], ["127.0.0.1"])
        )
        first = await resolver.resolve("hooks.example", 443)
        assert [r["host"] for r in first] == ["93.184.215.14"]
        assert first[0]["hostname"] == "hooks.example"
        with pytest.raises(BlockedAddressError):
            await resolver.resolve("hooks.example", 443)
        nat64 = EgressResolver(EgressPolicy(), base=ScriptedResolver(["64:ff9b::a00:1"]))
        with pytest.raises(BlockedAddressError, match="NAT64"):
            await nat64.resolve("v6only.example", 443, socket.AF_INET6)

    asyncio.run(run())


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "CGNAT"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("198.18.0.1", "benchmarking"),
        ("192.0.2.10", "documentation"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::1", "unique local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "documentation"),
        ("3fff::1", "documentation"),
        ("::ffff:127.0.0.1", "loopback, embedded in an IPv4-mapped"),
        ("::ffff:0:a00:1", "private, embedded in an IPv4-translated"),
        ("::a00:1", "private, embedded in an IPv4-compatible"),
        ("64:ff9b::a00:1", "private, embedded in a NAT64"),
        ("64:ff9b::7f00:1", "loopback, embedded in a NAT64"),
        ("64:ff9b:1:a00:1::", "private, embedded in a NAT64"),
        ("2002:a00:1::", "private, embedded in a 6to4"),
        ("2002:a9fe:a9fe::1", "link-local, embedded in a 6to4"),
        # Teredo: server 65.54.227.120, client 192.0.2.45 (a documentation address)
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "documentation, embedded in a Teredo"),
    ],
)
def test_refused_addresses_and_why(address: str, reason: str) -> None:
    why = EgressPolicy().refusal(ip_address(address))
    assert why is not None
    assert reason in why
    with pytest.raises(BlockedAddressError):
        EgressPolicy().check_ip(ip_address(address))


@pytest.mark.parametrize(
    "address",
    ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1"],
)
def test_public_addresses_pass_also_when_embedded(address: str) -> None:
    assert EgressPolicy().allows(address)


def test_allow_list_applies_to_the_canonical_address() -> None:
    policy = EgressPolicy(["127.0.0.0/8", "::1/128"])
    assert policy.allows("::ffff:127.0.0.1")
    assert policy.allows("::1")
    assert policy.allows("64:ff9b::7f00:1")
    assert not policy.allows("::ffff:10.0.0.1")
    assert not policy.allows("fc00::1")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("[::ffff:7f00:1]", "::ffff:7f00:1"),
        ("hooks.example", None),
        ("cafe", None),
    ],
)
def test_ip_literal_reads_every_spelling_getaddrinfo_would(host: str, expected: str | None) -> None:
    found = ip_literal(host)
    assert (str(found) if found is not None else None) == expected


def test_embedded_ipv4_names_the_form() -> None:
    assert embedded_ipv4(ip_address("10.0.0.1")) is None
    assert embedded_ipv4(ip_address("2606:4700::1111")) is None
    assert embedded_ipv4(ip_address("2002:a00:1::")) == ("6to4", (ip_address("10.0.0.1"),))


def test_delivery_worker_dead_letters_a_blocked_delivery_without_retrying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from junction.pipeline.config import DeliveryConfig
    from junction.pipeline.deliver import DeliveryWorker
    from junction.store import tables as t
    from junction.store.repo import Store

    monkeypatch.delenv("JUNCTION_EGRESS_ALLOW")
    store = Store.open(f"sqlite:///{tmp_path / 'junction.db'}")
    now = time.time()
    with store.begin() as conn:
        conn.execute(
            t.deliveries.insert(),
            [
                {
                    "id": "lead-1-v1",
                    "record_id": "lead-1",
                    "pipeline": "p",
                    "channel": "webhook.sales",
                    "event_type": "lead.scored",
                    "payload": DELIVERY.payload.decode(),
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now - 1,
                    "created_at": now,
                }
            ],
        )

    async def run() -> Listener:
        async with listening("127.0.0.1") as (listener, port):
            channels = build_channels(
                {"webhook.sales": {"url": f"http://localhost:{port}/hook", "secret": SECRET}}
            )
            worker = DeliveryWorker(store, channels, DeliveryConfig(schedule_s=[0.01, 0.01]))
            try:
                await worker.run(drain_wait_s=0.5)
            finally:
                await worker.aclose()
            return listener

    try:
        listener = asyncio.run(run())
        counts = store.counts("p")
    finally:
        store.close()
    assert listener.accepted == 0
    assert (counts["deliveries_dead"], counts["deliveries_pending"]) == (1, 0)
    assert counts["attempts"] == 1  # fatal: no retry
