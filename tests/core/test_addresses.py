"""The URLs people open to reach the API server: the window's status bar and
``ophthai serve`` show the same ones."""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlsplit

import pytest

from ophthai_desktop.core import addresses
from ophthai_desktop.core.addresses import local_url, shown_url

NETWORK = {socket.AF_INET: "192.168.1.20", socket.AF_INET6: "2001:db8:1::20"}


@pytest.fixture
def on_a_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(addresses, "lan_address", lambda family=socket.AF_INET: NETWORK[family])


@pytest.mark.usefixtures("on_a_network")
def test_a_server_on_every_interface_is_shown_at_the_network_address() -> None:
    assert shown_url("http://0.0.0.0:8000") == "http://192.168.1.20:8000"
    assert local_url("http://0.0.0.0:8000") == "http://127.0.0.1:8000"


@pytest.mark.usefixtures("on_a_network")
def test_a_server_on_every_ipv6_interface_is_shown_at_ipv6_addresses() -> None:
    """Listening on ``::`` is IPv6 only (asyncio sets IPV6_V6ONLY): an IPv4 address,
    127.0.0.1 included, does not reach it."""
    assert shown_url("http://[::]:8000") == "http://[2001:db8:1::20]:8000"
    assert local_url("http://[::]:8000") == "http://[::1]:8000"


@pytest.mark.usefixtures("on_a_network")
@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://192.168.1.7:8000", "http://[::1]:8000"]
)
def test_a_server_on_one_address_is_shown_at_it(url: str) -> None:
    assert shown_url(url) == url
    assert local_url(url) == url


def test_the_network_address_is_this_computers_or_loopback() -> None:
    address = addresses.lan_address()

    assert address.count(".") == 3 and address != "0.0.0.0"


def _reaches(url: str, port: int) -> bool:
    host = urlsplit(url).hostname
    assert host is not None and urlsplit(url).port == port
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_the_urls_shown_reach_a_server_listening_on_every_interface(host: str) -> None:
    """Listened to as uvicorn listens (asyncio's ``create_server``), the URLs shown for a
    server on every interface connect, on this computer and at its network address."""
    if host == "::" and not socket.has_ipv6:
        pytest.skip("no IPv6 here")

    async def check() -> tuple[bool, bool]:
        try:
            server = await asyncio.get_running_loop().create_server(
                asyncio.Protocol, host=host, port=0
            )
        except OSError:
            pytest.skip(f"cannot listen on {host} here")
        async with server:
            port = server.sockets[0].getsockname()[1]
            bracketed = f"[{host}]" if ":" in host else host
            url = f"http://{bracketed}:{port}"
            return await asyncio.gather(
                asyncio.to_thread(_reaches, local_url(url), port),
                asyncio.to_thread(_reaches, shown_url(url), port),
            )

    here, network = asyncio.run(check())

    assert here, "the URL for this computer does not reach the server"
    assert network, "the network URL does not reach the server"
