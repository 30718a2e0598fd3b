"""The status bar: model state, API server address, watch-folder state."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

from ophthai_desktop.ui.views.style import set_style_property, set_text


class AppStatusBar(QStatusBar):
    """Three permanent fields; ``kind`` is ``ok``, ``warn``, ``error`` or empty."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("statusBar")
        self.model = QLabel("Model: …")
        self.model.setObjectName("modelState")
        self.api = QLabel("API: …")
        self.api.setObjectName("apiState")
        self.watcher = QLabel("Watch folder: …")
        self.watcher.setObjectName("watcherState")
        for label in (self.model, self.api, self.watcher):
            self.addPermanentWidget(label)

    def set_model(self, text: str, kind: str, tooltip: str) -> None:
        self._set(self.model, text, kind, tooltip)

    def set_api(self, text: str, kind: str, tooltip: str = "") -> None:
        self._set(self.api, text, kind, tooltip)

    def set_watcher(self, text: str, kind: str, tooltip: str = "") -> None:
        self._set(self.watcher, text, kind, tooltip)

    @staticmethod
    def _set(label: QLabel, text: str, kind: str, tooltip: str) -> None:
        set_text(label, text)
        if label.toolTip() != tooltip:
            label.setToolTip(tooltip)
        set_style_property(label, "kind", kind)
