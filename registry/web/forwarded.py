"""Which peers may say that a request came over TLS (`X-Forwarded-Proto`), and whether one did.

A TLS-terminating proxy (an ingress, nginx) talks plain HTTP to modelyard; what the browser used
is only in the `X-Forwarded-Proto` header the proxy adds. The header is believed only from a
trusted peer (`MODELYARD_FORWARDED_ALLOW_IPS`: addresses and networks, or `*`); from any other
peer it is ignored, as uvicorn's `forwarded_allow_ips` does. It is read only where it matters,
for the console's cookies (`Secure`); nothing else is rewritten (the client's address, the host).

Pure: the standard library's `ipaddress` only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

__all__ = ["DEFAULT_FORWARDED_ALLOW_IPS", "TrustedProxies"]

#: A proxy on the same host (a sidecar, nginx in front): trusted without a setting.
DEFAULT_FORWARDED_ALLOW_IPS: Final = "127.0.0.1,::1"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The peers whose `X-Forwarded-Proto` is believed."""

    __slots__ = ("any_peer", "networks")

    def __init__(self, networks: Iterable[Network] = (), any_peer: bool = False) -> None:
        self.networks = tuple(networks)
        self.any_peer = any_peer

    @classmethod
    def parse(cls, text: str) -> TrustedProxies:
        """`127.0.0.1,10.0.0.0/8,::1` or `*`; ValueError naming an entry that is neither."""
        networks: list[Network] = []
        any_peer = False
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            if entry == "*":
                any_peer = True
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (like 10.0.0.0/8), nor `*`"
                ) from None
        return cls(networks, any_peer)

    def trusts(self, peer: str | None) -> bool:
        if self.any_peer:
            return True
        if not peer:  # a Unix socket, or a test client without one
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack listener's IPv4 peer
        return any(address in network for network in self.networks)

    def over_tls(self, scheme: str, peer: str | None, forwarded_proto: list[str]) -> bool:
        """Did the client use TLS? Directly (`scheme`), or as a trusted peer says: the last
        `X-Forwarded-Proto` value, the one the nearest proxy set."""
        if scheme in ("https", "wss"):
            return True
        if not forwarded_proto or not self.trusts(peer):
            return False
        return forwarded_proto[-1].rsplit(",", 1)[-1].strip().lower() == "https"
