"""API fixtures: the app factory's TestClient over fresh services."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from ophthai_desktop.api import create_app
from ophthai_desktop.bootstrap import Application
from tests.support.http import LoopbackClient


@pytest.fixture
def client(sqlite_services: Application) -> Iterator[TestClient]:
    with LoopbackClient(create_app(sqlite_services)) as test_client:
        yield test_client
