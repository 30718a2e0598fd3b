"""The window's keyboard shortcuts, read from the window itself, for Help ▸ Keyboard
shortcuts.

Nothing here is a list kept by hand: every QAction with a shortcut, every QShortcut and
every button with keys of its own (not its mnemonic), every label's mnemonic that takes
the keyboard to its buddy and the keys that open a date picker's calendar among the
window's children are found as the window is now, so a key added, changed or removed
shows up the next time the dialog opens. A QShortcut has no text of its own: its
``whatsThis`` says what it does.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractButton,
    QDateTimeEdit,
    QDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QStackedWidget,
    QTabWidget,
    QToolButton,
    QWidget,
)

from ophthai_desktop.ui.views.calendar_keys import OPEN_KEYS

#: The group of keys that work wherever the window has the keyboard.
ANYWHERE = "Anywhere in the window"


@dataclass
class ShortcutGroup:
    """The keys of one menu, or of one part of the window."""

    title: str
    #: (what the key does, its keys in the platform's own words), in the menu's order.
    rows: list[tuple[str, str]] = field(default_factory=list)


def plain(text: str) -> str:
    """A menu or button text as read: without its mnemonic's ampersand."""
    return re.sub(r"&(.)", r"\1", text)


def native(sequences: list[QKeySequence]) -> str:
    """Keys as the platform writes them (Ctrl+N here, ⌘N on macOS), alternatives joined.

    A key that only some keyboards have, pressed alone (a standard key's binding: Zoom
    In among Ctrl++'s), is said to be a key, after the others: bare, "Ctrl++ or Zoom In"
    read as if Zoom In were what the row does, not a key to press."""
    typed: list[str] = []
    special: list[str] = []
    for sequence in sequences:
        text = sequence.toString(QKeySequence.SequenceFormat.NativeText)
        if text:
            (special if _keyboard_s_own(sequence) else typed).append(text)
    texts = typed + [f"the keyboard's {text} key" for text in special]
    return " or ".join(dict.fromkeys(texts))


def _keyboard_s_own(sequence: QKeySequence) -> bool:
    """Whether ``sequence`` is one key of those only some keyboards have (media, browser,
    zoom, ...: Qt numbers them from ``Key_Back`` on), without modifiers."""
    if sequence.count() != 1:
        return False
    combination = sequence[0]  # type: ignore[index]  # QKeySequence.operator[]
    return (
        combination.keyboardModifiers() == Qt.KeyboardModifier.NoModifier
        and combination.key().value >= Qt.Key.Key_Back.value
    )


def window_shortcuts(window: QMainWindow) -> list[ShortcutGroup]:
    """Every key of ``window``: its menus' first, menu by menu in the menu bar's order,
    then those of each part of the window (the patient list, the Scans tab, ...) named as
    the part is, each part's keys in the order they were made."""
    groups: dict[str, ShortcutGroup] = {}

    def add(title: str, what: str, keys: list[QKeySequence]) -> None:
        text = native(keys)
        if not text:
            return
        rows = groups.setdefault(title, ShortcutGroup(title)).rows
        for index, (known, known_keys) in enumerate(rows):
            if known == what:  # Return and Enter on the same list: one row
                if text not in known_keys.split(" or "):
                    rows[index] = (known, f"{known_keys} or {text}")
                return
        rows.append((what, text))

    in_menus: set[QAction] = set()
    for menu_action in window.menuBar().actions():
        menu = menu_action.menu()
        if not isinstance(menu, QMenu):
            continue
        groups.setdefault(plain(menu_action.text()), ShortcutGroup(plain(menu_action.text())))
        for action in menu.actions():
            in_menus.add(action)
            if not action.isSeparator() and action.shortcuts():
                add(plain(menu_action.text()), _what(action.text()), action.shortcuts())

    for child in window.findChildren(QObject):
        if isinstance(child, QAction) and child not in in_menus and child.shortcuts():
            owner = child.parent()
            if isinstance(owner, QWidget) and _in_window(owner, window):
                add(_part(owner, window), _what(child.text()), child.shortcuts())
        elif isinstance(child, QShortcut) and child.keys():
            owner = child.parent()  # Qt 6: a QShortcut's parent may be any QObject
            if isinstance(owner, QWidget) and _in_window(owner, window):
                what = child.whatsThis() or "(not described)"
                add(_part(owner, window), what, list(child.keys()))
        elif isinstance(child, QAbstractButton) and _own_keys(child) and _in_window(child, window):
            what = child.whatsThis() or _what(child.text())
            add(_part(child, window), what, [child.shortcut()])
        elif isinstance(child, QLabel) and child.buddy() is not None and _in_window(child, window):
            mnemonic = QKeySequence.mnemonic(child.text())
            buddy = child.buddy()
            field_name = buddy.accessibleName() if buddy is not None else ""
            if not mnemonic.isEmpty():  # Alt+S: to the status filter, wherever the keyboard is
                add(ANYWHERE, f"Go to the {field_name or _what(child.text())}", [mnemonic])
        elif (
            isinstance(child, QDateTimeEdit) and child.calendarPopup() and _in_window(child, window)
        ):
            keys = [QKeySequence(combination) for combination in OPEN_KEYS]
            add(_part(child, window), "Open a date's calendar", keys)
    return [group for group in groups.values() if group.rows]


