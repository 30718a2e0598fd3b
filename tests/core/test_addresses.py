"""The URLs people open to reach the API server: the window's status bar and
``ophthai serve`` show the same ones."""

from __future__ import annotations

import pytest

from ophthai_desktop.core import addresses
from ophthai_desktop.core.addresses import local_url, shown_url


@pytest.fixture
def on_a_network(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(addresses, "lan_address", lambda: "192.168.1.20")
    return "192.168.1.20"


@pytest.mark.parametrize("host", ["0.0.0.0", "[::]"])
def test_a_server_on_every_interface_is_shown_at_the_network_address(
    on_a_network: str, host: str
) -> None:
    assert shown_url(f"http://{host}:8000") == "http://192.168.1.20:8000"
    assert local_url(f"http://{host}:8000") == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://192.168.1.7:8000", "http://[::1]:8000"]
)
def test_a_server_on_one_address_is_shown_at_it(on_a_network: str, url: str) -> None:
    assert shown_url(url) == url
    assert local_url(url) == url


def test_the_network_address_is_this_computers_or_loopback() -> None:
    address = addresses.lan_address()

    assert address.count(".") == 3 and address != "0.0.0.0"
