"""Where the icons and the stylesheet are, and loading them.

They ship inside the package (``ophthai_desktop/resources``), found relative to this
file: that works from a source checkout, an editable install, a wheel and a PyInstaller
bundle (which collects the folder as data under the same relative path).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from PySide6.QtCore import QCoreApplication
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QAbstractButton, QTabBar, QWidget

log = logging.getLogger(__name__)

RESOURCES_DIR = Path(__file__).resolve().parent.parent / "resources"
ICONS_DIR = RESOURCES_DIR / "icons"


#: The colour the neutral icons are drawn in, and what it becomes in each theme (the
#: coloured ones, approve green and reject red, keep theirs).
ICON_INK = "#37474f"
THEME_INK = {"light": ICON_INK, "dark": "#c9d3d9"}
#: The ink of a disabled icon, where Qt's own greying is not enough: it greys the dark
#: theme's light ink only a little, and on a dark button it looked enabled.
DISABLED_INK = {"dark": "#6b767e"}
#: Sizes a re-inked icon is rendered at (toolbars, buttons, menus; twice for HiDPI).
ICON_SIZES = (16, 20, 24, 32, 40, 48, 64)

#: ``QIcon.cacheKey()`` of every icon handed out -> its name, to redraw it in another
#: theme (copies of a QIcon share its key).
_icon_names: dict[int, str] = {}


def icon(name: str) -> QIcon:
    """The SVG icon ``name`` (without extension) in the current theme's ink; an empty
    icon if it is missing."""
    return _icon(name, current_theme())


@cache
def _icon(name: str, theme: str) -> QIcon:
    path = ICONS_DIR / f"{name}.svg"
    if not path.is_file():
        log.warning("icon %s is missing from %s", name, ICONS_DIR)
        return QIcon()
    ink = THEME_INK.get(theme, ICON_INK)
    # The files' own ink: Qt's SVG icon engine draws them when asked, at any size.
    made = QIcon(str(path)) if ink == ICON_INK else _inked(path, ink, DISABLED_INK.get(theme))
    _icon_names[made.cacheKey()] = name
    return made


def _inked(path: Path, ink: str, disabled_ink: str | None = None) -> QIcon:
    """The icon redrawn in ``ink`` (and, disabled, in ``disabled_ink`` if given),
    rendered at each of :data:`ICON_SIZES`."""
    source = path.read_text(encoding="utf-8")
    made = QIcon()
    inks = [(ink, QIcon.Mode.Normal)]
    if disabled_ink is not None and ICON_INK in source:  # coloured icons keep Qt's greying
        inks.append((disabled_ink, QIcon.Mode.Disabled))
    for colour, mode in inks:
        svg = source.replace(ICON_INK, colour)
        for size in ICON_SIZES:  # an SVG's own size is 24
            sized = svg.replace('width="24" height="24"', f'width="{size}" height="{size}"', 1)
            pixmap = QPixmap()
            if pixmap.loadFromData(sized.encode(), "SVG"):
                made.addPixmap(pixmap, mode)
    if made.isNull():
        log.warning("icon %s could not be drawn", path.stem)
    return made


def retint_icons(widgets: Iterable[QWidget]) -> None:
    """Give the buttons, tabs and actions among ``widgets`` their icons in the current theme
    (the icons made before a theme change keep the ink they were drawn in)."""
    theme = current_theme()

    def redrawn(current: QIcon) -> QIcon | None:
        name = _icon_names.get(current.cacheKey())
        return None if name is None else _icon(name, theme)

    for widget in widgets:
        if isinstance(widget, QAbstractButton) and (new := redrawn(widget.icon())) is not None:
            widget.setIcon(new)
        if isinstance(widget, QTabBar):
            for index in range(widget.count()):
                if (new := redrawn(widget.tabIcon(index))) is not None:
                    widget.setTabIcon(index, new)
        for action in widget.actions():
            if (new := redrawn(action.icon())) is not None:
                action.setIcon(new)


def current_theme() -> str:
    """``light`` or ``dark``: the look the application was last switched to."""
    app = QCoreApplication.instance()
    value = app.property("ophthaiTheme") if app is not None else None
    return str(value) if value else "light"


def stylesheet() -> str:
    """The application's Qt stylesheet, or an empty one if it cannot be read."""
    try:
        return (RESOURCES_DIR / "style.qss").read_text(encoding="utf-8")
    except OSError as exc:
        log.warning("the stylesheet could not be read: %s", exc)
        return ""
