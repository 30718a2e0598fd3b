"""The URLs people open to reach the API server. A server listening on every interface
(``0.0.0.0``) has no such URL of its own: others use this computer's network address,
this computer uses loopback. The window's status bar and ``ophthai serve`` show the
same ones."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit, urlunsplit

#: The address the server listens on for clinic-network access: every interface.
LAN_HOST = "0.0.0.0"
#: Listening here means every interface, as :data:`LAN_HOST` does (IPv6).
ANY_HOSTS = frozenset({LAN_HOST, "::"})


def lan_address() -> str:
    """This computer's address on the network (no packet is sent), else loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.254.254.254", 1))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def _with_host(url: str, host: str) -> str:
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    netloc = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, f"{netloc}{port}", parts.path, "", ""))


def listens_everywhere(url: str) -> bool:
    """Whether the server at ``url`` listens on every interface."""
    return urlsplit(url).hostname in ANY_HOSTS


def shown_url(url: str) -> str:
    """The address others use: a server on every interface shows the network address."""
    return _with_host(url, lan_address()) if listens_everywhere(url) else url


def local_url(url: str) -> str:
    """The address this computer's browser uses."""
    return _with_host(url, "127.0.0.1") if listens_everywhere(url) else url
