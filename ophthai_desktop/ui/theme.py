"""The light and dark looks: the application stylesheet, and for the dark one a dark
Fusion palette with a few stylesheet overrides on top."""

from __future__ import annotations

from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication

from ophthai_desktop.ui.resources import current_theme, retint_icons, stylesheet
from ophthai_desktop.ui.views.scale import font_sized

#: Overrides of the light stylesheet's explicit colours (appended, so they win). Text
#: colours keep WCAG AA's 4.5:1 on #1e2226 / #23282d (the light ones were 2.4 to 3.8),
#: placeholders too (the text colour at half opacity was 4.2). Qt's tray balloon (X11
#: without a notification service) stays pale yellow: its text stays dark.
DARK_QSS = """
QMainWindow, QDialog { background: #1e2226; }
QToolBar { background: #262b30; border-bottom: 1px solid #3a4148; }
QToolBar QToolButton:hover { background: #33414a; }
QDockWidget::title { background: #2a3036; color: #e3e7ea; }
QTableView, QListView, QListWidget, QPlainTextEdit, QTextBrowser {
    background: #23282d; color: #e3e7ea; alternate-background-color: #282e33;
    selection-background-color: #24566a; selection-color: #ffffff;
    border: 1px solid #3a4148;
}
QTableView { gridline-color: #3a4148; }
QHeaderView::section {
    background: #2c3238; color: #e3e7ea;
    border-right: 1px solid #3a4148; border-bottom: 1px solid #3a4148;
}
QLineEdit, QComboBox, QSpinBox, QDateEdit, QDateTimeEdit {
    background: #23282d; color: #e3e7ea;
}
QLineEdit, QPlainTextEdit, QTextEdit { placeholder-text-color: #9aa7b0; }
QLineEdit:disabled, QComboBox:disabled, QSpinBox:disabled, QDateEdit:disabled,
QDateTimeEdit:disabled, QLineEdit:read-only { background: #1e2226; color: #6b767e; }
QLineEdit[invalid="true"], QPlainTextEdit[invalid="true"], QSpinBox[invalid="true"],
QComboBox[invalid="true"], QDateEdit[invalid="true"] { background: #4a2326; }
QLabel#fieldError { color: #f28b82; }
QListWidget#thumbnails[compact="true"]::item:selected { border: 2px solid #6cc3de; }
QLabel#patientName { color: #f1f4f6; }
QLabel#patientId, QLabel#muted, QLabel#emptyHint, QLabel#stepLabel { color: #9aa7b0; }
QLabel#stepLabel[state="current"] { color: #6cc3de; }
QLabel#stepLabel[state="done"] { color: #81c995; }
/* The steps to do recede as in the light theme (its pale grey was a white line here). */
QLabel#stepDot { background: #3a4148; color: #dfe5ea; }
QFrame#stepLine { background: #3a4148; }
QLabel#sectionTitle { color: #6cc3de; }
QFrame#resultCard { background: #23282d; }
/* The light look's pale trough was a white bar on the dark card. Its figure is drawn in
   one colour over the chunk and the trough alike: light on both (5.5 and 11.7:1). */
QProgressBar#confidence { background: #2c3238; border-color: #4a535b; color: #f1f4f6; }
QProgressBar#confidence::chunk { background: #1f6b80; }
QLabel#classification { color: #f1f4f6; }
QLabel#analysisState { color: #6cc3de; }
QLabel#analysisState[kind="error"] { color: #f28b82; }
QStatusBar QLabel[kind="ok"] { color: #81c995; }
QStatusBar QLabel[kind="warn"] { color: #f6c26b; }
QStatusBar QLabel[kind="error"] { color: #f28b82; }
QDialog#modelManagerDialog QLabel[kind="ok"], QDialog#serverDialog QLabel[kind="ok"] {
    color: #81c995;
}
QDialog#modelManagerDialog QLabel[kind="warn"], QDialog#serverDialog QLabel[kind="warn"] {
    color: #f6c26b;
}
QDialog#modelManagerDialog QLabel[kind="error"], QDialog#serverDialog QLabel[kind="error"] {
    color: #f28b82;
}
QFrame#banner { background: #4a3a1c; color: #f5e6c8; }
QFrame#banner[kind="error"] { background: #4a2326; color: #f6d5d3; }
QFrame#banner[kind="info"] { background: #1d3a47; color: #d3ecf5; }
QBalloonTip QLabel { color: #1b1b1b; }
"""


