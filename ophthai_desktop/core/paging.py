"""Bounded paging shared by every list operation."""

from __future__ import annotations

from ophthai_desktop.core.errors import InvalidInput

MAX_LIMIT = 500


def check_paging(skip: int, limit: int) -> None:
    """Refuse a page outside ``skip >= 0`` and ``1 <= limit <= MAX_LIMIT``."""
    if skip < 0:
        raise InvalidInput("skip must be 0 or more", field="skip")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
