"""Egress policy for user-configured URLs: SSRF protection checked on the resolved address.

A URL an operator or a user types (a webhook endpoint, a Slack incoming webhook) must not make the
hub talk to itself, to the cloud metadata service or to the private network behind it.  The policy
refuses loopback, private (RFC 1918, CGNAT 100.64/10, fc00::/7), link-local, multicast,
unspecified, reserved/broadcast, benchmarking and documentation addresses, and IPv6 forms that
embed an IPv4 address (IPv4-mapped and -compatible, NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4
2002::/16, Teredo 2001::/32) are judged on the embedded address.  An address whose (canonical)
network is allow-listed passes anyway: ``egress.allow_networks`` in the hub config plus
``JUNCTION_EGRESS_ALLOW`` (comma-separated CIDRs).  The deny table below is explicit;
``ipaddress.is_global`` is only a second opinion, because its answer changes between Python
versions (3.11 calls 2002::/16 and fec0::/10 global).

The address is checked where the connection is made, so DNS rebinding cannot slip past it:
``EgressResolver`` wraps aiohttp's resolver and hands the connector only the addresses that
passed, from the very resolution the connector then connects to.  TLS SNI and ``Host`` keep the
hostname (aiohttp does that for resolved hosts).  IP literals never reach a resolver (aiohttp
connects to them directly), so the channel checks them itself before each send with
``EgressPolicy.check_host``.

How a channel that sends to user-configured URLs uses this (the webhook channel does all of it):

1. declare ``uses_egress: ClassVar[bool] = True`` and take a constructor keyword
   ``egress: EgressPolicy | None = None`` (None means ``EgressPolicy.from_env()``);
   ``junction.pipeline.deliver.build_channels`` passes the hub's policy to such classes;
2. at construction, ``policy.check_url(url, check_literal=False)`` (scheme, userinfo, port:
   ``InvalidUrlError``); a blocked IP literal is refused per send instead, so one endpoint with a
   blocked address dead-letters its own deliveries without stopping every other channel (a
   registration API or ``junction check`` calls ``check_url(url)``, which refuses it at once);
3. build the session's connector with ``policy.connector(...)`` (closing the session closes it
   and its resolver);
4. before each send, ``policy.check_host(url.host)`` (IP literals: ``BlockedAddressError``);
5. let ``BlockedAddressError`` (a ``FatalError``) propagate: it is not a transport failure, and the
   delivery worker must not retry it.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Collection, Iterable, Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any, TypeAlias

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from junction.core.errors import BlockedAddressError, ConfigError, InvalidUrlError

IPAddress: TypeAlias = IPv4Address | IPv6Address
IPNetwork: TypeAlias = IPv4Network | IPv6Network

ENV_ALLOW = "JUNCTION_EGRESS_ALLOW"
SCHEMES = frozenset({"http", "https"})
STANDARD_PORTS = frozenset({80, 443})

_V4_DENY: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified ('this network')"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("240.0.0.0/4", "reserved"),
)
_V6_DENY: tuple[tuple[str, str], ...] = (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("100::/64", "discard-only"),
    ("2001:2::/48", "benchmarking"),
    ("2001::/23", "IETF protocol assignments"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "SRv6 segment identifiers"),
    ("fc00::/7", "private (unique local)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
)
_DENY: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ip_network(net), why) for net, why in _V4_DENY + _V6_DENY
)

_TRANSLATED = ip_network("::ffff:0:0:0/96")  # SIIT "IPv4-translated" (RFC 2765)
_COMPATIBLE = ip_network("::/96")  # deprecated "IPv4-compatible" (RFC 4291 2.5.5.1)
_NAT64 = ip_network("64:ff9b::/96")
_NAT64_LOCAL = ip_network("64:ff9b:1::/48")  # RFC 8215: any RFC 6052 prefix length inside it
_SIXTOFOUR = ip_network("2002::/16")
_TEREDO = ip_network("2001::/32")
# what glibc's inet_aton (and so getaddrinfo) reads as an IPv4 literal: 2130706433, 0x7f.1, 0177.1
_LEGACY_V4 = re.compile(r"[0-9a-fA-FxX.]+")


def ip_literal(host: str) -> IPAddress | None:
    """Return the address a URL host names literally, or None for a name that needs resolving.

    Besides the canonical forms this reads what ``getaddrinfo`` would read as an IPv4 literal
    (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``), so no spelling of an address is
    mistaken for a host name.

    Args:
        host: The host part of a URL (IPv6 with or without brackets).
    """
    text = host.strip("[]")
    try:
        return ip_address(text)
    except ValueError:
        pass
    if _LEGACY_V4.fullmatch(text) and any(c.isdigit() for c in text):
        try:
            return IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def _rfc6052(addr: IPv6Address, prefix_len: int) -> IPv4Address:
    packed = addr.packed
    if prefix_len == 96:
        return IPv4Address(packed[12:16])
    # bits 64..71 (the "u" octet) never carry address bits
    squeezed = packed[:8] + packed[9:]
    start = prefix_len // 8
    return IPv4Address(squeezed[start : start + 4])


def embedded_ipv4(addr: IPAddress) -> tuple[str, tuple[IPv4Address, ...]] | None:
    """Return the IPv4 address(es) an IPv6 transition form carries, and the form's name.

    Args:
        addr: Any address.

    Returns:
        ``(form, addresses)`` for IPv4-mapped, -translated, -compatible, NAT64 (well-known and
        local-use prefixes: every RFC 6052 layout that fits), 6to4 and Teredo (server and client);
        None for IPv4 and for IPv6 addresses that embed nothing.
    """
    if isinstance(addr, IPv4Address):
        return None
    low32 = IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr.ipv4_mapped is not None:
        return "IPv4-mapped", (addr.ipv4_mapped,)
    if addr in _TRANSLATED:
        return "IPv4-translated", (low32,)
    if addr in _COMPATIBLE and int(addr) > 1:
        return "IPv4-compatible", (low32,)
    if addr in _NAT64:
        return "NAT64", (low32,)
    if addr in _NAT64_LOCAL:
        return "NAT64", tuple(_rfc6052(addr, n) for n in (48, 56, 64, 96))
    if addr in _SIXTOFOUR and addr.sixtofour is not None:
        return "6to4", (addr.sixtofour,)
    if addr in _TEREDO and addr.teredo is not None:
        return "Teredo", addr.teredo
    return None


def _why_not_public(addr: IPAddress) -> str | None:
    for net, why in _DENY:
        if addr.version == net.version and addr in net:
            return why
    # the stdlib's view, as a second opinion for what the table does not name
    if addr.is_multicast:
        return "multicast"
    if not addr.is_global or addr.is_reserved:
        return "not globally routable"
    return None


def parse_networks(entries: Iterable[str], *, source: str) -> tuple[IPNetwork, ...]:
    """Parse CIDR strings (host bits are tolerated: ``10.1.2.3/16`` means ``10.1.0.0/16``).

    Args:
        entries: The CIDRs; blank entries are skipped.
        source: Where they come from, for the error message.

    Raises:
        ConfigError: An entry is not a network.
    """
    out: list[IPNetwork] = []
    for entry in entries:
        text = entry.strip()
        if not text:
            continue
        try:
            out.append(ip_network(text, strict=False))
        except ValueError:
            raise ConfigError(
                f"{source}: {text!r} is not a CIDR network (e.g. 10.20.0.0/16 or fd00::/8)"
            ) from None
    return tuple(out)


class EgressPolicy:
    """Which addresses and URLs outbound channels may connect to.

    Args:
        allow_networks: Networks allowed although not public (CIDR strings or networks).
        allowed_ports: When given, the only ports a URL may name (``STANDARD_PORTS`` = 80, 443);
            None allows any port.

    Raises:
        ConfigError: An allow-list entry is not a network.
    """

    def __init__(
        self,
        allow_networks: Iterable[str | IPNetwork] = (),
        *,
        allowed_ports: Collection[int] | None = None,
    ) -> None:
        nets = [n for n in allow_networks if not isinstance(n, str)]
        texts = [n for n in allow_networks if isinstance(n, str)]
        self.allow_networks: tuple[IPNetwork, ...] = tuple(nets) + parse_networks(
            texts, source="egress.allow_networks"
        )
        self.allowed_ports = frozenset(allowed_ports) if allowed_ports is not None else None

    @classmethod
    def from_env(
        cls,
        allow_networks: Iterable[str] = (),
        *,
        allowed_ports: Collection[int] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> EgressPolicy:
        """The configured allow-list plus the networks in ``JUNCTION_EGRESS_ALLOW``.

        Args:
            allow_networks: ``egress.allow_networks`` from the hub config.
            allowed_ports: See the class.
            environ: The environment to read (default ``os.environ``).
        """
        env = os.environ if environ is None else environ
        from_env = parse_networks(env.get(ENV_ALLOW, "").split(","), source=ENV_ALLOW)
        return cls([*allow_networks, *from_env], allowed_ports=allowed_ports)

    def __repr__(self) -> str:
        nets = ", ".join(str(n) for n in self.allow_networks)
        return f"EgressPolicy(allow_networks=[{nets}], allowed_ports={self.allowed_ports})"

    def _allowed(self, addr: IPAddress) -> bool:
        return any(addr.version == n.version and addr in n for n in self.allow_networks)

    def refusal(self, addr: IPAddress) -> str | None:
        """Return why ``addr`` is refused (e.g. ``"private"``), or None when it may be used."""
        if self.allow_networks and self._allowed(addr):
            return None
        inner = embedded_ipv4(addr)
        if inner is None:
            return _why_not_public(addr)
        form, targets = inner
        if self.allow_networks and all(self._allowed(t) for t in targets):
            return None
        for target in targets:
            why = _why_not_public(target)
            if why is not None and not self._allowed(target):
                article = "an" if form.startswith("IPv4") else "a"
                return f"{why}, embedded in {article} {form} address"
        return None

    def allows(self, addr: IPAddress | str) -> bool:
        """Whether a connection to ``addr`` may be made."""
        return self.refusal(ip_address(addr) if isinstance(addr, str) else addr) is None

    def check_ip(self, addr: IPAddress) -> None:
        """Refuse a blocked address.

        Raises:
            BlockedAddressError: ``addr`` is not public and not allow-listed.
        """
        why = self.refusal(addr)
        if why is not None:
            raise _blocked(addr, why)

    def check_host(self, host: str) -> None:
        """Refuse a URL host that is a blocked IP literal (names are checked when resolved).

        Raises:
            BlockedAddressError: ``host`` spells a blocked address in any form.
        """
        addr = ip_literal(host)
        if addr is not None:
            self.check_ip(addr)

    def check_url(self, url: str | URL, *, check_literal: bool = True) -> URL:
        """Check a URL's shape (and its host, when it is an IP literal).

        Args:
            url: The URL as configured.
            check_literal: Also refuse a host that is a blocked IP literal.

        Returns:
            The parsed URL.

        Raises:
            InvalidUrlError: Not http/https, has userinfo or no host, or names a refused port.
                The message never repeats the URL (it may carry a token).
            BlockedAddressError: The host is a blocked IP literal.
        """
        try:
            parsed = url if isinstance(url, URL) else URL(url)
        except (ValueError, TypeError):
            raise InvalidUrlError("the URL does not parse") from None
        if parsed.scheme not in SCHEMES:
            raise InvalidUrlError(
                f"URL scheme {parsed.scheme or '(none)'!r} is refused; use http or https"
            )
        if parsed.raw_user or parsed.raw_password:
            raise InvalidUrlError("a URL may not carry a user or password; use headers instead")
        if not parsed.host:
            raise InvalidUrlError("the URL has no host")
        port = parsed.port
        if self.allowed_ports is not None and port not in self.allowed_ports:
            raise InvalidUrlError(
                f"URL port {port} is refused by the egress policy "
                f"(allowed: {', '.join(map(str, sorted(self.allowed_ports)))})"
            )
        if check_literal:
            self.check_host(parsed.host)
        return parsed

    async def acheck_url(self, url: str | URL, *, base: AbstractResolver | None = None) -> URL:
        """``check_url``, then resolve a host name and refuse it if no address passes.

        For registration (an API that stores an endpoint URL): a name that resolves only to
        blocked addresses is refused at once.  It proves nothing about later resolutions, which
        ``EgressResolver`` checks again on every connection.

        Args:
            url: The URL as configured.
            base: The resolver to look the name up with (default: aiohttp's).

        Raises:
            InvalidUrlError: See ``check_url``.
            BlockedAddressError: The host is, or resolves only to, blocked addresses.
            OSError: The name does not resolve.
        """
        parsed = self.check_url(url)
        host = parsed.host or ""
        if ip_literal(host) is None:
            resolver = EgressResolver(self, base)
            try:
                await resolver.resolve(host, parsed.port or 0, socket.AF_UNSPEC)
            finally:
                await resolver.close()
        return parsed

    def connector(self, **kwargs: Any) -> EgressConnector:
        """An aiohttp connector that resolves through ``EgressResolver`` (keyword args pass on)."""
        return EgressConnector(EgressResolver(self), **kwargs)


def _blocked(addr: IPAddress, why: str) -> BlockedAddressError:
    return BlockedAddressError(
        f"the egress policy refuses {addr} ({why}); add its network to egress.allow_networks "
        "if the hub may really connect there",
        context={"address": str(addr), "reason": why},
    )


class EgressResolver(AbstractResolver):
    """An aiohttp resolver that returns only the addresses the policy allows.

    Args:
        policy: The egress policy.
        base: The resolver that does the lookup (default: aiohttp's ``DefaultResolver``, created
            in the running loop on first use); tests inject a scripted one.
    """

    def __init__(self, policy: EgressPolicy, base: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._base = base
        self._owns_base = base is None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host`` and drop every address the policy refuses.

        Raises:
            BlockedAddressError: Every address ``host`` resolved to is refused.
            OSError: The lookup failed (aiohttp reports it as a DNS error).
        """
        if self._base is None:
            self._base = DefaultResolver()
        answers = await self._base.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        first_refusal: BlockedAddressError | None = None
        for answer in answers:
            addr = ip_address(answer["host"])
            why = self.policy.refusal(addr)
            if why is None:
                allowed.append(answer)
            elif first_refusal is None:
                first_refusal = _blocked(addr, why)
        if not allowed:
            if first_refusal is not None:
                raise first_refusal
            raise OSError(f"no address for {host}")
        return allowed

    async def close(self) -> None:
        """Close the base resolver when this resolver created it."""
        if self._base is not None and self._owns_base:
            await self._base.close()
        self._base = None if self._owns_base else self._base


class EgressConnector(aiohttp.TCPConnector):
    """A ``TCPConnector`` whose resolver applies the egress policy, and closes with it.

    Args:
        resolver: The policy-applying resolver.
        **kwargs: Passed to ``TCPConnector``.
    """

    def __init__(self, resolver: EgressResolver, **kwargs: Any) -> None:
        super().__init__(resolver=resolver, **kwargs)
        self.egress_resolver = resolver

    async def close(self, *, abort_ssl: bool = False) -> None:
        """Close the pool, then the resolver (aiohttp closes only resolvers it created)."""
        await super().close(abort_ssl=abort_ssl)
        await self.egress_resolver.close()
