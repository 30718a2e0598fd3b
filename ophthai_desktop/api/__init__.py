"""The embedded REST/WebSocket API: thin adapters over the core services."""

from ophthai_desktop.api.app import create_app

__all__ = ["create_app"]
