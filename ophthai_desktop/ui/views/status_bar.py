"""The status bar: model state, API server address, watch-folder state."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, Slot
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QLabel, QMessageBox, QStatusBar, QWidget

from ophthai_desktop.ui.views.style import set_style_property, set_text


class AppStatusBar(QStatusBar):
    """Three permanent fields; ``kind`` is ``ok``, ``warn``, ``error`` or empty.

    A field says its state in a few words; the reason (a watch folder's error, which
    names the folder) is in its tooltip, which a screen reader reads as the field's
    description. A click on the watch-folder field, or View ▸ Watch folder status…
    (:meth:`show_watcher_details`), shows the reason in a box of its own: the tooltip
    alone needed the mouse held still over it.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("statusBar")
        self.model = QLabel("Model: …")
        self.model.setObjectName("modelState")
        self.api = QLabel("API: …")
        self.api.setObjectName("apiState")
        self.watcher = QLabel("Watch folder: …")
        self.watcher.setObjectName("watcherState")
        self.watcher.setCursor(Qt.CursorShape.PointingHandCursor)
        self.watcher.installEventFilter(self)
        for label in (self.model, self.api, self.watcher):
            self.addPermanentWidget(label)
        #: The watch folder's details, while open.
        self.watcher_details: QMessageBox | None = None

    def set_model(self, text: str, kind: str, tooltip: str) -> None:
        self._set(self.model, text, kind, tooltip)

    def set_api(self, text: str, kind: str, tooltip: str = "") -> None:
        self._set(self.api, text, kind, tooltip)

    def set_watcher(self, text: str, kind: str, tooltip: str = "") -> None:
        self._set(self.watcher, text, kind, tooltip)
        box = self.watcher_details
        if box is not None:  # open: it follows the state (the next retry, the fix)
            box.setText(self.watcher.text())
            box.setInformativeText(tooltip)

    @Slot()
    def show_watcher_details(self) -> None:
        """Show the watch folder's state and its reason (the folder, the error) in a
        box that stays until closed, its text selectable to copy."""
        box = self.watcher_details
        if box is None:
            box = QMessageBox(self.window())
            box.setWindowTitle("Watch folder")
            box.setIcon(QMessageBox.Icon.Information)
            box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.finished.connect(self._on_watcher_details_finished)
            self.watcher_details = box
        box.setText(self.watcher.text())
        box.setInformativeText(self.watcher.toolTip())
        box.open()

    @Slot()
    def _on_watcher_details_finished(self) -> None:
        self.watcher_details = None

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (
            watched is self.watcher
            and isinstance(event, QMouseEvent)
            and event.type() == QEvent.Type.MouseButtonRelease
            and event.button() == Qt.MouseButton.LeftButton
            and self.watcher.rect().contains(event.position().toPoint())
        ):
            self.show_watcher_details()
            return True
        return super().eventFilter(watched, event)

    @staticmethod
    def _set(label: QLabel, text: str, kind: str, tooltip: str) -> None:
        set_text(label, text)
        if label.toolTip() != tooltip:
            label.setToolTip(tooltip)  # also its accessible description (Qt's default)
        set_style_property(label, "kind", kind)
