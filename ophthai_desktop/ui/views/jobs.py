"""The job queue panel: analyses with their state and progress, and cancel."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QItemSelection, QModelIndex, Qt, Signal, Slot
from PySide6.QtGui import QKeySequence, QPalette, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ophthai_desktop.ui.models.job_table import OPEN_STATES, JobTableModel
from ophthai_desktop.ui.resources import icon
from ophthai_desktop.ui.views.columns import FittingTableView
from ophthai_desktop.ui.views.empty import EmptyOr
from ophthai_desktop.ui.views.scale import scaled

#: Job, Patient, State, Priority, Progress, Queued, Note.
COLUMN_WIDTHS = (56, 140, 80, 100, 130, 130, 200)
PATIENT_COLUMN = 1
#: The columns but the patient's, most needed first: the patient takes the room the
#: shown ones leave (at least this), and those that do not fit give way.
FITTED_ORDER = (0, 2, 4, 3, 6, 5)
PATIENT_LEAST_PX = 100


class JobQueuePanel(QWidget):
    """Signals:
    cancel_requested(int job_id): "Cancel" on the selected queued or running job.
    job_opened(int job_id): a job was double-clicked, or Enter pressed on the chosen one.
    """

    cancel_requested = Signal(int)
    job_opened = Signal(int)

    def __init__(self, model: JobTableModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("jobQueuePanel")
        self.model = model
        self.waiting = QLabel()
        self.waiting.setObjectName("muted")
        self.waiting.setWordWrap(True)
        self.cancel = QToolButton()
        self.cancel.setObjectName("cancelJob")
        self.cancel.setIcon(icon("cancel"))
        self.cancel.setText("Cancel")
        self.cancel.setToolTip("Cancel the selected analysis")
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
        bar.addWidget(self.cancel)
        self.table = FittingTableView()
        self.table.setObjectName("jobTable")
        self.table.setAccessibleName("Job queue")
        self.table.setModel(model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.setAcceptDrops(False)
        vertical = self.table.verticalHeader()
        vertical.setVisible(False)
        vertical.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vertical.setDefaultSectionSize(scaled(self.table, 24))
        header = self.table.horizontalHeader()
        for column, width in enumerate(COLUMN_WIDTHS):
            header.resizeSection(column, scaled(self.table, width))  # grown with the font
        # Never sideways: at 1024 px wide the queue scrolled to show the end of a row.
        self.columns = self.table.fit_columns(
            stretch=PATIENT_COLUMN,
            least_px=scaled(self.table, PATIENT_LEAST_PX),
            order=FITTED_ORDER,
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
        self.table.selectionModel().selectionChanged.connect(self._on_selection_changed)
        self.table.doubleClicked.connect(self._on_table_double_clicked)
        # Enter opens the chosen job's patient, as a double-click does (the keyboard had
        # no way to it); Tab leaves the table for Cancel rather than going cell by cell.
        self.table.setTabKeyNavigation(False)
        for keys in (QKeySequence(Qt.Key.Key_Return), QKeySequence(Qt.Key.Key_Enter)):
            shortcut = QShortcut(keys, self.table)
            shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)
            shortcut.activated.connect(self._on_open_key)
        model.states_changed.connect(self._refresh_cancel)
        self._follow_theme()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:  # the theme changed
            self._follow_theme()

    def _follow_theme(self) -> None:
        self.model.set_dark(self.palette().color(QPalette.ColorRole.Base).lightness() < 128)

    def set_waiting(self, reason: str | None) -> None:
        """Why queued analyses are not running (None: they are not waiting)."""
        self.waiting.setText(f"Queued analyses are waiting: {reason}" if reason else "")

    def set_unlisted(self, listed: int, unlisted: int) -> None:
        """Say that ``unlisted`` queued analyses, which run after the ``listed`` open
        ones, are not in the list (0: every open one is)."""
        self.unlisted.setVisible(unlisted > 0)
        self.unlisted.setText(
            f"Showing {listed:,} of {listed + unlisted:,} queued and running analyses, "
            f"those that run first; the other {unlisted:,} are listed as they start."
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
        rows = self.table.selectionModel().selectedRows()
        row = self.model.row_at(rows[0].row()) if rows else None
        return None if row is None else row.job_id

    @Slot()
    def _refresh_cancel(self) -> None:
        job_id = self.selected_job_id()
        row = self.model.get(job_id) if job_id is not None else None
        self.cancel.setEnabled(row is not None and row.state in OPEN_STATES)

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
        job_id = self.selected_job_id()
        if job_id is not None:
            self.job_opened.emit(job_id)

    @Slot()
    def _on_cancel_clicked(self) -> None:
        job_id = self.selected_job_id()
        if job_id is not None:
            self.cancel_requested.emit(job_id)
