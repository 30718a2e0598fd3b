"""Quantities written for people."""

from __future__ import annotations


def format_bytes(size: float) -> str:
    """A size for people in decimal units: ``'16.4 GB'``, ``'2.0 KB'``, ``'512 B'``."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
