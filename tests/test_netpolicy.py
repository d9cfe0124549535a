"""--connect-to parsing (curl's meaning) and the address policy."""

from __future__ import annotations

import pytest

from crawler.netpolicy import ConnectTo, ConnectToError, address_allowed, map_connection


def test_parse_and_match():
    rule = ConnectTo.parse("::127.0.0.1:8081")
    assert rule == ConnectTo(None, None, "127.0.0.1", 8081)
    assert map_connection([rule], "books.example", 80) == ("127.0.0.1", 8081, True)
    specific = ConnectTo.parse("shop.example:443:[::1]:8443")
    assert specific.host2 == "::1" and specific.as_spec() == "shop.example:443:[::1]:8443"
    assert map_connection([specific], "shop.example", 80) == ("shop.example", 80, False)
    assert map_connection([specific, rule], "shop.example", 443) == ("::1", 8443, True)
    keep_host = ConnectTo.parse("a.example:80::8080")
    assert map_connection([keep_host], "a.example", 80) == ("a.example", 8080, True)


@pytest.mark.parametrize("spec", ["nonsense", "a:b:c", "a:1:b:99999", "a:x:b:1", "a:1:b:2:3"])
def test_bad_specs(spec):
    with pytest.raises(ConnectToError):
        ConnectTo.parse(spec)


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "127.1.2.3",
        "0.0.0.0",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "224.0.0.1",
        "::1",
        "fe80::1%lo",
        "fc00::1",
        "::ffff:127.0.0.1",
        "240.0.0.1",
        "not-an-ip",
    ],
)
def test_non_public_addresses_are_refused(ip):
    assert address_allowed(ip) is False


@pytest.mark.parametrize("ip", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_are_allowed(ip):
    assert address_allowed(ip) is True