def shortcuts_html(groups: list[ShortcutGroup], *, how_to_reach_a_part: str) -> str:
    """The groups as headed two-column tables, for a read-only text browser."""
    parts = [
        "<p>Keys under a part of the window work while the keyboard is there: click in "
        f"it, or go to it with {html.escape(how_to_reach_a_part)}.</p>"
    ]
    for group in groups:
        # The same column widths in every table: the keys line up from menu to menu.
        rows = "".join(
            f'<tr><td width="55%" style="padding-right: 12px">{html.escape(what)}</td>'
            f"<td><b>{html.escape(keys)}</b></td></tr>"
            for what, keys in group.rows
        )
        parts.append(f'<h3>{html.escape(group.title)}</h3><table width="100%">{rows}</table>')
    return "".join(parts)


def _what(text: str) -> str:
    """An action's text as a row reads it: "New patient" (no ampersand, no ellipsis)."""
    return plain(text).removesuffix("…")


def _own_keys(button: QAbstractButton) -> bool:
    """Whether a button has keys of its own: not none, not its text's mnemonic (Alt+C
    of "&Cancel"), not a tool button's action's (that action is listed itself)."""
    keys = button.shortcut()
    if keys.isEmpty():
        return False
    if isinstance(button, QToolButton) and button.defaultAction() is not None:
        return False
    return keys != QKeySequence.mnemonic(button.text())


def _in_window(widget: QWidget | None, window: QMainWindow) -> bool:
    """Whether ``widget`` is part of the window itself, not of a dialog it opened."""
    while widget is not None and widget is not window:
        if isinstance(widget, QDialog):
            return False
        widget = widget.parentWidget()
    return widget is window


def _part(widget: QWidget, window: QMainWindow) -> str:
    """The part of the window ``widget`` belongs to, as the clinician knows it: the
    first, going out from it, of a named widget (its accessible name: "Patients",
    "Job queue") or a tab ("Scans tab"); the whole window if none."""
    current: QWidget | None = widget
    while current is not None and current is not window:
        if current.accessibleName():
            return current.accessibleName()
        stack = current.parentWidget()
        tabs = stack.parentWidget() if isinstance(stack, QStackedWidget) else None
        if isinstance(tabs, QTabWidget):
            index = tabs.indexOf(current)
            if index >= 0:
                # "Scans (3)": the count is the patient's, not the tab's name
                name = re.sub(r"\s*\(\d+\)$", "", plain(tabs.tabText(index)))
                return f"{name} tab"
        current = current.parentWidget()
    return ANYWHERE