def dark_palette() -> QPalette:
    palette = QPalette()
    window, base, text = QColor("#1e2226"), QColor("#23282d"), QColor("#e3e7ea")
    for role, colour in (
        (QPalette.ColorRole.Window, window),
        (QPalette.ColorRole.WindowText, text),
        (QPalette.ColorRole.Base, base),
        (QPalette.ColorRole.AlternateBase, QColor("#282e33")),
        (QPalette.ColorRole.Text, text),
        (QPalette.ColorRole.Button, QColor("#2c3238")),
        (QPalette.ColorRole.ButtonText, text),
        (QPalette.ColorRole.ToolTipBase, base),
        (QPalette.ColorRole.ToolTipText, text),
        (QPalette.ColorRole.Highlight, QColor("#24566a")),
        (QPalette.ColorRole.HighlightedText, QColor("#ffffff")),
        (QPalette.ColorRole.PlaceholderText, QColor("#9aa7b0")),
        (QPalette.ColorRole.Link, QColor("#6cc3de")),
    ):
        palette.setColor(role, colour)
    # Dimmed when disabled, as the light look's are: a label's or a check box's text
    # (WindowText) too, which stayed as bright as an enabled one's (the validation form's
    # labels before a result, Settings' tray box where there is no tray).
    for role in (
        QPalette.ColorRole.Text,
        QPalette.ColorRole.ButtonText,
        QPalette.ColorRole.WindowText,
    ):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6b767e"))
    return palette


#: The controls whose keyboard focus Fusion marks with a ring in their palette's
#: Highlight, darkened: in the dark look that is the selection's dark teal, and the ring
#: was #1d4555 on #1e2226 (1.5:1), unseen. Theirs is lighter (the ring 3:1 at least);
#: the text fields and lists keep the selection's, which is behind white selected text.
FOCUS_RING_CLASSES = ("QAbstractButton", "QTabBar", "QComboBox", "QSlider")
DARK_FOCUS_HIGHLIGHT = QColor("#6cc3de")


def application_stylesheet(theme: str, font: QFont) -> str:
    """The ``light`` or ``dark`` look's stylesheet, its text sizes in proportion to
    ``font`` (the application's)."""
    return font_sized(stylesheet() + (DARK_QSS if theme == "dark" else ""), font)


def apply_theme(theme: str) -> None:
    """Switch the running application to the ``light`` or ``dark`` look."""
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        return
    palette = dark_palette() if theme == "dark" else app.style().standardPalette()
    app.setPalette(palette)
    focus = QPalette(palette)
    if theme == "dark":
        focus.setColor(QPalette.ColorRole.Highlight, DARK_FOCUS_HIGHLIGHT)
    for name in FOCUS_RING_CLASSES:
        app.setPalette(focus, name)  # type: ignore[arg-type]  # the stub says bytes; PySide takes str
    app.setStyleSheet(application_stylesheet(theme, app.font()))
    app.setProperty("ophthaiTheme", theme)
    retint_icons(app.allWidgets())


def follow_application_font(theme: str | None = None) -> None:
    """Size the stylesheet of ``theme`` (the one applied last, unless given) for the
    application font, as it is now (the desktop's font setting changed, or it was set
    before the window was built); nothing to do when it already is."""
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        return
    sized = application_stylesheet(theme or current_theme(), app.font())
    if app.styleSheet() != sized:  # setting it again restyles every widget
        app.setStyleSheet(sized)
