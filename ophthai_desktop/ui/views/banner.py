"""An in-window message line: shown until closed or replaced (or, where asked, for a
while)."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

from ophthai_desktop.ui.display import breakable
from ophthai_desktop.ui.messages import (
    DATABASE_BACK,
    DATABASE_BACK_SHOWN_MS,
    DATABASE_DOWN,
    describe,
    once_database_answers,
)
from ophthai_desktop.ui.views.style import set_style_property


class Banner(QFrame):
    """A closable message: ``kind`` is ``info``, ``warning`` or ``error``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.setAccessibleName("Dismiss the message")  # it would read "✕"
        close.clicked.connect(self.dismiss)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.dismiss)
        self._text = ""  # as given: the label's may have breaks put in (breakable)
        # What the message shown says once its cause (the database not answering) is
        # gone, and for how long (see resolve).
        self._resolved: tuple[str, int | None] | None = None
        self.hide()

    def show_message(
        self,
        text: str,
        kind: str = "warning",
        *,
        shown_ms: int | None = None,
        resolved: str | None = None,
        resolved_ms: int | None = None,
    ) -> None:
        """Show ``text`` until closed or replaced, or for ``shown_ms`` where given (a
        confirmation that is soon out of date). ``resolved``: what it says instead once
        its cause is gone (:meth:`resolve`), for ``resolved_ms`` or until closed.

        The outage's own words (another call refused meanwhile) do not replace a message
        that says them already with what failed and what to do once it answers."""
        if text == DATABASE_DOWN and self.resolvable and DATABASE_DOWN in self._text:
            return
        self._resolved = None if resolved is None else (resolved, resolved_ms)
        self._text = text
        self.label.setText(breakable(text))  # a long name without spaces: not wider
        set_style_property(self, "kind", kind)
        self.show()
        if shown_ms is None:
            self._timer.stop()
        else:
            self._timer.start(shown_ms)

    def text(self) -> str:
        return self._text if self.isVisible() else ""

    def message(self) -> str:
        """The message it holds, shown or shown once its window is (hidden to the tray,
        a page not in front): what a controller compares to see whether its message is
        still there; "" once closed."""
        return "" if self.isHidden() else self._text

    @property
    def resolvable(self) -> bool:
        """Whether the message shown gives way once its cause is gone."""
        return self._resolved is not None and not self.isHidden()

    def resolve(self) -> bool:
        """The cause of the message shown is gone: it gives way to what it said it
        would say then (False where it said nothing of the kind)."""
        if not self.resolvable or self._resolved is None:
            return False
        text, shown_ms = self._resolved
        self.show_message(text, "info", shown_ms=shown_ms)
        return True

    @Slot()
    def dismiss(self) -> None:
        self._resolved = None
        self.hide()
        self._text = ""
        self.label.clear()


class ReadFailureNotice:
    """A list whose read failed and is tried again: said once in ``banner`` while the
    failures last ("``what`` could not be read (why); trying again"; closed by the
    clinician, not again at each try), and taken away once a read works."""

    def __init__(self, banner: Banner, what: str) -> None:
        self._banner = banner
        self._what = what
        self._shown = ""

    def failed(self, exc: BaseException) -> None:
        if self._shown:
            return
        self._shown = f"{self._what} could not be read ({describe(exc)}); trying again."
        self._banner.show_message(
            self._shown,
            "error",
            # Read again meanwhile (or soon): nothing to be done again.
            resolved=DATABASE_BACK if once_database_answers(exc, "") else None,
            resolved_ms=DATABASE_BACK_SHOWN_MS,
        )

    def read(self) -> None:
        """A read worked: no longer "trying again"."""
        if self._shown and self._banner.message() == self._shown:
            self._banner.dismiss()
        self._shown = ""
