"""Which hosts a crawl may reach: public addresses only, unless the config allow-lists one.

A crawler that follows links found on the web can be pointed, by any page, at the machine
it runs on (``http://127.0.0.1:8080/admin``), at the cloud's metadata service
(``169.254.169.254``) or at the private network behind it. Each host is resolved once, and
refused when any of its addresses is private, loopback, link-local, multicast, reserved or
unspecified, unless the host, the address or a network containing it is in
``crawl.allow_private``. (httpx resolves the name again when it connects; a DNS answer that
changes between the two lookups is not caught here.)
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not (address.is_private or address.is_loopback or address.is_link_local or address.is_multicast
                or address.is_reserved or address.is_unspecified)


class AddressPolicy:
    def __init__(self, allow: list[str]):
        self.hosts = {a.lower() for a in allow if "/" not in a}
        self.networks = [ipaddress.ip_network(a, strict=False) for a in allow if "/" in a]
        for entry in list(self.hosts):
            try:
                self.networks.append(ipaddress.ip_network(entry))
            except ValueError:
                pass  # a host name

    def allowed(self, address: IPAddress) -> bool:
        return is_public(address) or any(address in n for n in self.networks if n.version == address.version)

    async def refusal(self, url: str) -> str | None:
        """Why the host of ``url`` may not be crawled (``private_address`` / ``dns_error``), or None."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if host in self.hosts or parts.netloc.lower() in self.hosts:
            return None
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 80,
                                                                     type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError):
                return "dns_error"
            addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
        if not addresses or not all(self.allowed(a) for a in addresses):
            return "private_address"
        return None
