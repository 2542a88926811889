"""The address rules of URLs pxtserve did not choose (pxtserve.addresses): pure functions."""

from __future__ import annotations

import pytest

from pxtserve.addresses import is_loopback, is_public


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "::",
        "fe80::1%eth0",
        "fc00::1",
        # IPv4-mapped and IPv4-compatible forms of private addresses
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::10.0.0.1",
        "::169.254.169.254",
        # 6to4 of private and loopback addresses
        "2002:a00:1::1",
        "2002:7f00:1::",
        "2002:a9fe:a9fe::1",
        # NAT64 (well-known and local-use prefixes) and Teredo: a gateway picks the IPv4 address reached
        "64:ff9b::a00:1",
        "64:ff9b::808:808",
        "64:ff9b:1::a00:1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "2001::1",
    ],
)
def test_non_public_and_ipv4_carrying_forms_are_not_public(address):
    assert not is_public(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"])
def test_public_addresses_are_public(address):
    assert is_public(address)


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("8.8.8.8", False),
    ],
)
def test_loopback(address, loopback):
    assert is_loopback(address) is loopback
