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

from crawler.netpolicy import address_allowed, map_connection, parse_connect_to

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

    def __init__(self, receiver: IResolutionReceiver, host: str, port: int, mapped: bool) -> None:
        self.receiver, self.host, self.port, self.mapped = receiver, host, port, mapped
        self.refused: list[str] = []

    def resolutionBegan(self, resolution: IHostResolution) -> None:
        self.receiver.resolutionBegan(resolution)

    def addressResolved(self, address: IAddress) -> None:
        ip = getattr(address, "host", "")
        if not self.mapped and not address_allowed(ip):
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
    def __init__(self, reactor: Any, connect_to: list[str]) -> None:
        self.reactor = reactor
        self.original = reactor.nameResolver
        self.rules = parse_connect_to(connect_to)

    @classmethod
    def from_crawler(cls, crawler: Any, reactor: Any) -> PolicyResolver:
        return cls(reactor, crawler.settings.getlist("ECTRUST_CONNECT_TO"))

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
        receiver = _FilteringReceiver(resolutionReceiver, hostName, port, mapped)
        return self.original.resolveHostName(
            receiver, target, port, addressTypes, transportSemantics
        ) or _Resolution(hostName)
