"""The name resolver every Scrapy connection goes through (TWISTED_DNS_RESOLVER).

Twisted's HostnameEndpoint asks the reactor's name resolver for (host, port) and connects to
exactly the addresses it is given, IP literals included. Applying ``--connect-to`` and the
address policy here means URLs and Host headers keep the site's name while the connection
goes where the operator mapped it, and that a name resolving to a private address is refused
at the moment of connecting (no time-of-check/time-of-use gap, DNS rebinding included).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IAddress,
    IHostnameResolver,
    IHostResolution,
    IResolutionReceiver,
)
from zope.interface import implementer, provider

from crawler.netpolicy import (
    DEFAULT_ALLOWED_PORTS,
    IPNetwork,
    address_allowed,
    map_connection,
    parse_connect_to,
    parse_networks,
)

logger = logging.getLogger(__name__)

# host -> why its addresses were refused; the spider reads it to name the failure.
BLOCKED: dict[str, str] = {}


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:  # pragma: no cover - Twisted never cancels these
        pass


@provider(IResolutionReceiver)
class _FilteringReceiver:
    """Passes on the allowed addresses, with the mapped port."""

    def __init__(
        self,
        receiver: IResolutionReceiver,
        host: str,
        port: int,
        mapped: bool,
        networks: tuple[IPNetwork, ...] = (),
    ) -> None:
        self.receiver, self.host, self.port, self.mapped = receiver, host, port, mapped
        self.networks = networks
        self.refused: list[str] = []

    def resolutionBegan(self, resolution: IHostResolution) -> None:
        self.receiver.resolutionBegan(resolution)

    def addressResolved(self, address: IAddress) -> None:
        ip = getattr(address, "host", "")
        if not self.mapped and not address_allowed(ip, self.networks):
            self.refused.append(ip)
            return
        cls = IPv6Address if isinstance(address, IPv6Address) else IPv4Address
        self.receiver.addressResolved(cls("TCP", ip, self.port))

    def resolutionComplete(self) -> None:
        if self.refused:
            BLOCKED[self.host] = f"address not allowed: {', '.join(sorted(set(self.refused)))}"
            logger.warning("refused to connect to %s: %s", self.host, BLOCKED[self.host])
        self.receiver.resolutionComplete()


@implementer(IHostnameResolver)
class PolicyResolver:
    def __init__(
        self,
        reactor: Any,
        connect_to: list[str],
        *,
        allow_networks: list[str] | tuple[str, ...] = (),
        allowed_ports: list[int] | tuple[int, ...] = DEFAULT_ALLOWED_PORTS,
        dns_stub: dict[str, Any] | None = None,
    ) -> None:
        self.reactor = reactor
        self.original = reactor.nameResolver
        self.rules = parse_connect_to(connect_to)
        self.networks = parse_networks(allow_networks)
        self.ports = frozenset(int(p) for p in allowed_ports)
        if dns_stub:
            from crawler.stubdns import StubResolver

            self.original = StubResolver(reactor, dns_stub, fallback=self.original)

    @classmethod
    def from_crawler(cls, crawler: Any, reactor: Any) -> PolicyResolver:
        s = crawler.settings
        return cls(
            reactor,
            s.getlist("ECTRUST_CONNECT_TO"),
            allow_networks=s.getlist("ECTRUST_ALLOW_NETWORKS"),
            allowed_ports=[int(p) for p in s.getlist("ECTRUST_ALLOWED_PORTS")]
            or DEFAULT_ALLOWED_PORTS,
            dns_stub=s.getdict("ECTRUST_DNS_STUB"),
        )

    def install_on_reactor(self) -> None:
        self.reactor.installNameResolver(self)

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        target, port, mapped = map_connection(self.rules, hostName, portNumber)
        if not mapped and portNumber and portNumber not in self.ports:
            # A non-web port: no address at all, so the connection fails as blocked.
            BLOCKED[hostName] = f"port {portNumber} not allowed"
            logger.warning("refused to connect to %s:%d: port not allowed", hostName, portNumber)
            resolution = _Resolution(hostName)
            resolutionReceiver.resolutionBegan(resolution)
            resolutionReceiver.resolutionComplete()
            return resolution
        receiver = _FilteringReceiver(resolutionReceiver, hostName, port, mapped, self.networks)
        return self.original.resolveHostName(
            receiver, target, port, addressTypes, transportSemantics
        ) or _Resolution(hostName)
