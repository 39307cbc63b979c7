"""The client's address behind reverse proxies, believed only from the proxies an operator trusts.

uvicorn's proxy-headers middleware already replaces the peer by the X-Forwarded-For client when
the peer is in `forwarded_allow_ips`; this module adds X-Real-IP from the same trusted peers
(Mixpanel's tracking proxy sends both; some proxies only the latter).
"""

from __future__ import annotations

import ipaddress

from starlette.requests import Request


class TrustedProxies:
    """`forwarded_allow_ips` read as uvicorn reads it: addresses, CIDR networks, `*` for any."""

    def __init__(self, spec: str) -> None:
        items = [item.strip() for item in spec.split(",") if item.strip()]
        self.any = "*" in items
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.literals: set[str] = set()
        for item in items:
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self.literals.add(item)

    def __contains__(self, host: str | None) -> bool:
        if host is None:
            return False
        if self.any:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host in self.literals
        return any(address in network for network in self.networks)


def client_ip(request: Request, trusted: TrustedProxies) -> str | None:
    """The client address. From a proxy in `forwarded_allow_ips`, uvicorn has already taken it from
    X-Forwarded-For; such a proxy that sends only X-Real-IP is believed too (Mixpanel's tracking
    proxy sets both). From anyone else both headers are ignored: a client cannot pick its address."""
    peer = request.client.host if request.client else None
    if "x-forwarded-for" not in request.headers and peer in trusted:
        real = request.headers.get("x-real-ip", "").strip()
        if real:
            return real
    return peer


def trusted_proxies(request: Request) -> TrustedProxies:
    """The app's `forwarded_allow_ips`, parsed once."""
    state = request.app.state
    trusted: TrustedProxies | None = getattr(state, "trusted_proxies", None)
    if trusted is None:
        trusted = state.trusted_proxies = TrustedProxies(state.services.config.forwarded_allow_ips)
    return trusted
