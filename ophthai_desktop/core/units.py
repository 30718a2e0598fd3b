"""Quantities written for people."""

from __future__ import annotations

from datetime import datetime


def format_bytes(size: float) -> str:
    """A size for people in decimal units: ``'16.4 GB'``, ``'2.0 KB'``, ``'512 B'``."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def local_time(moment: datetime, *, seconds: bool = False) -> str:
    """``moment`` as a clinician reads it: in this computer's zone, as the window shows
    times, with the zone's offset so that it still reads right on a client elsewhere:
    ``'2026-05-09 14:03 (UTC+02:00)'`` (``'14:03:12'`` with ``seconds``). A naive
    ``moment`` is taken as local time."""
    local = moment.astimezone()
    offset = local.strftime("%z") or "+0000"
    clock = "%H:%M:%S" if seconds else "%H:%M"
    return f"{local.strftime('%Y-%m-%d ' + clock)} (UTC{offset[:3]}:{offset[3:5]})"
