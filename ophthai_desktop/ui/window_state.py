"""Remembering the window's geometry, docks, splitter positions, the column widths the
clinician dragged, and the patient list's hidden columns, order and open patient between
runs (a patient id, never a name)
(QSettings, INI format in the user's configuration folder; tests point it elsewhere
with ``QSettings.setPath``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from PySide6.QtCore import QByteArray, QSettings, Qt
from PySide6.QtWidgets import QMainWindow, QSplitter, QWidget

from ophthai_desktop.ui.views.columns import FittedColumns

log = logging.getLogger(__name__)

ORGANIZATION = "OphthAI"
APPLICATION = "OphthAI Desktop"


def window_settings() -> QSettings:
    """The store of window state (never the clinical settings: those are in
    ``settings.env``)."""
    return QSettings(
        QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION
    )


def _splitters(window: QMainWindow) -> dict[str, QSplitter]:
    """The window's named splitters (unnamed ones are not remembered)."""
    return {s.objectName(): s for s in window.findChildren(QSplitter) if s.objectName()}


def _fitted_tables(window: QMainWindow) -> dict[str, FittedColumns]:
    """The columns of the window's named tables that fit their width (see
    :class:`FittedColumns`), by the table's name."""
    found: dict[str, FittedColumns] = {}
    for columns in window.findChildren(FittedColumns):
        table = columns.parent()
        if table is not None and table.objectName():
            found[table.objectName()] = columns
    return found


def save_window_state(window: QMainWindow) -> None:
    """Store the geometry, the toolbars and docks, every named splitter and the column
    widths dragged in every named table."""
    store = window_settings()
    store.setValue("window/geometry", window.saveGeometry())
    store.setValue("window/state", window.saveState())
    for name, splitter in _splitters(window).items():
        store.setValue(f"splitters/{name}", splitter.saveState())
    for name, columns in _fitted_tables(window).items():
        store.setValue(f"column_widths/{name}", columns.dragged_widths())
    store.sync()


def restore_window_state(window: QMainWindow) -> bool:
    """Put back what :func:`save_window_state` stored; False when nothing was."""
    store = window_settings()
    geometry = store.value("window/geometry")
    if not isinstance(geometry, QByteArray | bytes):
        return False
    window.restoreGeometry(QByteArray(geometry))
    state = store.value("window/state")
    if isinstance(state, QByteArray | bytes):
        window.restoreState(QByteArray(state))
    for name, splitter in _splitters(window).items():
        saved = store.value(f"splitters/{name}")
        if isinstance(saved, QByteArray | bytes):
            splitter.restoreState(QByteArray(saved))
    for name, columns in _fitted_tables(window).items():
        widths = store.value(f"column_widths/{name}")
        if isinstance(widths, str):
            columns.restore_dragged_widths(widths)
    return True


def fit_on_screen(window: QWidget) -> bool:
    """Maximise ``window`` where it is larger than its screen's free area; True if so.

    The window first opens at 1440 x 900: on a 1024 x 768 or 1280 x 720 screen the
    patient page's right side, the job queue and the status bar were off the screen.
    Its size is also set to that area, for a desktop without a window manager to
    maximise it.
    """
    free = window.screen().availableGeometry()
    if window.width() <= free.width() and window.height() <= free.height():
        return False
    window.setGeometry(free)
    window.setWindowState(window.windowState() | Qt.WindowState.WindowMaximized)
    return True


def hidden_columns(table: str) -> list[str]:
    """The keys of the columns of ``table`` hidden when the app last closed."""
    saved = window_settings().value(f"columns/{table}/hidden")
    if isinstance(saved, str):  # QSettings gives a one-item list back as a string
        return [saved] if saved else []
    return [str(key) for key in saved] if isinstance(saved, list) else []


def save_hidden_columns(table: str, keys: list[str]) -> None:
    store = window_settings()
    store.setValue(f"columns/{table}/hidden", keys)
    store.sync()


@dataclass(frozen=True)
class ListPlace:
    """Where the clinician left the patient list: its order and the open patient."""

    order_by: str | None = None  # None: the default order (newest first)
    descending: bool = True
    patient_id: str | None = None


def list_place() -> ListPlace:
    """The patient list's order and open patient when the app last closed."""
    store = window_settings()
    order_by = store.value("patients/order_by")
    descending = store.value("patients/descending")
    patient_id = store.value("patients/open")
    return ListPlace(
        order_by=str(order_by) if order_by else None,
        # INI files give booleans back as strings
        descending=str(descending).lower() != "false",
        patient_id=str(patient_id) if patient_id else None,
    )


def save_list_place(place: ListPlace) -> None:
    store = window_settings()
    store.setValue("patients/order_by", place.order_by or "")
    store.setValue("patients/descending", place.descending)
    store.setValue("patients/open", place.patient_id or "")
    store.sync()
