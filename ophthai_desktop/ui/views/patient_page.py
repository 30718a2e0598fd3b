"""The patient page: who the patient is, where they are in the workflow, and room for
the scan viewer and the analysis."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QResizeEvent, QShowEvent, QTextLayout
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ophthai_desktop.core.records import PatientRecord
from ophthai_desktop.ui.display import (
    NOT_RECORDED,
    NOT_SCHEDULED,
    breakable,
    local_date,
    local_datetime,
)
from ophthai_desktop.ui.resources import icon
from ophthai_desktop.ui.views.reflow import FittedLabel, least_width
from ophthai_desktop.ui.views.scale import scaled
from ophthai_desktop.ui.views.stepper import WorkflowStepper
from ophthai_desktop.ui.views.style import offer, set_style_property, set_text

#: The least width of the tabs at the design's font (grown with a larger one): the
#: widest part a tab cannot narrow (an oculomics chart, 260 px; the appointment's picker
#: and Schedule, ~270 px) with the tab's margins and scroll bar. Narrower, the tab
#: scrolled sideways (at 800 x 600, by ~45 px); the patient list gives up the room
#: instead, and where the page cannot keep it beside the details, the details go under
#: the tabs.
TABS_MIN_WIDTH = 300
#: The least width of the details beside the tabs, at the design's font.
DETAILS_MIN_WIDTH = 220
#: Left and right of the page's content.
PAGE_MARGIN = 8
#: The most lines the patient's name takes at the top of the page.
TITLE_LINES = 3
#: What the patient's name keeps of the header's width beside the buttons, at least
#: (else the buttons go under it).
NAME_MIN_CHARACTERS = "M" * 10
#: What Analyse does, where it can.
ANALYSE_TIP = "Queue the analysis of the newest scan"


def _value_label() -> QLabel:
    label = QLabel("—")
    label.setTextFormat(Qt.TextFormat.PlainText)  # names and histories are not markup
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setWordWrap(True)
    return label


class PatientTitle(FittedLabel):
    """The patient's name, wrapped to at most :data:`TITLE_LINES` lines, the last cut
    short with an ellipsis where the name needs more (the whole name in the tooltip and
    :meth:`full_text`): a 200-character name took the header's height from the tabs,
    and the lines that did not fit were cut off without a mark."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)  # names are not markup: plain text
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

    def _fit(self) -> None:
        text = breakable(self._full)
        width = self.contentsRect().width()
        layout = QTextLayout(text, self.font())
        layout.beginLayout()
        starts: list[int] = []
        while len(starts) <= TITLE_LINES and (line := layout.createLine()).isValid():
            line.setLineWidth(width)
            starts.append(line.textStart())
        layout.endLayout()
        if len(starts) > TITLE_LINES and width > 0:
            last = starts[TITLE_LINES - 1]
            rest = self.fontMetrics().elidedText(text[last:], Qt.TextElideMode.ElideRight, width)
            text = text[:last] + rest
        self.setToolTip(self._full if text != breakable(self._full) else "")
        set_text(self, text)


def _section(title: str) -> QLabel:
    label = QLabel(title)
    label.setObjectName("sectionTitle")
    return label


