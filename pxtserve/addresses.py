"""Which addresses pxtserve connects to for a URL it did not choose itself, and how it connects to the checked one.

Media URLs a client sends (pxtserve.media_inputs) and webhook URLs (pxtserve.jobs.webhooks)
follow the same rules: the host is resolved once, every address it resolves to must be
public (not loopback, private, link-local, multicast or reserved), and the connection goes
to the very address that was checked, so a DNS answer that changes between the check and
the connect cannot send it elsewhere.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from typing import Any

# IPv6 ranges whose packets a gateway hands to an IPv4 address of its choosing: NAT64 (RFC 6052, 8215) and
# Teredo (RFC 4380, the client's address obfuscated). Which IPv4 address is reached is not ours to check.
_TRANSLATED = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
    ipaddress.IPv6Network("2001::/32"),
)
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and is routed to: IPv4-mapped, IPv4-compatible, 6to4."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:  # :: and ::1 are themselves, not IPv4 addresses
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(address: str) -> bool:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in network for network in _TRANSLATED):
            return False
        ip = embedded_ipv4(ip) or ip
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local)


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, sorted; socket.gaierror when it does not resolve."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


def public_addresses(host: str, port: int) -> list[str] | None:
    """The addresses of `host` when every one is public; None when any is not (or there are none).

    socket.gaierror when the host does not resolve.
    """
    addresses = resolve(host, port)
    if not addresses or not all(is_public(a) for a in addresses):
        return None
    return addresses


def default_port(url: str) -> int:
    parsed = urllib.parse.urlsplit(url)
    return parsed.port or (443 if parsed.scheme.lower() == "https" else 80)


def pinned_request(client: Any, url: str, address: str, method: str = "GET", **kwargs: Any) -> Any:
    """A request for `url` that connects to `address` (an IP) instead of resolving the URL's host again.

    The request keeps the URL's host in its Host header and, for https, as the TLS server
    name (SNI and certificate check), so to the server it is the same request. `kwargs`
    go to httpx's build_request (content, headers, ...).
    """
    parsed = urllib.parse.urlsplit(url)
    userinfo, at, host_header = parsed.netloc.rpartition("@")  # the Host header carries no credentials
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{userinfo}{at}{literal}" + (f":{parsed.port}" if parsed.port else "")
    extensions = {"sni_hostname": parsed.hostname} if parsed.scheme.lower() == "https" else {}
    headers = {"Host": host_header, **kwargs.pop("headers", {})}
    return client.build_request(
        method, parsed._replace(netloc=netloc).geturl(), headers=headers, extensions=extensions, **kwargs
    )
