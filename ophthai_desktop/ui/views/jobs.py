"""The job queue panel: analyses with their state and progress, and cancel."""

from __future__ import annotations

import re

from PySide6.QtCore import QEvent, QItemSelection, QModelIndex, Qt, Signal, Slot
from PySide6.QtGui import QKeySequence, QPalette, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ophthai_desktop.core.inference.download import DOWNLOAD_IN_THE_WINDOW, HOW_TO_DOWNLOAD
from ophthai_desktop.ui.models.job_table import OPEN_STATES, JobTableModel
from ophthai_desktop.ui.resources import icon
from ophthai_desktop.ui.views.columns import FittingTableView
from ophthai_desktop.ui.views.confirm import ask
from ophthai_desktop.ui.views.empty import EmptyOr
from ophthai_desktop.ui.views.selection import (
    choose_nothing_when_the_chosen_row_goes,
    choose_the_row_the_keyboard_is_on,
)

#: Job, Patient, State, Priority, Progress, Queued, Note.
COLUMN_WIDTHS = (56, 140, 80, 100, 130, 130, 200)
PATIENT_COLUMN = 1
#: The columns but the patient's, most needed first: the patient takes the room the
#: shown ones leave (at least this), and those that do not fit give way.
FITTED_ORDER = (0, 2, 4, 3, 6, 5)
PATIENT_LEAST_PX = 100
#: The most characters of the first sentence of why the queue waits that the panel
#: shows (the whole reason is in the tooltip and behind Details…).
WAITING_HEADLINE_CHARS = 100
#: Where the worker's reason says what makes the queue run ("… and run once it is:
#: download it …").
_WAITING_ACTION = re.compile(r"\brun once [^:]*: (?P<action>.+)$", re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
#: A word longer than this (a folder's path) is shown as its start and its end.
WAITING_WORD_CHARS = 36


def short_waiting(reason: str) -> str:
    """Why queued analyses wait, in a line or two for the panel: the reason's first
    sentence (what is wrong, cut at :data:`WAITING_HEADLINE_CHARS`), then what makes
    them run where the reason says it. The worker's longer reasons name the missing or
    damaged files between the two; the panel leaves those to the tooltip and Details…
    (in a short dock five lines of them left the table one row)."""
    reason = " ".join(reason.split())
    first, *rest = _SENTENCE_END.split(reason, maxsplit=1)
    first = " ".join(_shortened_word(word) for word in first.split(" "))
    if len(first) > WAITING_HEADLINE_CHARS:
        first = first[:WAITING_HEADLINE_CHARS].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    action = _WAITING_ACTION.search(rest[0]) if rest else None
    if not action:
        return first
    # In the window, its own way to download; the command line (for a computer where
    # no window runs) stays in the tooltip and Details….
    return f"{first} To run them, " + action["action"].replace(
        HOW_TO_DOWNLOAD, DOWNLOAD_IN_THE_WINDOW
    )


def _shortened_word(word: str) -> str:
    if len(word) <= WAITING_WORD_CHARS:
        return word
    half = WAITING_WORD_CHARS // 2
    return f"{word[: half - 4]}…{word[-half:]}"  # a folder's end names it best


class JobQueuePanel(QWidget):
    """Signals:
    cancel_requested(list job_ids): "Cancel" on the selected queued and running jobs
        (several can be selected, with Ctrl or Shift; then only once the clinician
        agreed, asked in :attr:`confirm`).
    job_opened(int job_id): a job was double-clicked, or Enter pressed on the chosen one.
    """

    cancel_requested = Signal(list)
    job_opened = Signal(int)

    def __init__(self, model: JobTableModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("jobQueuePanel")
        self.model = model
        self.waiting = QLabel()
        self.waiting.setObjectName("muted")
        self.waiting.setWordWrap(True)
        # The whole reason where the line above shows it shortened (see short_waiting).
        self.waiting_details = QToolButton()
        self.waiting_details.setObjectName("waitingDetails")
        self.waiting_details.setText("Details…")
        self.waiting_details.setToolTip("Why queued analyses are waiting, in full")
        self.waiting_details.setAutoRaise(True)
        self._waiting_reason = ""
        self._waiting_who = "Queued analyses"
        #: The last question asked before cancelling several jobs (tests answer it).
        self.confirm: QMessageBox | None = None
        #: The window that shows the whole reason (while it is open).
        self.details_box: QMessageBox | None = None
        self.cancel = QToolButton()
        self.cancel.setObjectName("cancelJob")
        self.cancel.setIcon(icon("cancel"))
        self.cancel.setText("Cancel")
        self.cancel.setToolTip("Cancel the selected analyses")
        self.cancel.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.cancel.setAutoRaise(True)
        self.cancel.setEnabled(False)
        # Open jobs past those listed (a backlog of thousands): said, not left out silently.
        self.unlisted = QLabel()
        self.unlisted.setObjectName("muted")
        self.unlisted.setWordWrap(True)
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.waiting, 1)
        bar.addWidget(self.waiting_details)
        bar.addWidget(self.cancel)
        self.table = FittingTableView()
        self.table.setObjectName("jobTable")
        self.table.setAccessibleName("Job queue")
        choose_nothing_when_the_chosen_row_goes(self.table, model)  # before setModel
        self.table.setModel(model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        # Several at once (Ctrl, Shift): a backlog the clinician does not want cancelled
        # in one press, not one job at a time.
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.setAcceptDrops(False)
        self.table.verticalHeader().setVisible(False)
        self.table.set_row_height(24)
        # Never sideways: at 1024 px wide the queue scrolled to show the end of a row.
        # The widths grow with the font, also one set with the window open.
        self.columns = self.table.fit_columns(
            stretch=PATIENT_COLUMN,
            least_px=PATIENT_LEAST_PX,
            order=FITTED_ORDER,
            widths=dict(enumerate(COLUMN_WIDTHS)),
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addWidget(self.unlisted)
        self.body = EmptyOr(self.table, "No analyses yet. Analyse a patient's scan to queue one.")
        layout.addWidget(self.body, 1)
        self.set_waiting(None)
        self.set_unlisted(0, 0)

        self.cancel.clicked.connect(self._on_cancel_clicked)
        self.waiting_details.clicked.connect(self._on_waiting_details_clicked)
        self.table.selectionModel().selectionChanged.connect(self._on_selection_changed)
        self.table.doubleClicked.connect(self._on_table_double_clicked)
        # Enter opens the chosen job's patient, as a double-click does (the keyboard had
        # no way to it); Tab leaves the table for Cancel rather than going cell by cell.
        self.table.setTabKeyNavigation(False)
        choose_the_row_the_keyboard_is_on(self.table)
        for keys in (QKeySequence(Qt.Key.Key_Return), QKeySequence(Qt.Key.Key_Enter)):
            shortcut = QShortcut(keys, self.table)
            shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)
            shortcut.setWhatsThis("Open the chosen job's patient")  # Help's list of keys
            shortcut.activated.connect(self._on_open_key)
        model.states_changed.connect(self._refresh_cancel)
        self._follow_theme()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:  # the theme changed
            self._follow_theme()

    def _follow_theme(self) -> None:
        self.model.set_dark(self.palette().color(QPalette.ColorRole.Base).lightness() < 128)

    def set_waiting(self, reason: str | None, *, who: str = "Queued analyses") -> None:
        """Why ``who`` (queued analyses) are not running (None: they are not waiting),
        in short where the reason is long; whole in the tooltip and behind Details…."""
        self._waiting_reason = reason or ""
        self._waiting_who = who
        short = short_waiting(reason) if reason else ""
        self.waiting.setText(f"{who} are waiting: {short}" if reason else "")
        shortened = short != " ".join(self._waiting_reason.split())
        self.waiting.setToolTip(f"{who} are waiting: {reason}" if shortened else "")
        self.waiting_details.setVisible(shortened)
        box = self.details_box
        if box is not None:  # open: it says the reason now, or goes with it
            if reason:
                box.setText(self._details_text())
            else:
                box.close()

    def set_unlisted(self, listed: int, unlisted: int) -> None:
        """Say that ``unlisted`` queued analyses, which run after the ``listed`` open
        ones, are not in the list (0: every open one is)."""
        self.unlisted.setVisible(unlisted > 0)
        self.unlisted.setText(
            f"Showing {listed:,} of {listed + unlisted:,} queued and running analyses, "
            f"those that run first; the other {unlisted:,} are listed as their turn comes."
            if unlisted
            else ""
        )

    def select_job(self, job_id: int) -> bool:
        position = self.model.position(job_id)
        if position is None:
            return False
        self.table.selectRow(position)
        return True

    def selected_job_id(self) -> int | None:
        """The selected job (the first, in the queue's order, of several)."""
        selected = self.selected_job_ids()
        return selected[0] if selected else None

    def selected_job_ids(self) -> list[int]:
        """The selected jobs, in the queue's order."""
        positions = sorted(index.row() for index in self.table.selectionModel().selectedRows())
        rows = (self.model.row_at(position) for position in positions)
        return [row.job_id for row in rows if row is not None]

    def _selected_open_job_ids(self) -> list[int]:
        rows = (self.model.get(job_id) for job_id in self.selected_job_ids())
        return [row.job_id for row in rows if row is not None and row.state in OPEN_STATES]

    @Slot()
    def _refresh_cancel(self) -> None:
        self.cancel.setEnabled(bool(self._selected_open_job_ids()))

    @Slot(QItemSelection, QItemSelection)
    def _on_selection_changed(self, _selected: QItemSelection, _deselected: QItemSelection) -> None:
        self._refresh_cancel()

    @Slot(QModelIndex)
    def _on_table_double_clicked(self, index: QModelIndex) -> None:
        row = self.model.row_at(index.row())
        if row is not None:
            self.job_opened.emit(row.job_id)

    @Slot()
    def _on_open_key(self) -> None:
        current = self.model.row_at(self.table.currentIndex().row())
        selected = self.selected_job_ids()
        if current is not None and current.job_id in selected:  # the one the keys are on
            self.job_opened.emit(current.job_id)
        elif selected:
            self.job_opened.emit(selected[0])

    @Slot()
    def _on_waiting_details_clicked(self) -> None:
        box = QMessageBox(
            QMessageBox.Icon.Information,
            "Why queued analyses are waiting",
            self._details_text(),
            QMessageBox.StandardButton.Close,
            self,
        )
        box.setObjectName("waitingDetailsBox")
        box.setTextFormat(Qt.TextFormat.PlainText)  # a path is not markup
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(self._on_details_box_finished)
        self.details_box = box
        box.open()  # window-modal, without blocking the event loop

    def _details_text(self) -> str:
        return f"{self._waiting_who} are waiting: {self._waiting_reason}"

    @Slot()
    def _on_details_box_finished(self) -> None:
        self.details_box = None

    @Slot()
    def _on_cancel_clicked(self) -> None:
        job_ids = self._selected_open_job_ids()  # a finished one among them stays as it is
        if len(job_ids) == 1:
            self.cancel_requested.emit(job_ids)
        elif job_ids:
            # Ctrl+A then Cancel cancelled the whole backlog with nothing asked (a
            # cancelled analysis cannot be taken back); one job still goes at once.
            self.confirm = ask(
                self,
                "Cancel analyses",
                f"Cancel {len(job_ids)} analyses?",
                "Cancel analyses",
                lambda: self._cancel_still_open(job_ids),
                no_text="Keep them",
            )

    def _cancel_still_open(self, job_ids: list[int]) -> None:
        """The question answered yes: those asked about that are still open (one may
        have ended while it was asked) are cancelled."""
        rows = (self.model.get(job_id) for job_id in job_ids)
        still_open = [row.job_id for row in rows if row is not None and row.state in OPEN_STATES]
        if still_open:
            self.cancel_requested.emit(still_open)