class PatientPage(QWidget):
    """One patient. Shows an empty hint until a patient is chosen.

    Signals:
        analyse_requested(): the clinician pressed "Analyse".
        edit_requested(): "Edit".
        delete_requested(): "Delete".
    """

    analyse_requested = Signal()
    edit_requested = Signal()
    delete_requested = Signal()

    def __init__(
        self,
        scans: QWidget,
        analysis: QWidget,
        parent: QWidget | None = None,
        *,
        oculomics: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("patientPage")
        self.patient: PatientRecord | None = None
        #: Asked for that many pixels more before the details go under the tabs; True
        #: where they were given (the window takes them from the patient list).
        self.room_for_details: Callable[[int], bool] = lambda _px: False

        self.empty = QLabel(
            # One paragraph: a line break in it left "here" alone on a narrow page.
            "Select a patient on the left, or drop OCT, OCTA or fundus images here "
            "to file them under the selected patient (or a new one)."
        )
        self.empty.setObjectName("emptyHint")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)

        self.name = PatientTitle()
        self.name.setObjectName("patientName")  # a long name wraps, not the screen's width
        self.name.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.pid = QLabel()
        self.pid.setObjectName("patientId")
        self.pid.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status = QLabel()
        self.status.setObjectName("statusPill")
        self.analyse = QPushButton(icon("analyse"), "Analyse")
        self.analyse.setObjectName("analyseButton")
        self.analyse.setToolTip(ANALYSE_TIP)
        # The analysis tab has an Analyse of its own: heard alike, a screen reader's user
        # could not tell which of the two Tab reached.
        self.analyse.setAccessibleName("Analyse, beside the patient's name")
        self.edit = QPushButton(icon("edit"), "Edit…")
        self.delete = QPushButton(icon("delete"), "Delete…")
        # The buttons beside the name, or under the id and status where the page is too
        # narrow for both (see _reflow_header); the id and the status pill under the
        # name across the header's width, not only the name's: beside the buttons, the
        # pill was cut where the name's column was narrower than the id and the pill.
        self.header = QWidget()
        header = QGridLayout(self.header)
        header.setContentsMargins(0, 0, 0, 0)
        header.setVerticalSpacing(0)
        header.setColumnStretch(0, 1)
        self._header = header
        ids = QHBoxLayout()
        ids.setSpacing(10)
        ids.addWidget(self.pid)
        ids.addWidget(self.status)
        ids.addStretch(1)
        self._ids = ids
        self.header_buttons = QWidget()
        buttons = QHBoxLayout(self.header_buttons)
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addStretch(1)  # at the right, also under the name
        buttons.addWidget(self.analyse)
        buttons.addWidget(self.edit)
        buttons.addWidget(self.delete)
        self._buttons = buttons
        header.addWidget(self.name, 0, 0)
        header.addLayout(ids, 1, 0, 1, 2)
        header.addWidget(self.header_buttons, 0, 1)
        self._buttons_beside = True
        self.stepper = WorkflowStepper()

        self.age = _value_label()
        self.birth_date = _value_label()
        self.gender = _value_label()
        self.admitted = _value_label()
        self.appointment = _value_label()
        self.validation = _value_label()
        self.scan_count = _value_label()
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        # A value that does not fit beside its label goes under it: at 1.5 times the
        # font size the details scrolled sideways, the dates cut at the edge.
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.addRow("Age", self.age)
        form.addRow("Birth date", self.birth_date)
        form.addRow("Sex", self.gender)
        form.addRow("Admitted", self.admitted)
        form.addRow("Scans", self.scan_count)
        form.addRow("Validation", self.validation)
        form.addRow("Appointment", self.appointment)
        self.symptoms = _value_label()
        self.symptoms.setObjectName("symptoms")
        self.history = _value_label()
        self.history.setObjectName("history")
        self.history.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        info = QWidget()
        info_layout = QVBoxLayout(info)
        info_layout.setContentsMargins(4, 0, 8, 0)
        info_layout.addWidget(_section("Demographics"))
        info_layout.addLayout(form)
        info_layout.addWidget(_section("Symptoms"))
        info_layout.addWidget(self.symptoms)
        info_layout.addWidget(_section("History"))
        info_layout.addWidget(self.history)
        info_layout.addStretch(1)
        info_scroll = QScrollArea()
        info_scroll.setWidget(info)
        info_scroll.setWidgetResizable(True)
        info_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.info_scroll = info_scroll
        # A Tab stop, the one way a keyboard scrolls a long history (the labels take no
        # focus), so it shows the focus (style.qss) and says what it is: it took the
        # focus unseen and unnamed.
        info_scroll.setObjectName("patientDetails")
        info_scroll.setAccessibleName("Patient details")

        self.tabs = QTabWidget()
        self.tabs.setObjectName("patientTabs")
        self.tabs.setAccessibleName("Patient's analysis, scans and measurements")
        self.tabs.addTab(analysis, icon("analyse"), "Analysis")
        self.tabs.addTab(scans, "Scans")
        if oculomics is not None:
            self.tabs.addTab(oculomics, "Oculomics")
        split = QSplitter(Qt.Orientation.Horizontal)
        split.setObjectName("patientSplit")
        split.addWidget(info_scroll)
        split.addWidget(self.tabs)
        # The details give up room too as the window narrows (down to their minimum),
        # not the tabs alone.
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 3)
        split.setSizes([250, 700])
        self.split = split
        #: The sizes the clinician left the details and tabs at side by side, for when
        #: the page is wide enough for them again.
        self._side_sizes: list[int] = split.sizes()
        self._fit_minimum_widths()

        content = QWidget()
        content_layout = QVBoxLayout(content)
        content_layout.setContentsMargins(PAGE_MARGIN, 6, PAGE_MARGIN, 0)
        content_layout.addWidget(self.header)
        content_layout.addWidget(self.stepper)
        content_layout.addWidget(split, 1)

        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(content)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

        self.analyse.clicked.connect(self.analyse_requested)
        self.edit.clicked.connect(self.edit_requested)
        self.delete.clicked.connect(self.delete_requested)

    @property
    def details_beside_tabs(self) -> bool:
        """Whether the details are beside the tabs (else under them)."""
        return self.split.orientation() == Qt.Orientation.Horizontal

    def side_by_side_width(self) -> int:
        """The least width of the page with the details beside the tabs."""
        return (
            self.info_scroll.minimumWidth()
            + self.split.handleWidth()
            + self.tabs.minimumWidth()
            + 2 * PAGE_MARGIN
        )

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self.isVisible():  # hidden, it has no width of its own yet: see showEvent
            self._reflow()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._reflow()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange:
            self._fit_minimum_widths()
            self._reflow()

    def _fit_minimum_widths(self) -> None:
        """The details' and the tabs' least widths, grown with the font; the splitter's
        own is the larger of the two, not their sum, so that a page too narrow for both
        side by side puts one under the other (:meth:`_reflow`) rather than keeping the
        window wider than the screen (at 1.5 times the font on a 1024 px screen the
        tabs were left 300 px, the analysis scrolling sideways)."""
        self.info_scroll.setMinimumWidth(scaled(self.info_scroll, DETAILS_MIN_WIDTH))
        self.tabs.setMinimumWidth(scaled(self.tabs, TABS_MIN_WIDTH))
        self.split.setMinimumWidth(max(self.info_scroll.minimumWidth(), self.tabs.minimumWidth()))

    def _reflow(self) -> None:
        self._reflow_header()
        self._reflow_split()

    def _reflow_header(self) -> None:
        """The buttons beside the name where the name keeps :data:`NAME_MIN_CHARACTERS`
        of room beside them, else under the id and status: beside it they kept the page,
        and the window, wider than the screen left. The id and the pill have the
        header's width either way, so that the pill is never cut.

        Decided on the widgets' own widths (:func:`least_width`, the font's), with no
        layout pass: the nested layouts' sizes are the last patient's until the header
        is laid out again. (A layout pass forced at each patient shown, reverted, put
        the buttons under the name at 800 x 600, where the id and the pill beside them
        had no room, and the header took the height the scan needed.)"""
        buttons = least_width(self._buttons)
        ids = least_width(self._ids)
        metrics = self.name.fontMetrics()
        name = min(
            metrics.horizontalAdvance(NAME_MIN_CHARACTERS),
            metrics.horizontalAdvance(self.name.full_text()),
        )
        gap = self._header.horizontalSpacing()
        beside = self.width() - 2 * PAGE_MARGIN >= name + gap + buttons
        if beside != self._buttons_beside:
            self._buttons_beside = beside
            self._header.removeWidget(self.header_buttons)
            row, column, span = (0, 1, 1) if beside else (2, 0, 2)
            self._header.addWidget(self.header_buttons, row, column, 1, span)
            self._buttons.setContentsMargins(0, 0 if beside else gap, 0, 0)
        least = max(ids, name + gap + buttons if beside else buttons)
        if self.header.minimumWidth() != least:  # not its layout's: see above
            self.header.setMinimumWidth(least)

    def _reflow_split(self) -> None:
        """The details beside the tabs where the page has room for both at their least
        widths, else under the tabs (the tabs first: the scans and the analysis are what
        the page is for). Decided on the page's width, which does not depend on it."""
        wanting = self.side_by_side_width() - self.width()
        if wanting > 0 and self.details_beside_tabs and self.room_for_details(wanting):
            return  # resized again, wide enough (a nested resize event laid it out)
        beside = wanting <= 0
        split = self.split
        first = self.info_scroll if beside else self.tabs
        orientation = Qt.Orientation.Horizontal if beside else Qt.Orientation.Vertical
        if split.orientation() == orientation and split.widget(0) is first:
            return
        if self.details_beside_tabs and split.widget(0) is self.info_scroll:
            self._side_sizes = split.sizes()
        split.setOrientation(orientation)
        split.insertWidget(0, first)
        split.setStretchFactor(0, 1 if beside else 3)
        split.setStretchFactor(1, 3 if beside else 1)
        if beside:
            split.setSizes(self._side_sizes)
        else:  # most of the height to the tabs; the details' first lines in sight
            split.setSizes([3 * max(1, split.height()) // 4, max(1, split.height()) // 4])

    def show_patient(self, patient: PatientRecord | None) -> None:
        """Fill the page from ``patient`` (None shows the empty hint)."""
        self.patient = patient
        if patient is None:
            self.stack.setCurrentIndex(0)
            return
        self.stack.setCurrentIndex(1)
        self.name.set_full_text(patient.name)
        set_text(self.pid, patient.id)
        set_text(self.status, patient.status)
        set_style_property(self.status, "status", patient.status)
        self.status.setAccessibleName(f"Status: {patient.status}")  # not a bare "Critical"
        if self.isVisible():  # the id and the pill are the title's least width
            self._reflow_header()
        self.stepper.set_step(patient.workflow_step)
        age = patient.age_now()
        set_text(self.age, NOT_RECORDED if age is None else f"{age} years")
        set_text(self.birth_date, local_date(patient.birth_date) or NOT_RECORDED)
        set_text(self.gender, patient.gender or NOT_RECORDED)
        set_text(self.admitted, local_datetime(patient.admission_date))
        set_text(self.scan_count, str(patient.scan_count))
        set_text(self.appointment, local_datetime(patient.appointment_date) or NOT_SCHEDULED)
        if patient.validation_status:
            by = f" by {patient.validated_by}" if patient.validated_by else ""
            set_text(self.validation, breakable(f"{patient.validation_status}{by}"))
        else:
            set_text(self.validation, "not validated")
        symptoms = ", ".join(patient.symptoms) if patient.symptoms else "none recorded"
        set_text(self.symptoms, breakable(symptoms))
        set_text(self.history, breakable(patient.history or "none recorded"))
        scans = f"Scans ({patient.scan_count})"
        if self.tabs.tabText(1) != scans:
            self.tabs.setTabText(1, scans)

    def offer_analyse(self, why_not: str = "") -> None:
        """Analyse on, or off with ``why_not`` as its tooltip."""
        offer(self.analyse, why_not, ANALYSE_TIP)

    def show_tab(self, name: str) -> None:
        """Bring the "analysis", "scans" or "oculomics" tab to the front."""
        index = {"analysis": 0, "scans": 1, "oculomics": 2}.get(name, 1)
        if index < self.tabs.count():
            self.tabs.setCurrentIndex(index)
