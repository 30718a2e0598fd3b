"""Putting text that should not outlive its use on the clipboard."""

from __future__ import annotations

from PySide6.QtCore import QMimeData
from PySide6.QtGui import QGuiApplication

#: Formats that clipboard managers honour to keep an entry out of their history:
#: KDE's Klipper and others on Linux, and Windows' clipboard history and cloud sync.
HISTORY_EXCLUSION_FORMATS = (
    "x-kde-passwordManagerHint",
    'application/x-qt-windows-mime;value="ExcludeClipboardContentFromMonitorProcessing"',
)


def copy_private(text: str) -> None:
    """Put ``text`` on the clipboard, asking clipboard managers not to keep it (a
    patient's result, an API token); pasting it works as usual."""
    data = QMimeData()
    data.setText(text)
    for name in HISTORY_EXCLUSION_FORMATS:
        data.setData(name, b"secret")
    QGuiApplication.clipboard().setMimeData(data)
