"""The URLs people open to reach the API server. A server listening on every interface
(``0.0.0.0``, or ``::`` for IPv6) has no such URL of its own: others use this computer's
network address, this computer uses loopback. The window's status bar and ``ophthai
serve`` show the same ones."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit, urlunsplit

#: The address the server listens on for clinic-network access: every interface.
LAN_HOST = "0.0.0.0"
#: Every interface for IPv6 only: asyncio, so uvicorn, sets ``IPV6_V6ONLY`` on the
#: socket, so neither 127.0.0.1 nor this computer's IPv4 address reaches it.
LAN_HOST_V6 = "::"
#: Listening here means every interface, as :data:`LAN_HOST` does (IPv6).
ANY_HOSTS = frozenset({LAN_HOST, LAN_HOST_V6})

#: Per family: an address to route to (no packet is sent to it), and loopback.
_PROBES = {
    socket.AF_INET: ("10.254.254.254", "127.0.0.1"),
    socket.AF_INET6: ("2001:db8::1", "::1"),  # the documentation prefix
}


def lan_address(family: socket.AddressFamily = socket.AF_INET) -> str:
    """This computer's address on the network in ``family`` (no packet is sent), else
    that family's loopback."""
    target, loopback = _PROBES[family]
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 1))
            return str(probe.getsockname()[0])
    except OSError:  # no route, or no IPv6 at all
        return loopback


def _with_host(url: str, host: str) -> str:
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    netloc = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, f"{netloc}{port}", parts.path, "", ""))


def _family(url: str) -> socket.AddressFamily | None:
    """The family of the every-interface address ``url`` names; None for another."""
    host = urlsplit(url).hostname
    return {LAN_HOST: socket.AF_INET, LAN_HOST_V6: socket.AF_INET6}.get(host or "")


def listens_everywhere(url: str) -> bool:
    """Whether the server at ``url`` listens on every interface."""
    return _family(url) is not None


def shown_url(url: str) -> str:
    """The address others use: a server on every interface shows the network address
    (of the family it listens in)."""
    family = _family(url)
    return url if family is None else _with_host(url, lan_address(family))


def local_url(url: str) -> str:
    """The address this computer's browser uses (loopback of the family it listens in)."""
    family = _family(url)
    return url if family is None else _with_host(url, _PROBES[family][1])
