"""``--connect-to`` mappings (curl's meaning) and the outbound address policy.

Both are applied where the crawler resolves a host name to the address it will connect to
(crawler/resolver.py), so the address checked is the address used.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


class ConnectToError(ValueError):
    """A ``--connect-to`` value that does not read HOST1:PORT1:HOST2:PORT2."""


def _split_host_port_fields(spec: str) -> list[str]:
    """Split on ':' except inside [IPv6] brackets."""
    fields, buf, depth = [], [], 0
    for ch in spec:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == ":" and depth == 0:
            fields.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    fields.append("".join(buf))
    return fields


def _port(value: str, spec: str) -> int | None:
    if value == "":
        return None
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ConnectToError(f"--connect-to {spec!r}: {value!r} is not a port number")
    return int(value)


@dataclass(frozen=True)
class ConnectTo:
    """One mapping: connections for host1:port1 go to host2:port2 (empty matches/keeps any)."""

    host1: str | None
    port1: int | None
    host2: str | None
    port2: int | None

    @classmethod
    def parse(cls, spec: str) -> ConnectTo:
        fields = _split_host_port_fields(spec.strip())
        if len(fields) != 4:
            raise ConnectToError(
                f"--connect-to {spec!r}: expected HOST1:PORT1:HOST2:PORT2 "
                "(IPv6 addresses in brackets), e.g. ::127.0.0.1:8081"
            )
        h1, p1, h2, p2 = fields
        return cls(
            host1=h1.strip("[]").lower() or None,
            port1=_port(p1, spec),
            host2=h2.strip("[]") or None,
            port2=_port(p2, spec),
        )

    def matches(self, host: str, port: int) -> bool:
        return (self.host1 is None or self.host1 == host.lower()) and (
            self.port1 is None or self.port1 == port
        )

    def as_spec(self) -> str:
        def h(x: str | None) -> str:
            return "" if x is None else (f"[{x}]" if ":" in x else x)

        def p(x: int | None) -> str:
            return "" if x is None else str(x)

        return f"{h(self.host1)}:{p(self.port1)}:{h(self.host2)}:{p(self.port2)}"


def parse_connect_to(specs: list[str] | tuple[str, ...]) -> list[ConnectTo]:
    return [ConnectTo.parse(s) for s in specs if s.strip()]


def map_connection(rules: list[ConnectTo], host: str, port: int) -> tuple[str, int, bool]:
    """Where to connect for host:port. The bool says an operator mapping applied (the first
    matching rule wins, as in curl)."""
    for rule in rules:
        if rule.matches(host, port):
            return (rule.host2 or host, rule.port2 or port, True)
    return (host, port, False)


def address_allowed(ip: str, extra_networks: tuple[IPNetwork, ...] = ()) -> bool:
    """Only globally routable unicast addresses may be reached without an operator mapping:
    never loopback, private, link-local (cloud metadata), multicast or reserved ranges.

    ``extra_networks`` are explicit operator allowances (ECTRUST_ALLOW_NETWORKS), e.g. the
    test harness's simulated public host 127.0.0.2/32 (RELIABILITY.md "Harness")."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if any(addr.version == net.version and addr in net for net in extra_networks):
        return True
    return addr.is_global and not addr.is_multicast


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Web ports a site may use without an operator mapping; anything else (6379, 5432, 25 …)
# would let a submitted URL talk to a non-web service (RELIABILITY.md T15).
DEFAULT_ALLOWED_PORTS = (80, 443, 8080, 8443)


def parse_networks(values: list[str] | tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """ECTRUST_ALLOW_NETWORKS entries as networks; raises ValueError naming a bad entry."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"ECTRUST_ALLOW_NETWORKS: {value!r} is not a network") from exc
    return tuple(out)
