"""Outgoing requests to addresses a study configures (the SMS webhook) go to the public internet only.

A webhook URL is typed by a coordinator; without a check it could point the server at itself, at
the cloud's metadata service (``169.254.169.254``) or at a machine on the hospital network. Every
address the host name resolves to must be public (:attr:`ipaddress.IPv4Address.is_global`, not
multicast), unless it falls in a network the operator allows with
``PEERLENS_WEBHOOK_ALLOWED_NETWORKS`` (e.g. ``10.20.0.0/16`` for an in-house SMS gateway).

The check runs when the URL is configured (a refusal is a 422 naming the field) and again before
each send, since what a name resolves to can change.

Examples
--------
>>> blocked("http://169.254.169.254/latest/meta-data")
'169.254.169.254 is not a public address'
>>> blocked("http://127.0.0.1:9000/sms", allowed=["127.0.0.0/8"]) is None
True
>>> blocked("http://[::ffff:10.0.0.1]/") is not None
True
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlparse


def networks(spec: str | Iterable[str] | None) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Parse ``"10.0.0.0/8, 127.0.0.1"`` (or a list) into networks."""
    if not spec:
        return []
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    return [ipaddress.ip_network(p.strip(), strict=False) for p in parts if p.strip()]


def _addresses(host: str, port: int | None) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    infos = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
    out = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        out.append(ip)
    return out


def blocked(url: str, allowed: str | Iterable[str] | None = None, *, unresolvable_ok: bool = False) -> str | None:
    """Why ``url`` may not be called (one line, no secrets), or None when every address it
    resolves to is public or allowed.

    ``unresolvable_ok`` accepts a name that does not resolve now (configuration time: the send
    checks again); otherwise that is a reason too.
    """
    u = urlparse(url)
    host = u.hostname
    if not host:
        return "the URL has no host"
    try:
        addresses = _addresses(host, u.port)
    except (socket.gaierror, UnicodeError, OSError):
        return None if unresolvable_ok else f"{host} does not resolve"
    nets = networks(allowed)
    for ip in addresses:
        if any(ip in net for net in nets):
            continue
        if not ip.is_global or ip.is_multicast:
            return f"{ip} is not a public address"
    return None
