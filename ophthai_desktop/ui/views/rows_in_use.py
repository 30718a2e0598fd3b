"""How many of a list's loaded rows the clinician is using: those down to the last one
in view, and the chosen one."""

from __future__ import annotations

from PySide6.QtCore import QPoint
from PySide6.QtWidgets import QAbstractItemView


def rows_in_use(view: QAbstractItemView) -> int:
    """The rows from the top of ``view`` that a trimmed list must keep: down to the last
    one shown (none while the view is hidden) and the current one. With its end in view
    (the rows end above the viewport's bottom) every row is in use."""
    current = view.currentIndex()
    kept = current.row() + 1 if current.isValid() else 0
    if view.isVisible():
        viewport = view.viewport()
        bottom = view.indexAt(QPoint(1, viewport.height() - 1))
        rows = view.model().rowCount()
        kept = max(kept, bottom.row() + 1 if bottom.isValid() else rows)
    return kept
