"""A scripted name resolver for tests and drills (setting ECTRUST_DNS_STUB).

The address policy has to be proven against answers real DNS would give an attacker: a name
pointing at 169.254.169.254, a name that answers a public address first and loopback next
(DNS rebinding, TTL 0), a name that never answers. Names not listed go to the system resolver.

ECTRUST_DNS_STUB = {"rebind.test": [["127.0.0.2"], ["127.0.0.1"]],   # one answer per query;
                    "meta.test": [["169.254.169.254"]],             # the last one repeats
                    "gone.test": "nxdomain", "slow.test": "hang"}
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress, IHostnameResolver, IResolutionReceiver
from zope.interface import implementer


class _Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:  # pragma: no cover
        pass


class DnsScript:
    """The scripted answers themselves, shared by the Scrapy resolver below and the browser's
    egress proxy (crawler/egress.py), so both paths see the same drill."""

    def __init__(self, script: dict[str, Any]) -> None:
        self.script = {k.lower(): v for k, v in script.items()}
        self.queries: dict[str, int] = {}

    def __contains__(self, name: str) -> bool:
        return name.lower() in self.script

    def answer(self, name: str) -> list[str] | str:
        """The next answer for a listed ``name``: addresses, or "nxdomain" / "hang"."""
        name = name.lower()
        entry = self.script[name]
        if isinstance(entry, str):
            return entry
        n = self.queries.get(name, 0)
        self.queries[name] = n + 1
        return [str(a) for a in entry[min(n, len(entry) - 1)]]


@implementer(IHostnameResolver)
class StubResolver:
    def __init__(self, reactor: Any, script: dict[str, Any], fallback: Any) -> None:
        self.reactor = reactor
        self.fallback = fallback
        self.dns = DnsScript(script)
        self.script = self.dns.script

    def answer(self, name: str) -> list[str] | str:
        return self.dns.answer(name)

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> Any:
        name = hostName.lower()
        if name not in self.script:
            return self.fallback.resolveHostName(
                resolutionReceiver, hostName, portNumber, addressTypes, transportSemantics
            )
        resolution = _Resolution(hostName)
        answer = self.answer(name)
        resolutionReceiver.resolutionBegan(resolution)
        if answer == "hang":
            return resolution  # never completes: the download timeout must end it
        for ip in [] if answer == "nxdomain" else answer:
            cls = IPv6Address if ipaddress.ip_address(ip).version == 6 else IPv4Address
            resolutionReceiver.addressResolved(cls("TCP", ip, portNumber))
        resolutionReceiver.resolutionComplete()
        return resolution
