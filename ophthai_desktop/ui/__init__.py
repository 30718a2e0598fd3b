"""PySide6 desktop user interface (views, dialogs, tray, event bridge)."""
