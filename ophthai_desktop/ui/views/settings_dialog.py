"""The settings dialog: what a clinician or administrator changes (DESIGN §8). Layout
only; the settings controller validates, saves and applies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QRect, QSize, Qt, Signal, Slot
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QBoxLayout,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QStyle,
    QStyleOptionFrame,
    QVBoxLayout,
    QWidget,
)

from ophthai_desktop.core.settings import Settings
from ophthai_desktop.ui.views.announce import announce
from ophthai_desktop.ui.views.reflow import set_side_by_side
from ophthai_desktop.ui.views.style import set_style_property, set_text
from ophthai_desktop.ui.views.tall_enough import TallEnough

RESTART_NOTE = "(restart needed)"
DEVICES = ("auto", "cuda", "cuda:0", "mps", "cpu")
QUANTIZATIONS = ("none", "8bit", "4bit")
THEMES = ("light", "dark")
#: The polling interval's range (seconds): a tenth of a second already costs a share a
#: listing ten times a second; beyond 10 minutes scans would wait too long.
POLL_SECONDS_MIN = 0.1
#: Why "Keep running in the tray" is off on a desktop without a system tray.
NO_TRAY = (
    "This desktop has no system tray: closing the window quits OphthAI (alerts show in the window)."
)
POLL_SECONDS_MAX = 600.0


def _spin(low: int, high: int, step: int = 1) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setGroupSeparatorShown(True)
    return spin


def _with_button(edit: QLineEdit, button: QPushButton) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit, 1)
    layout.addWidget(button)
    return row


class DefaultPathEdit(QLineEdit):
    """A folder's field whose hint is the default folder, elided in the middle where the
    field is narrower than it ("/home/clinician/…/OphthAI/incoming_scans"): the end
    names the folder, which a hint cut at its end lost. The whole path is
    :attr:`default_path` (the dialog shows it in the tooltip)."""

    def __init__(self) -> None:
        super().__init__()
        self.default_path = ""

    def set_default_path(self, path: str) -> None:
        self.default_path = path
        self._elide_hint()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide_hint()  # a dialog's field: resized seldom, never while painted

    def _elide_hint(self) -> None:
        # The room QLineEdit draws its text in: the style's contents rectangle less its
        # text margins and its own 2 px each side.
        option = QStyleOptionFrame()
        self.initStyleOption(option)
        contents = self.style().subElementRect(QStyle.SubElement.SE_LineEditContents, option, self)
        margins = self.textMargins()
        room = contents.width() - margins.left() - margins.right() - 4
        hint = self.fontMetrics().elidedText(self.default_path, Qt.TextElideMode.ElideMiddle, room)
        self.setPlaceholderText(hint)


def _add_path_row(
    form: QFormLayout, label: str, edit: QLineEdit, button: QPushButton | None = None
) -> None:
    """A folder's field under its label, across the group's whole width: beside the
    labels, at 1024 x 768, a path was cut after 25 characters ("…/incoming_s…")."""
    title = QLabel(label)
    title.setBuddy(edit)
    form.addRow(title)
    form.addRow(edit if button is None else _with_button(edit, button))


def _note(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("muted")
    label.setWordWrap(True)
    return label


class SettingsDialog(QDialog):
    """Edits the settings the running application can take (or takes at restart).

    Signals:
        save_requested(dict): OK was pressed; the values the clinician changed from
            those shown, by Settings field name.
    """

    save_requested = Signal(dict)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        TallEnough(self)  # a message or note of two lines shown whole
        self.setObjectName("settingsDialog")
        self.setWindowTitle("Settings")

        # Desktop
        self.user_name = QLineEdit()
        self.user_name.setPlaceholderText("the operating-system user")
        self.theme = QComboBox()
        self.theme.addItems(THEMES)
        self.minimize_to_tray = QCheckBox("Keep running in the tray when closed")
        self.minimize_to_tray.setToolTip(
            "Closing the window keeps OphthAI running in the tray (where there is one)"
        )
        #: Why the tray box is off where the desktop has no system tray (hidden else).
        self.no_tray = _note(NO_TRAY)
        self.no_tray.hide()
        desktop = QGroupBox("Desktop")
        form = QFormLayout(desktop)
        form.addRow("Name in the audit trail", self.user_name)
        form.addRow("Theme", self.theme)
        form.addRow("", self.minimize_to_tray)
        form.addRow("", self.no_tray)

        # Data and watch folder
        self.data_dir = QLineEdit()
        self.data_dir.setReadOnly(True)
        self.watch_folder_enabled = QCheckBox("Take in images from the watch folder")
        self.watch_folder_path = DefaultPathEdit()
        self.browse_watch = QPushButton("Browse…")
        self.watch_demo_mode = QCheckBox("Demo mode")
        self.watch_folder_require_mount = QCheckBox("Watch only while a share is mounted on it")
        self.watch_folder_require_mount.setToolTip(
            "For a watch folder that is a network share's mount point: while the share is "
            "not mounted, the empty folder under it is not watched and nothing is made in it"
        )
        self.watch_use_polling = QCheckBox("Poll the folder (network shares)")
        self.watch_use_polling.setToolTip(
            "Look for new files every few seconds instead of waiting for the system's "
            "file events, which a share does not send for files other computers write"
        )
        self.watch_poll_seconds = QDoubleSpinBox()
        self.watch_poll_seconds.setRange(POLL_SECONDS_MIN, POLL_SECONDS_MAX)
        self.watch_poll_seconds.setDecimals(1)
        self.watch_poll_seconds.setSingleStep(0.5)
        self.watch_poll_seconds.setSuffix(" s")
        self.watch_poll_seconds.setToolTip(
            "How often the folder is looked at when it is polled: when asked for above, "
            "or when the system's file events are unavailable"
        )
        data = QGroupBox("Data and watch folder")
        form = QFormLayout(data)
        _add_path_row(form, f"Data folder {RESTART_NOTE}", self.data_dir)
        form.addRow("", _note("Set OPHTHAI_DATA_DIR to move it; then restart."))
        form.addRow("", self.watch_folder_enabled)
        _add_path_row(form, "Watch folder", self.watch_folder_path, self.browse_watch)
        form.addRow("", self.watch_demo_mode)
        form.addRow(
            "", _note("Demo mode files a scan without a patient id under a new demo patient.")
        )
        form.addRow("", self.watch_folder_require_mount)
        form.addRow("", self.watch_use_polling)
        form.addRow("Polling interval", self.watch_poll_seconds)

        # Embedded API
        self.api_enabled = QCheckBox("Run the embedded API server")
        self.api_host = QLineEdit()
        self.api_port = _spin(0, 65535)
        self.api_port.setGroupSeparatorShown(False)
        self.api_token = QLineEdit()
        self.api_token.setEchoMode(QLineEdit.EchoMode.PasswordEchoOnEdit)
        self.api_token.setPlaceholderText("required when the host is not 127.0.0.1")
        self.cors_origins = QLineEdit()
        # Empty is no origin at all, not a default: examples would read as values in effect.
        self.cors_origins.setPlaceholderText("none: no browser page may call the API")
        api = QGroupBox(f"Embedded API {RESTART_NOTE}")
        form = QFormLayout(api)
        form.addRow("", self.api_enabled)
        form.addRow("Host", self.api_host)
        form.addRow("Port", self.api_port)
        form.addRow("API token", self.api_token)
        form.addRow("CORS origins", self.cors_origins)

        # Model
        self.model_id = QLineEdit()
        self.model_path = QLineEdit()
        self.model_path.setPlaceholderText("unset: use model id")
        self.browse_model = QPushButton("Browse…")
        self.device = QComboBox()
        self.device.setEditable(True)
        self.device.addItems(DEVICES)
        self.quantization = QComboBox()
        self.quantization.addItems(QUANTIZATIONS)
        self.max_new_tokens = _spin(1, 32_768, 64)
        self.thinking_budget = _spin(0, 32_768, 64)
        self.max_pixels = _spin(3136, 50_000_000, 65_536)
        self.load_model_on_startup = QCheckBox("Load the model when the app starts")
        model = QGroupBox("Model (generation: next analysis; model, device: next load)")
        form = QFormLayout(model)
        form.addRow("Model id", self.model_id)
        _add_path_row(form, "Model folder", self.model_path, self.browse_model)
        form.addRow("Device", self.device)
        form.addRow("Quantization", self.quantization)
        form.addRow("Max new tokens", self.max_new_tokens)
        form.addRow("Thinking budget (tokens)", self.thinking_budget)
        form.addRow("Max pixels per image", self.max_pixels)
        form.addRow("", self.load_model_on_startup)

        self.error = QLabel()
        self.error.setObjectName("fieldError")
        self.error.setWordWrap(True)
        self.error.hide()
        #: What OK is checking (the folder, the port) while OK waits for it.
        self.checking = _note("")
        self.checking.setObjectName("checking")
        self.checking.hide()
        self.saved_to = _note("")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )

        # Side by side where the screen is wide enough, else one under the other; the
        # groups scroll where the screen is not tall enough (a large font at 1024 x 768
        # made the dialog 1321 x 691 px, OK and Cancel off the screen).
        self.columns = QBoxLayout(QBoxLayout.Direction.LeftToRight)
        left = QVBoxLayout()
        left.addWidget(data)
        left.addWidget(api)
        left.addStretch(1)
        right = QVBoxLayout()
        right.addWidget(desktop)
        right.addWidget(model)
        right.addStretch(1)
        self.columns.addLayout(left, 1)
        self.columns.addLayout(right, 1)
        groups = self._groups = QWidget()
        groups.setLayout(self.columns)
        self.columns.setContentsMargins(0, 0, 0, 0)
        self.scroll_area = QScrollArea()
        self.scroll_area.setObjectName("settingsGroups")
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll_area.setWidget(groups)
        layout = self._layout = QVBoxLayout(self)
        layout.addWidget(self.scroll_area, 1)
        layout.addWidget(self.error)
        layout.addWidget(self.checking)
        layout.addWidget(self.saved_to)
        layout.addWidget(self.buttons)

        #: The widget of each Settings field the dialog edits.
        self.fields: dict[str, QWidget] = {
            name: getattr(self, name)
            for name in (
                "user_name",
                "theme",
                "minimize_to_tray",
                "watch_folder_enabled",
                "watch_folder_path",
                "watch_demo_mode",
                "watch_folder_require_mount",
                "watch_use_polling",
                "watch_poll_seconds",
                "api_enabled",
                "api_host",
                "api_port",
                "api_token",
                "cors_origins",
                "model_id",
                "model_path",
                "device",
                "quantization",
                "max_new_tokens",
                "thinking_budget",
                "max_pixels",
                "load_model_on_startup",
            )
        }
        self._tray_available = True
        #: What :meth:`set_settings` showed, as :meth:`values` reads it.
        self._shown: dict[str, Any] = {}
        #: Fields whose value (a folder's path, the origins) is often wider than the
        #: field, cut short there: the tooltip shows it whole, or the hint where it is
        #: empty (the watch folder's default path, as long as the data folder's).
        self.whole_in_tooltip = (
            self.data_dir,
            self.watch_folder_path,
            self.model_path,
            self.cors_origins,
        )
        for edit in self.whole_in_tooltip:
            edit.textChanged.connect(self._on_long_field_text_changed)
        # The first field a clinician can change has the focus when the dialog opens,
        # not the read-only data folder before it.
        self.first_field().setFocus(Qt.FocusReason.OtherFocusReason)
        self.buttons.accepted.connect(self._on_buttons_accepted)
        self.buttons.rejected.connect(self.reject)
        self.browse_watch.clicked.connect(self._on_browse_watch_clicked)
        self.browse_model.clicked.connect(self._on_browse_model_clicked)

    # Filling and reading ------------------------------------------------------------

    def set_settings(self, settings: Settings, *, saved_to: Path | None = None) -> None:
        """Show ``settings`` in the widgets."""
        self.data_dir.setText(str(settings.data_dir))
        self.data_dir.setCursorPosition(0)
        self.watch_folder_path.set_default_path(str(settings.data_dir / "incoming_scans"))
        self._on_long_field_text_changed()  # the hint changed
        for name, widget in self.fields.items():
            value = getattr(settings, name)
            if isinstance(widget, QCheckBox):
                widget.setChecked(bool(value))
            elif isinstance(widget, QSpinBox):
                widget.setValue(int(value))
            elif isinstance(widget, QDoubleSpinBox):
                widget.setValue(float(value))
            elif isinstance(widget, QComboBox):
                widget.setCurrentText(str(value))
            elif isinstance(widget, QLineEdit):
                if isinstance(value, list):
                    widget.setText(", ".join(value))
                else:
                    widget.setText("" if value is None else str(value))
                # A value wider than its field reads from its start (setText leaves it
                # scrolled to its end, cut in the middle of a path or an origin).
                widget.setCursorPosition(0)
        if saved_to is not None:
            set_text(self.saved_to, f"Saved to {saved_to}")
        self.show_error("")
        # As the widgets read them back (a number beyond a box's range is shown cut to
        # it): a field left alone is no change, whatever it holds.
        self._shown = self.values()
        if not self._tray_available:
            self._show_no_tray()

    def set_tray_available(self, available: bool) -> None:
        """Whether this session has a system tray. Without one, closing the window
        quits: "Keep running in the tray" is shown off and disabled, with the reason
        (the setting saved stays as it is, for a desktop that has a tray)."""
        self._tray_available = available
        if not available:
            self._show_no_tray()

    def _show_no_tray(self) -> None:
        box = self.minimize_to_tray
        box.setChecked(False)
        box.setEnabled(False)
        box.setToolTip(NO_TRAY)
        self.no_tray.show()
        self._shown["minimize_to_tray"] = False  # shown off: not a change to save

    def changed_values(self) -> dict[str, Any]:
        """The values that differ from those :meth:`set_settings` showed."""
        shown = self._shown
        return {name: value for name, value in self.values().items() if shown.get(name) != value}

    def values(self) -> dict[str, Any]:
        """The widgets' values by Settings field name (empty text is None)."""
        values: dict[str, Any] = {}
        for name, widget in self.fields.items():
            if isinstance(widget, QCheckBox):
                values[name] = widget.isChecked()
            elif isinstance(widget, QSpinBox | QDoubleSpinBox):
                values[name] = widget.value()
            elif isinstance(widget, QComboBox):
                values[name] = widget.currentText().strip()
            elif isinstance(widget, QLineEdit):
                text = widget.text().strip()
                values[name] = text or None
        origins = values.get("cors_origins") or ""
        values["cors_origins"] = [o.strip() for o in origins.split(",") if o.strip()]
        return values

    def first_field(self) -> QWidget:
        """The first field in the keyboard's order that the clinician can change."""
        editable = set(map(id, self.fields.values()))
        widget = self.nextInFocusChain()
        while widget is not None and widget is not self:
            if id(widget) in editable and widget.isEnabled():
                return widget
            widget = widget.nextInFocusChain()
        return self.buttons

    def setVisible(self, visible: bool) -> None:
        if visible:  # before Qt sizes the window for its contents
            self.fit_screen()
        super().setVisible(visible)

    def fit_screen(self) -> None:
        """Lay the groups out for the screen: side by side where they fit its width,
        and the scrolled part as large as the groups, at most what the screen leaves."""
        free, around, _frame_height = self._screen_room()
        groups = self._groups
        set_side_by_side(self.columns, True)
        wide = groups.minimumSizeHint().width() + self._bar() + around <= free.width()
        set_side_by_side(self.columns, wide)
        self.columns.activate()
        self._bound_groups()

    def _bound_groups(self) -> None:
        """The scrolled part as large as the groups, at most what the screen leaves
        beside what is shown under them now: a message shown after OK takes its room
        from the groups (it was drawn over their last fields, cut, on a short screen)."""
        free, around, frame_height = self._screen_room()
        bar = self._bar()
        wanted = self._groups.sizeHint()
        if self.isVisible():  # the width the messages wrap to
            margins = self._layout.contentsMargins()
            width = self.width() - margins.left() - margins.right()
        else:
            width = min(wanted.width() + bar, free.width() - around)
        below = self._height_below(width)
        room = QSize(free.width() - around, free.height() - below - frame_height)
        if wanted.height() > room.height():  # it scrolls: room for the scroll bar
            wanted.setWidth(wanted.width() + bar)
        self.scroll_area.setMinimumSize(wanted.boundedTo(room))

    def _screen_room(self) -> tuple[QRect, int, int]:
        """The screen's free area, the width the window takes besides its contents, and
        its frame's height."""
        frame = self.frameGeometry().size() - self.geometry().size()
        # Not shown yet, the window's frame is not known: room for a title bar.
        title = self.style().pixelMetric(QStyle.PixelMetric.PM_TitleBarHeight, None, self)
        margins = self._layout.contentsMargins()
        around = margins.left() + margins.right() + frame.width()
        return self.screen().availableGeometry(), around, max(frame.height(), title)

    def _bar(self) -> int:
        return self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent, None, self)

    def _height_below(self, width: int) -> int:
        """The height the dialog needs besides its groups, ``width`` wide."""
        layout = self._layout
        margins = layout.contentsMargins()
        height = margins.top() + margins.bottom()
        for index in range(layout.count()):
            item = layout.itemAt(index)
            widget = None if item is None else item.widget()
            if widget is None or widget is self.scroll_area or widget.isHidden():
                continue
            hint = widget.sizeHint().height()
            if widget.hasHeightForWidth():
                hint = max(hint, widget.heightForWidth(width))
            height += hint + layout.spacing()
        return height

    def show_checking(self, message: str) -> None:
        """Say what OK is checking, with OK disabled until it answers; ``""`` when it
        has (the fields stay as they are, to correct or to save)."""
        set_text(self.checking, message)
        self.checking.setVisible(bool(message))
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not message)
        if message:
            self.show_error("")
        if self.isVisible():
            self._bound_groups()

    def show_error(self, message: str, field: str | None = None) -> None:
        """Say why the settings were not saved and mark the field it is about."""
        set_text(self.error, message)
        self.error.setVisible(bool(message))
        if message:
            announce(self.error, message, urgent=True)  # heard where the focus is
        if self.isVisible():
            self._bound_groups()
        for name, shown in self.fields.items():
            set_style_property(shown, "invalid", name == field)
        widget = self.fields.get(field or "")
        if widget is not None:
            widget.setFocus(Qt.FocusReason.OtherFocusReason)

    # Slots --------------------------------------------------------------------------

    @Slot()
    def _on_long_field_text_changed(self) -> None:
        for edit in self.whole_in_tooltip:
            text, hint = edit.text().strip(), edit.placeholderText()
            if isinstance(edit, DefaultPathEdit):
                hint = f"Default: {edit.default_path}" if edit.default_path else ""
            edit.setToolTip(text or hint)

    @Slot()
    def _on_buttons_accepted(self) -> None:
        self.save_requested.emit(self.changed_values())

    @Slot()
    def _on_browse_watch_clicked(self) -> None:
        start = self.watch_folder_path.text() or self.watch_folder_path.default_path
        folder = QFileDialog.getExistingDirectory(self, "Watch folder", start)
        if folder:
            self.watch_folder_path.setText(folder)

    @Slot()
    def _on_browse_model_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder", self.model_path.text())
        if folder:
            self.model_path.setText(folder)
