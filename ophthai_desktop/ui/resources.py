"""Where the icons and the stylesheet are, and loading them.

They ship inside the package (``ophthai_desktop/resources``), found relative to this
file: that works from a source checkout, an editable install, a wheel and a PyInstaller
bundle (which collects the folder as data under the same relative path).
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

from PySide6.QtGui import QIcon

log = logging.getLogger(__name__)

RESOURCES_DIR = Path(__file__).resolve().parent.parent / "resources"
ICONS_DIR = RESOURCES_DIR / "icons"


@cache
def icon(name: str) -> QIcon:
    """The SVG icon ``name`` (without extension); an empty icon if it is missing."""
    path = ICONS_DIR / f"{name}.svg"
    if not path.is_file():
        log.warning("icon %s is missing from %s", name, ICONS_DIR)
        return QIcon()
    return QIcon(str(path))


def stylesheet() -> str:
    """The application's Qt stylesheet, or an empty one if it cannot be read."""
    try:
        return (RESOURCES_DIR / "style.qss").read_text(encoding="utf-8")
    except OSError as exc:
        log.warning("the stylesheet could not be read: %s", exc)
        return ""
