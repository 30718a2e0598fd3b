"""The analysis: the model's reasoning as it streams, the structured result card,
provenance, the clinician's verdict and the follow-up appointment."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from PySide6.QtCore import QDateTime, QPoint, QSignalBlocker, Qt, QTime, QTimer, Signal, Slot
from PySide6.QtGui import (
    QFocusEvent,
    QKeyEvent,
    QKeySequence,
    QResizeEvent,
    QShowEvent,
    QTextCursor,
)
from PySide6.QtWidgets import (
    QBoxLayout,
    QDateTimeEdit,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ophthai_desktop.core.inference.parsing import is_ungradable
from ophthai_desktop.core.records import AnalysisRecord
from ophthai_desktop.ui.display import local_datetime
from ophthai_desktop.ui.provenance import on_screen, provenance_rows, provenance_titles
from ophthai_desktop.ui.resources import icon
from ophthai_desktop.ui.views.announce import announce
from ophthai_desktop.ui.views.banner import Banner
from ophthai_desktop.ui.views.calendar_keys import CalendarKeys
from ophthai_desktop.ui.views.focus import step_focus_to
from ophthai_desktop.ui.views.reflow import WordBreakingLabel, room_in, set_side_by_side
from ophthai_desktop.ui.views.style import offer, set_style_property, set_text

#: The widest token count the progress label is sized for.
PROGRESS_WIDEST = "999,999 tokens"
COPY_TEXT = "Copy result"
#: How long the Copy result button says "Copied".
COPIED_MS = 2000
#: How far ahead the appointment picker goes.
MAX_YEARS_AHEAD = 5
#: How far before now the picker goes (the server takes up to five minutes).
EARLIEST_S = 60
#: Around the tab's content.
BODY_MARGIN = 6
#: The least width the classification keeps beside the badge; narrower, the badge goes
#: under it (beside the long PARSE FAILED badge at 1024 x 700 the title took one word a
#: line, five lines of 16 pt).
CLASSIFICATION_MIN_WIDTH = 200
#: The verdict's keys. With Ctrl and Shift, never text a field takes (a letter typed
#: into the notes stays a letter), and away from Ctrl+R (Analyse). As the buttons' own
#: shortcuts they act only while the buttons can be pressed: a result shown, in front.
APPROVE_KEYS = QKeySequence("Ctrl+Shift+A")
REJECT_KEYS = QKeySequence("Ctrl+Shift+X")
#: Over the answer as it streams, and over what a run that stopped left of it.
ANSWER_STREAMING = "Answer (as it is written)"
ANSWER_UNFINISHED = "Unfinished answer (the analysis stopped: not a result)"
#: Why Approve is off for an answer that could not be read.
NOTHING_TO_APPROVE = (
    "The model's answer could not be read: there is no result to approve. Reject it, or "
    "analyse again."
)


def now() -> QDateTime:
    """This computer's date and time now."""
    return QDateTime.currentDateTime()


def earliest_from(clock: QDateTime) -> QDateTime:
    """The earliest appointment time at ``clock``: :data:`EARLIEST_S` before it, at the
    start of that minute, the one the picker shows (with the clock's seconds kept, the
    minute shown was before the earliest time: Qt refused the digit typing it, without
    a word). The server takes times minutes older (its clock may differ)."""
    earliest = clock.addSecs(-EARLIEST_S)
    time = earliest.time()
    return earliest.addMSecs(-(time.second() * 1000 + time.msec()))


def _wrapping(text: str = "", name: str | None = None) -> QLabel:
    """A word-wrapped plain-text label.

    Not selectable with the mouse: a selectable label builds a new text document at
    every ``setText`` and lays it out at every layout pass, which made showing a result
    1.5 to 2.5 ms slower on the GUI thread (bench/analysis_moments.py). The card's Copy
    button copies the result as text instead."""
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)  # model output is never markup
    label.setWordWrap(True)
    if name:
        label.setObjectName(name)
    return label


class AppointmentPicker(CalendarKeys, QDateTimeEdit):
    """The follow-up appointment's date and time: from now (less
    :data:`EARLIEST_S`) to :data:`MAX_YEARS_AHEAD` years ahead.

    The earliest time is made true again whenever the picker gets the focus (a click,
    the wheel, Tab, the window coming back to the front): set once when the patient was
    opened, a page left open for hours let a time that had passed be picked, and the
    server refused it. No timer: nothing wakes the GUI thread while no one picks.

    Alt+Down, Alt+Up and F4 open its calendar, as they open a combo box's list, the
    earliest time made true first (the keyboard may have been here a while).

    A time typed outside its range (a year in the past) is not taken: the key that would
    make it is refused, and what was typed goes back to the time shown before at Enter or
    when the focus leaves. Each is said (:attr:`refused`), not done without a word.

    Signals:
        entered(): Enter or Return with a time it takes (Schedule's key).
        refused(str): a time typed was not taken: why, and the time shown instead.
        typed(): the clinician changed its text (also typing over a time with itself,
            which changes no time).
    """

    entered = Signal()
    refused = Signal(str)
    typed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.lineEdit().textEdited.connect(self.typed)

    def focusInEvent(self, event: QFocusEvent) -> None:
        self.keep_earliest_now()
        super().focusInEvent(event)

    def focusOutEvent(self, event: QFocusEvent) -> None:
        typed = self.text()
        super().focusOutEvent(event)  # a time it does not take goes back
        if not self._takes(typed):
            self.refused.emit(self._went_back(typed))

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            typed = self.text()
            super().keyPressEvent(event)  # a time it does not take goes back
            if self._takes(typed):
                self.entered.emit()
            else:
                self.refused.emit(self._went_back(typed))
            event.accept()  # not on to the window
            return
        before = self.text()
        made = self._typed_with(event.text())
        super().keyPressEvent(event)
        if made is not None and self.text() == before and not self.isReadOnly():
            # Qt refuses the digit that makes a time out of range (the last of a past
            # year), without a word. It refuses others too, which are no time at all
            # (a digit typed into a full section, a month 13): not said to be out of
            # range.
            made_time = QDateTime.fromString(made, self.displayFormat())
            if made_time.isValid() and not self._takes(made):
                self.refused.emit(f"That time cannot be booked: {self._range_text()}.")

    def _typed_with(self, typed: str) -> str | None:
        """The text a digit ``typed`` would make, put in for the selection or at the
        cursor (None: not a digit)."""
        if not typed.isdigit():
            return None
        edit = self.lineEdit()
        text = edit.text()
        if edit.hasSelectedText():
            start = edit.selectionStart()
            return text[:start] + typed + text[start + len(edit.selectedText()) :]
        at = edit.cursorPosition()
        return text[:at] + typed + text[at:]

    def _takes(self, text: str) -> bool:
        """Whether ``text`` is a time within the range (what Enter keeps)."""
        typed = QDateTime.fromString(text, self.displayFormat())
        if not typed.isValid():
            return False
        minimum = self.minimumDateTime()
        # The minute shown: the clock's seconds and milliseconds off (with the
        # milliseconds kept, the earliest minute shown was refused as before itself).
        shown = minimum.time()
        earliest = QDateTime(minimum.date(), QTime(shown.hour(), shown.minute()))
        return earliest <= typed <= self.maximumDateTime()

    def _went_back(self, typed: str) -> str:
        return (
            f"{typed} cannot be booked: {self._range_text()}. The picker is back at {self.text()}."
        )

    def _range_text(self) -> str:
        fmt = self.displayFormat()
        return (
            f"an appointment is from now ({self.minimumDateTime().toString(fmt)}) "
            f"to {self.maximumDateTime().toString(fmt)}"
        )

    def before_calendar_opens(self) -> None:
        self.keep_earliest_now()

    def keep_earliest_now(self) -> None:
        """Now (less :data:`EARLIEST_S`) is the earliest time, but for the time shown:
        a time shown that has passed stays as it is rather than moved without a word
        (Schedule with it is refused, with the reason under the button)."""
        self.setMinimumDateTime(min(earliest_from(now()), self.dateTime()))


class ResultCard(QFrame):
    """Classification, confidence, findings, recommendation and explanation, marked
    PRELIMINARY until a clinician validated it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("resultCard")
        # Its long words break where the card is narrower than one (a large font).
        self.classification = WordBreakingLabel()
        self.classification.setObjectName("classification")
        #: The widest the card may be: its scrolling tab's room (see :meth:`fit_to`).
        self._room: int | None = None
        self.badge = QLabel("PRELIMINARY")
        self.badge.setObjectName("verdictBadge")
        self.confidence = QProgressBar()
        self.confidence.setObjectName("confidence")
        self.confidence.setRange(0, 100)
        self.confidence.setFormat("%p% confidence")  # until a result sets its own
        self.confidence.setAccessibleName("Confidence")
        self.confidence.setAccessibleDescription("The model's confidence in the classification")
        self.findings = _wrapping(name="findings")
        self.recommendation = _wrapping(name="recommendation")
        self.explanation = _wrapping(name="explanation")
        self.validated = _wrapping(name="muted")
        self.copy = QToolButton()
        self.copy.setObjectName("copyResult")
        self.copy.setIcon(icon("copy"))
        self.copy.setText(COPY_TEXT)
        self.copy.setToolTip(
            "Copy the result, its status and provenance as text (recorded in the audit log)"
        )
        self.copy.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.copy.setAutoRaise(True)
        self.raw_label = QLabel("The model's answer, as written:")
        self.raw = QPlainTextEdit()
        self.raw.setObjectName("rawAnswer")
        self.raw.setReadOnly(True)
        self.raw.setMaximumHeight(140)
        top = QHBoxLayout()
        top.addWidget(self.classification, 1)
        top.addWidget(self.badge, 0, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self._top = top
        self.form = QFormLayout()
        self.form.addRow("Confidence", self.confidence)
        self.form.addRow("Findings", self.findings)
        self.form.addRow("Recommendation", self.recommendation)
        self.form.addRow("Explanation", self.explanation)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 10)
        layout.addLayout(top)
        layout.addLayout(self.form)
        layout.addWidget(self.raw_label)
        layout.addWidget(self.raw)
        bottom = QHBoxLayout()
        bottom.addWidget(self.validated, 1)
        bottom.addWidget(self.copy, 0, Qt.AlignmentFlag.AlignBottom)
        layout.addLayout(bottom)

    def show_analysis(self, analysis: AnalysisRecord) -> None:
        result = analysis.result if analysis.parse_status != "parse_failed" else None
        if result:
            self.classification.set_full_text(str(result.get("classification") or "—"))
            confidence = float(result.get("confidence") or 0)
            self.confidence.setValue(round(confidence))
            # The stored value, as the API gives it: the bar's own %p rounds 0.5 to 0.
            self.confidence.setFormat(f"{confidence:g}% confidence")
            findings = [str(f) for f in result.get("findings") or []]
            self.findings.setText("\n".join(f"• {f}" for f in findings) or "none reported")
            self.recommendation.setText(str(result.get("recommendation") or "—"))
            self.explanation.setText(str(result.get("explanation") or "—"))
            self._set_rows_visible(True)
            self.raw_label.hide()
            self.raw.hide()
            state = analysis.status
        else:
            self.classification.set_full_text("The model's answer could not be read")
            self.explanation.setText(analysis.parse_error or "no result in the answer")
            self._set_rows_visible(False)
            self.form.setRowVisible(self.explanation, True)
            self._title_of(self.explanation).setText("Why")
            self.raw.setPlainText(analysis.answer_text or "(the model wrote no answer)")
            self.raw_label.show()
            self.raw.show()
            state = "parse_failed" if analysis.status == "preliminary" else analysis.status
        badge = {
            "approved": "APPROVED",
            "rejected": "REJECTED",
            "parse_failed": "PARSE FAILED · PRELIMINARY",
        }.get(state, "PRELIMINARY")
        self.badge.setText(badge)
        set_style_property(self.badge, "status", state)
        set_style_property(self, "status", state)
        self._reflow()
        if analysis.validated_by:
            notes = f" — {analysis.validation_notes}" if analysis.validation_notes else ""
            self.validated.setText(
                f"{analysis.status.capitalize()} by {analysis.validated_by} on "
                f"{local_datetime(analysis.validated_at)}{notes}"
            )
        else:
            self.validated.setText("Preliminary: a clinician has not validated this result yet.")

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._reflow()
        # The form kept the rows' heights it had worked out for the card's earlier width:
        # narrowed (the window smaller, the scroll bar shown), long findings, the
        # recommendation and the explanation lost their last lines.
        self.form.invalidate()

    @property
    def badge_beside(self) -> bool:
        """Whether the badge is beside the classification (else under it)."""
        return self._top.direction() == QBoxLayout.Direction.LeftToRight

    def fit_to(self, room: int) -> None:
        """Lay the card out for ``room``, the width its tab gives it: measured on the
        card alone, the badge beside the classification made the card as wide as both,
        wider than the tab, which then scrolled sideways and left it as wide, the badge
        beside (at 1.5 times the font on a 1024 px screen)."""
        self._room = room
        self._reflow()

    def _reflow(self) -> None:
        layout = self.layout()
        assert layout is not None  # set in __init__
        margins = layout.contentsMargins()
        width = self.contentsRect().width()
        if self._room is not None:
            width = min(width, self._room - (self.width() - self.contentsRect().width()))
        room = (
            width
            - margins.left()
            - margins.right()
            - self.badge.sizeHint().width()
            - self._top.spacing()
        )
        set_side_by_side(self._top, room >= CLASSIFICATION_MIN_WIDTH)

    def text(self) -> str:
        """What the card shows, as plain text: the badge, the classification, the rows
        shown (or the raw answer) and who validated it."""
        lines = [f"{self.classification.full_text()} [{self.badge.text()}]"]
        for widget in (self.confidence, self.findings, self.recommendation, self.explanation):
            if not self.form.isRowVisible(widget):
                continue
            title = self._title_of(widget).text()
            value = (
                widget.text()
                if isinstance(widget, QLabel)
                else widget.text().removesuffix(" confidence")
            )
            lines.append(f"{title}: {value}")
        if self.raw.isVisibleTo(self):
            lines.append(f"{self.raw_label.text()}\n{self.raw.toPlainText()}")
        lines.append(self.validated.text())
        return "\n".join(lines)

    def _set_rows_visible(self, visible: bool) -> None:
        for widget in (self.confidence, self.findings, self.recommendation, self.explanation):
            self.form.setRowVisible(widget, visible)
        self._title_of(self.explanation).setText("Explanation")

    def _title_of(self, field: QWidget) -> QLabel:
        """The label of ``field``'s row."""
        label = self.form.labelForField(field)
        assert isinstance(label, QLabel)  # rows added with a title text get a QLabel
        return label


class ProvenancePanel(QFrame):
    """Which model, prompt and device produced an analysis, how long it took and the
    generation settings: one labelled row each (:func:`provenance_rows`)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("provenance")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.form = QFormLayout(self)
        self.values: dict[str, QLabel] = {}
        self._rows: list[tuple[str, str, str]] = []
        # The rows of today's engine, made once: a result is shown without making any.
        self._build([(key, title, "") for key, title in provenance_titles()])

    def show_analysis(self, a: AnalysisRecord) -> None:
        rows = provenance_rows(a)
        if [key for key, _t, _v in rows] != list(self.values):
            self._build(rows)  # settings this panel has not shown (another engine's)
        for key, _title, text in rows:
            set_text(self.values[key], on_screen(text))
        self._rows = rows

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        # As the card's form (ResultCard.resizeEvent): the rows kept the heights worked
        # out for an earlier width, one line each, and the image's SHA-256 and the
        # analysis, wrapped over two to four lines, were drawn over one another.
        self.form.invalidate()

    def text(self) -> str:
        """Every row, ``Label: value``, in the order shown (the values as recorded,
        without the screen's line breaks)."""
        return "\n".join(f"{title}: {text}" for _key, title, text in self._rows)

    def _build(self, rows: list[tuple[str, str, str]]) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)
        self.values.clear()
        for key, title, _text in rows:
            value = _wrapping()
            self.values[key] = value
            self.form.addRow(title, value)


class AnalysisView(QWidget):
    """Everything about the patient's newest analysis.

    Signals:
        analyse_requested(): "Analyse" was pressed.
        validate_requested(bool approved, str clinician, str notes)
        schedule_requested(object): an aware ``datetime`` for the appointment.
        appointment_cancel_requested(): "Cancel appointment" was pressed.
        copy_requested(): Copy result was pressed.
    """

    analyse_requested = Signal()
    validate_requested = Signal(bool, str, str)
    schedule_requested = Signal(object)
    appointment_cancel_requested = Signal()
    copy_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("analysisView")
        self.analysis: AnalysisRecord | None = None

        self.state = _wrapping("No analysis yet.", "analysisState")
        # The count of streamed tokens changes every batch; a fixed-size label does not
        # make the view lay itself out (and repaint whole) for each, as a change of the
        # word-wrapped state text does.
        self.analyse = QPushButton(icon("analyse"), "Analyse")
        self.analyse.setObjectName("analyseButton")
        # Told apart from the patient page's Analyse, beside the name (both Tab stops).
        self.analyse.setAccessibleName("Analyse, in the Analysis tab")
        self.progress = QLabel()
        self.progress.setObjectName("analysisProgress")
        self.progress.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        metrics = self.progress.fontMetrics()
        self.progress.setFixedSize(  # as tall as the button beside it, text centred on it
            metrics.horizontalAdvance(PROGRESS_WIDEST) + 8,
            max(metrics.height() + 4, self.analyse.sizeHint().height()),
        )
        self.progress.hide()
        self.notice = Banner()
        self.notice.setObjectName("banner")
        top = QHBoxLayout()
        top.addWidget(self.state, 1)
        top.addWidget(self.progress, 0, Qt.AlignmentFlag.AlignTop)
        top.addWidget(self.analyse, 0, Qt.AlignmentFlag.AlignTop)

        self.reasoning_toggle = QToolButton()
        self.reasoning_toggle.setObjectName("reasoningToggle")
        self.reasoning_toggle.setText("Model reasoning")
        self.reasoning_toggle.setCheckable(True)
        self.reasoning_toggle.setChecked(True)
        self.reasoning_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.reasoning_toggle.setArrowType(Qt.ArrowType.DownArrow)
        self.reasoning_toggle.setAutoRaise(True)
        self.reasoning = QPlainTextEdit()
        self.reasoning.setObjectName("reasoning")
        self.reasoning.setReadOnly(True)
        self.reasoning.setPlaceholderText("The model's reasoning appears here as it is written.")
        self.reasoning.setMinimumHeight(90)
        self.reasoning.setMaximumHeight(200)
        self.answer_label = QLabel(ANSWER_STREAMING)
        self.answer = QPlainTextEdit()
        self.answer.setObjectName("answerStream")
        self.answer.setReadOnly(True)
        self.answer.setMaximumHeight(90)

        self.card = ResultCard()
        self.provenance_toggle = QToolButton()
        self.provenance_toggle.setObjectName("provenanceToggle")
        self.provenance_toggle.setIcon(icon("provenance"))
        self.provenance_toggle.setText("Provenance")
        self.provenance_toggle.setToolTip("Model, prompt version, device and timings")
        self.provenance_toggle.setCheckable(True)
        self.provenance_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.provenance = ProvenancePanel()
        self.provenance.hide()

        self.clinician = QLineEdit()
        self.clinician.setObjectName("clinician")
        self.notes = QPlainTextEdit()
        self.notes.setObjectName("notes")
        self.notes.setPlaceholderText("Notes (optional)")
        self.notes.setFixedHeight(54)
        self.notes.setTabChangesFocus(True)  # Tab moves on to Approve / Reject
        self.approve = QPushButton(icon("approve"), "Approve")
        self.approve.setObjectName("approveButton")
        self.reject = QPushButton(icon("reject"), "Reject")
        self.reject.setObjectName("rejectButton")
        for button, keys, tip in (
            (self.approve, APPROVE_KEYS, "Approve the result"),
            (self.reject, REJECT_KEYS, "Reject the result"),
        ):
            button.setShortcut(keys)  # pressed as a click is: the same checks
            native = keys.toString(QKeySequence.SequenceFormat.NativeText)
            button.setToolTip(f"{tip} under the clinician's name, with the notes ({native})")
        self._approve_tip = self.approve.toolTip()
        self._approve_offered = True  # the shown result has something to approve
        self._verdict_sending = False  # a verdict on the shown result is on its way
        self._verdict_focus: QWidget | None = None  # the verdict's button that had focus
        self._focus_while_sending: QWidget | None = None  # where Qt put it meanwhile
        self._appointment_focus: QWidget | None = None  # the appointment's button, ditto
        self._focus_while_booking: QWidget | None = None
        verdict = QGroupBox("Validation")
        verdict_form = QFormLayout(verdict)
        verdict_form.addRow("Clinician", self.clinician)
        verdict_form.addRow("Notes", self.notes)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.reject)
        buttons.addWidget(self.approve)
        verdict_form.addRow(buttons)
        # Why a verdict was refused, under its buttons: the banner at the top of the tab
        # is out of sight once the tab is scrolled down to them (at 1024 x 700).
        self.verdict_error = _wrapping("", "fieldError")
        self.verdict_error.hide()
        verdict_form.addRow(self.verdict_error)
        self.verdict_group = verdict

        self.when = AppointmentPicker()
        self.when.setObjectName("appointment")
        self.when.setCalendarPopup(True)
        self.when.setDisplayFormat("yyyy-MM-dd HH:mm")
        #: The day the picker's "tomorrow 09:00" was counted from, while it shows that
        #: (None: a booking, or a time the clinician set): see follow_today.
        self._default_from: QDateTime | None = None
        #: The picker refused a time typed, and said so under the button.
        self._when_refused = False
        #: What was said of it while the picker shows another time, not yet taken by
        #: Enter or a second Schedule ("": none).
        self._unseen_refusal = ""
        self.when.dateTimeChanged.connect(self._on_when_date_time_changed)
        self.schedule = QPushButton(icon("calendar"), "Schedule")
        self.schedule.setObjectName("scheduleButton")
        self.appointment = _wrapping("Not scheduled.", "muted")
        self.booked: datetime | None = None  # the appointment shown as booked
        # A booked appointment can be moved (Schedule again) and called off: the window
        # had no way to cancel one (only the API's PATCH with a null date).
        self.cancel_appointment = QPushButton("Cancel appointment")
        self.cancel_appointment.setObjectName("cancelAppointmentButton")
        self.cancel_appointment.setToolTip("Call off the booked follow-up appointment")
        self.cancel_appointment.hide()
        appointment = QGroupBox("Follow-up appointment")
        appointment_layout = QVBoxLayout(appointment)
        row = QHBoxLayout()
        row.addWidget(self.when, 1)
        row.addWidget(self.schedule)
        appointment_layout.addLayout(row)
        # The booked line over the group's width, Cancel appointment under it: beside the
        # button, the line had a third of the group (102 px at 1440 x 900, the
        # appointment beside the validation) and took three lines for a date and a zone.
        appointment_layout.addWidget(self.appointment)
        cancel_row = QHBoxLayout()
        cancel_row.addStretch(1)
        cancel_row.addWidget(self.cancel_appointment)
        appointment_layout.addLayout(cancel_row)
        self.schedule_error = _wrapping("", "fieldError")
        self.schedule_error.hide()
        appointment_layout.addWidget(self.schedule_error)
        appointment_layout.addStretch(1)
        self.schedule_group = appointment
        self.reset_appointment_time()

        # Side by side where the tab is wide enough, else the appointment under the
        # validation (see _reflow).
        self._actions = QHBoxLayout()
        self._actions.addWidget(verdict, 3)
        self._actions.addWidget(appointment, 2)

        body = QWidget()
        body_layout = QVBoxLayout(body)
        body_layout.setContentsMargins(BODY_MARGIN, BODY_MARGIN, BODY_MARGIN, BODY_MARGIN)
        body_layout.addLayout(top)
        body_layout.addWidget(self.notice)
        body_layout.addWidget(self.reasoning_toggle)
        body_layout.addWidget(self.reasoning)
        body_layout.addWidget(self.answer_label)
        body_layout.addWidget(self.answer)
        body_layout.addWidget(self.card)
        body_layout.addWidget(self.provenance_toggle)
        body_layout.addWidget(self.provenance)
        body_layout.addLayout(self._actions)
        body_layout.addStretch(1)
        self._scroll = QScrollArea()
        self._scroll.setWidget(body)
        self._scroll.setWidgetResizable(True)
        self._scroll.setFrameShape(QFrame.Shape.NoFrame)
        # No Tab stop of its own (it took the focus unseen, and Tab did nothing visible
        # there): Tab to a field in it scrolls to that field, and a click in it gives it
        # the arrow keys and Page Up/Down.
        self._scroll.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._scroll)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

        self.analyse.clicked.connect(self.analyse_requested)
        self.reasoning_toggle.toggled.connect(self._on_reasoning_toggle_toggled)
        self.provenance_toggle.toggled.connect(self._on_provenance_toggle_toggled)
        self.approve.clicked.connect(lambda: self._on_verdict(True))
        self.reject.clicked.connect(lambda: self._on_verdict(False))
        self.schedule.clicked.connect(self._on_schedule_clicked)
        self.when.entered.connect(self._on_when_entered)
        self.when.refused.connect(self._on_when_refused)
        self.when.typed.connect(self._on_when_typed)
        self.cancel_appointment.clicked.connect(self.appointment_cancel_requested)
        self.card.copy.clicked.connect(self.copy_requested)
        self.show_empty()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._reflow()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        # Resized behind another tab (the window made smaller there), the body kept the
        # layout of the wider window: the layout dropped its update while hidden, and the
        # card ran past the right edge, the badge and the findings cut off.
        body = self._scroll.widget()
        if body is not None and (layout := body.layout()) is not None:
            layout.invalidate()

    @property
    def actions_side_by_side(self) -> bool:
        """Whether the appointment is beside the validation (else under it)."""
        return self._actions.direction() == QBoxLayout.Direction.LeftToRight

    def _reflow(self) -> None:
        """The validation and the appointment side by side where there is room for
        both, else one under the other: side by side they made the tab scroll sideways
        at 1024 x 700, and Approve and Schedule were out of sight."""
        self.card.fit_to(room_in(self._scroll) - 2 * BODY_MARGIN)
        groups = (self.verdict_group, self.schedule_group)
        needed = sum(g.minimumSizeHint().width() for g in groups) + self._actions.spacing()
        set_side_by_side(self._actions, room_in(self._scroll) >= needed + 2 * BODY_MARGIN)

    # What the controller shows ---------------------------------------------------------

    def show_empty(self, text: str = "No analysis yet. Drop an image or press Analyse.") -> None:
        self.analysis = None
        self._clear_output(text)
        self.provenance_toggle.setChecked(False)
        self.reasoning_toggle.setChecked(False)  # nothing is being written

    def start_stream(self, text: str = "Analysing…", tokens: int | None = 0) -> None:
        """A new analysis started: clear the text, show it streaming (with the count of
        tokens so far, unless it is not known)."""
        self._clear_output(text)
        self.answer_label.setText(ANSWER_STREAMING)
        self.reasoning_toggle.setChecked(True)
        if tokens is not None:
            self.show_progress(text, tokens)

    def show_progress(self, text: str, tokens: int) -> None:
        """While streaming: ``text`` as the state (relaid out only when it changes) and
        the count of tokens so far."""
        set_text(self.state, text)
        set_text(self.progress, f"{tokens:,} tokens")
        self.progress.show()

    def _clear_output(self, state: str) -> None:
        self._set_state(state)
        self.reasoning.clear()
        self.answer.clear()
        self.answer_label.hide()
        self.answer.hide()
        self.card.hide()
        self.provenance_toggle.hide()
        self.provenance.hide()
        # A refusal of the verdict was about the result shown then, not the next one.
        self.mark_verdict_field(None)
        if self._has_focus(self.verdict_group):
            # Disabled under the focus, the verdict left the window with no focus widget
            # at all (keys went nowhere); Analyse is what started this.
            step_focus_to(self.analyse)
        self.verdict_group.setEnabled(False)

    def append_stream(self, phase: str, text: str) -> None:
        """More of the model's output (``reasoning`` or ``answer``)."""
        target = self.answer if phase == "answer" else self.reasoning
        if phase == "answer" and not self.answer.isVisible():
            self.answer_label.show()
            self.answer.show()
        bar = target.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 4
        cursor = target.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(text)
        if at_end:
            bar.setValue(bar.maximum())

    def set_state(self, text: str, kind: str = "") -> None:
        self._set_state(text, kind)

    def stop_stream(self) -> bool:
        """The streaming analysis stopped without a result: what it wrote stays, its
        answer headed as unfinished. Returns whether any of its text is shown."""
        self.progress.hide()
        self.answer_label.setText(ANSWER_UNFINISHED)
        written = bool(self.reasoning.toPlainText().strip() or self.answer.toPlainText().strip())
        if not written:
            # Open, the empty pane said "The model's reasoning appears here as it is
            # written" under a failure, where nothing will be.
            self.reasoning_toggle.setChecked(False)
        return written

    def show_result(self, analysis: AnalysisRecord) -> None:
        """The stored analysis: its text, the card and its provenance."""
        if self.analysis is None or self.analysis.id != analysis.id:
            self.mark_verdict_field(None)  # a refusal of another result's verdict
        self.analysis = analysis
        if self.reasoning.toPlainText().strip() != analysis.reasoning_text.strip():
            self.reasoning.setPlainText(analysis.reasoning_text)
        self.answer.clear()
        self.answer_label.hide()
        self.answer.hide()
        self.card.show_analysis(analysis)
        self.card.show()
        self.provenance.show_analysis(analysis)
        self.provenance_toggle.show()
        self.provenance.setVisible(self.provenance_toggle.isChecked())
        self.verdict_group.setEnabled(True)
        unreadable = analysis.parse_status == "parse_failed"
        self._offer_approve(not unreadable)
        self.reasoning_toggle.setChecked(False)  # the card matters now; one click away
        if unreadable and analysis.status == "preliminary":
            self._set_state(
                "The model answered, but its answer could not be read as a result (the "
                "raw answer is shown below), so there is nothing to approve: analyse "
                "again, or reject it.",
                "error",
            )
        elif unreadable and analysis.status == "rejected":
            # The patient's status stays as it was ("Pending Analysis"), and the workflow
            # is back at analysis: say why.
            self._set_state(
                f"Rejected by {analysis.validated_by}: the model's answer could not be "
                "read, so this patient has no AI result yet. Analyse again for one."
            )
        elif analysis.status == "preliminary":
            classification = (analysis.result or {}).get("classification")
            if isinstance(classification, str) and is_ungradable(classification):
                self._set_state(
                    "The model could not grade this image: take the scan again or analyse "
                    "another image. Preliminary result: please validate."
                )
            else:
                self._set_state("Preliminary result: please validate.")
        else:
            self._set_state(f"Result {analysis.status} by {analysis.validated_by}.")

    def _offer_approve(self, offered: bool) -> None:
        """Approve on or off (off, its tooltip says why: an unreadable answer has no
        result to approve); the focus on it goes on to Reject rather than nowhere."""
        if not offered and self.window().focusWidget() is self.approve:
            step_focus_to(self.reject)
        self._approve_offered = offered
        if self._verdict_sending:
            self.approve.setToolTip(self._approve_tip if offered else NOTHING_TO_APPROVE)
            return  # on again, or not, once the verdict on its way is answered
        offer(self.approve, "" if offered else NOTHING_TO_APPROVE, self._approve_tip)

    def offer_analyse(self, why_not: str = "") -> None:
        """Analyse on, or off with ``why_not`` as its tooltip."""
        offer(self.analyse, why_not, "")

    def show_failure(self, text: str) -> None:
        self._set_state(text, "error")

    def show_notice(self, text: str, kind: str = "warning") -> None:
        self.notice.show_message(text, kind)

    def set_clinician(self, name: str, *, replacing: str = "") -> None:
        """Fill in the clinician's name where the field is empty (or still holds
        ``replacing``, the name filled in before); a name typed in stays."""
        if self.clinician.text() in ("", replacing):
            self.clinician.setText(name)

    def set_appointment(self, when: datetime | None, *, pending_verdict: bool = False) -> None:
        """The booked line; with ``pending_verdict`` (no verdict recorded yet) a booking
        says that the workflow completes once there is one."""
        # The window's focus widget, also while the question before cancelling is still
        # the active window.
        cancelling = self.window().focusWidget() is self.cancel_appointment
        self.cancel_appointment.setVisible(when is not None)
        if cancelling and when is None:  # hidden under the focus: on to a new booking
            step_focus_to(self.when)
        self.booked = when
        if when is None:
            self.appointment.setText("Not scheduled.")
        else:
            text = f"Scheduled for {self.booked_time()}."
            if pending_verdict:
                text += " The patient's workflow completes once a result is validated."
            self.appointment.setText(text)

    @Slot(bool)
    def _on_provenance_toggle_toggled(self, shown: bool) -> None:
        """Show the provenance and scroll it into sight once laid out: it opens under
        the card, below the tab's foot with a result on screen, and Provenance seemed
        to do nothing."""
        self.provenance.setVisible(shown)
        if shown:
            QTimer.singleShot(0, self, self._scroll_to_provenance)

    def _scroll_to_provenance(self) -> None:
        """As much of the panel in sight as fits, its button kept at the top at most (the
        panel is taller than the tab at 1024 x 700; centring it hid both ends)."""
        body, bar = self._scroll.widget(), self._scroll.verticalScrollBar()
        assert body is not None  # set in __init__
        top = self.provenance_toggle.mapTo(body, QPoint(0, 0)).y()
        bottom = self.provenance.mapTo(body, QPoint(0, self.provenance.height())).y()
        seen = self._scroll.viewport().height()
        if bottom - bar.value() > seen:
            bar.setValue(min(top, bottom - seen))

    def show_booking(self) -> None:
        """Scroll the booked line (and Cancel appointment) into sight once laid out:
        Schedule's confirmation goes to the banner at the top of the tab, out of sight
        once the tab is scrolled down to the picker, and the line under it was cut off at
        the tab's foot."""
        QTimer.singleShot(0, self, self._scroll_to_booking)

    def _scroll_to_booking(self) -> None:
        # Cancel appointment, under the line, first: then the line, where both fit.
        for widget in (self.cancel_appointment, self.appointment):
            if widget.isVisible():
                self._scroll.ensureWidgetVisible(widget)

    def booked_time(self) -> str:
        """The booked appointment's time as the view shows it (with its zone); empty
        where none is booked."""
        if self.booked is None:
            return ""
        zone = self.booked.astimezone().tzname() or "local time"
        return f"{local_datetime(self.booked)} ({zone})"

    def reset_appointment_time(self, booked: datetime | None = None) -> None:
        """The ``booked`` appointment's time where it is still to come (moving it starts
        from it), else tomorrow at 09:00, the usual first slot. A time typed and refused
        before no longer holds, nor what was said of it (the new day's default moved
        the picker from the time the reason said it was back at)."""
        if self._when_refused:
            self.show_schedule_error("")
        self._when_refused, self._unseen_refusal = False, ""
        with QSignalBlocker(self.when):  # not the clinician's: the default follows the day
            self._default_from = self._reset_appointment_time(booked, now())

    def _reset_appointment_time(self, booked: datetime | None, now: QDateTime) -> QDateTime | None:
        self.when.setMinimumDateTime(earliest_from(now))
        # A follow-up, not a date at the end of the calendar (9999-12-31 overflowed the
        # conversion to an aware time and the click did nothing).
        latest = now.addYears(MAX_YEARS_AHEAD)
        if booked is not None and booked.timestamp() > now.toSecsSinceEpoch():
            at = QDateTime.fromSecsSinceEpoch(int(booked.timestamp()))
            # One booked further ahead (by a client) is shown as booked: clamped to the
            # horizon without a word, Schedule moved it there.
            self.when.setMaximumDateTime(max(latest, at))
            self.when.setDateTime(at)
            return None
        self.when.setMaximumDateTime(latest)
        tomorrow = now.addDays(1)
        tomorrow.setTime(QTime(9, 0))
        self.when.setDateTime(tomorrow)
        return now

    @Slot()
    def follow_today(self) -> None:
        """On a new day, the picker's "tomorrow 09:00" is counted again where nobody
        changed it: a page left open overnight offered what had become today 09:00,
        booked as shown before nine, refused as past after. A booking shown, or a time
        the clinician set, stays."""
        shown_from = self._default_from
        if shown_from is not None and shown_from.date() != now().date():
            self.reset_appointment_time()

    @Slot(QDateTime)
    def _on_when_date_time_changed(self, _when: QDateTime) -> None:
        self._default_from = None  # the clinician's (the view's own changes are blocked)
        if self._when_refused:  # a time it takes now: what was said no longer holds
            self._when_refused, self._unseen_refusal = False, ""
            self.show_schedule_error("")

    @Slot()
    def _on_when_entered(self) -> None:
        self._unseen_refusal = ""  # Enter on the time shown takes that one
        if self.schedule.isEnabled() and self.schedule.isVisibleTo(self):
            self.schedule.click()

    @Slot()
    def _on_when_typed(self) -> None:
        # Typed after a refusal (the time shown, typed over itself, is heard nowhere
        # else): the time the picker shows next is the clinician's, a refusal says so.
        self._unseen_refusal = ""

    @Slot(str)
    def _on_when_refused(self, why: str) -> None:
        self._when_refused, self._unseen_refusal = True, why
        self.show_schedule_error(why)

    def focus_appointment(self) -> None:
        """A verdict is recorded: the keyboard goes on to the next step, the appointment
        picker. Left on Analyse, Space queued a new analysis whose result replaced the
        validated one; left on Approve or Reject, it sent the verdict again. Only where
        the focus was in this view: a clinician gone elsewhere keeps theirs."""
        if self._has_focus(self) or self.window().focusWidget() is None:
            step_focus_to(self.when)
            self._scroll.ensureWidgetVisible(self.when)  # only Tab scrolls to it by itself

    def focus_analyse_again(self) -> None:
        """An unreadable answer is rejected: the workflow is back at analysis, and the
        keyboard goes on to Analyse, with the state above it ("Rejected by …: … Analyse
        again for one") in sight. The appointment picker it went to scrolled that out of
        view while the stepper showed Analysis. Only where the focus was in this view, as
        :meth:`focus_appointment`; with Analyse off, that is where it goes."""
        if not self.analyse.isEnabled():
            self.focus_appointment()
        elif self._has_focus(self) or self.window().focusWidget() is None:
            step_focus_to(self.analyse)
            self.scroll_to_top()  # the state and Analyse head the tab

    def scroll_to_top(self) -> None:
        self._scroll.verticalScrollBar().setValue(0)

    def provenance_text(self) -> str:
        return self.provenance.text()

    def result_text(self) -> str:
        """The shown result and its provenance as plain text (what Copy result copies):
        which analysis of which patient by which model, then the card and provenance."""
        a = self.analysis
        heading = f"OphthAI analysis #{a.id} of patient {a.patient_id} ({a.model_id})" if a else ""
        return f"{heading}\n{self.card.text()}\n\n{self.provenance_text()}".lstrip("\n")

    def show_copied(self) -> None:
        """Say on the button, for two seconds, that the result is on the clipboard."""
        button = self.card.copy
        button.setText("Copied")
        QTimer.singleShot(COPIED_MS, button, lambda: button.setText(COPY_TEXT))

    # Internals --------------------------------------------------------------------------

    def _show_error(self, label: QLabel, message: str) -> None:
        set_text(label, message)
        label.setVisible(bool(message))
        if message:  # scrolled into sight once the label has its place
            QTimer.singleShot(0, self, lambda: self._scroll.ensureWidgetVisible(label))
            announce(label, message, urgent=True)  # heard where the focus is

    @staticmethod
    def _has_focus(area: QWidget) -> bool:
        """Whether the window's focus widget is ``area`` or inside it (also while a
        question or another window of the application is the active one)."""
        focused = area.window().focusWidget()
        return focused is not None and (focused is area or area.isAncestorOf(focused))

    def _set_state(self, text: str, kind: str = "") -> None:
        self.progress.hide()
        set_text(self.state, text)
        set_style_property(self.state, "kind", kind)

    def _on_verdict(self, approved: bool) -> None:
        self.validate_requested.emit(approved, self.clinician.text(), self.notes.toPlainText())

    def mark_verdict_field(self, field: str | None, message: str = "") -> None:
        """Outline the verdict's field a refusal named (``clinician`` or ``notes``), put
        the cursor there and say why under the buttons; None and "" clear both."""
        widgets = {"clinician": self.clinician, "notes": self.notes}
        for name, widget in widgets.items():
            set_style_property(widget, "invalid", name == field)
        if field in widgets:
            step_focus_to(widgets[field])
        self._show_error(self.verdict_error, message)

    def set_verdict_sending(self, sending: bool) -> None:
        """A verdict is on its way: Approve and Reject (and their keys) wait for it.
        Approve comes back on only where there is a result to approve (it came back on
        beside "nothing to approve" after a refused Reject of an unreadable answer)."""
        if sending == self._verdict_sending:
            return
        self._verdict_sending = sending
        if sending:
            # Disabled under the focus, the button passed it on to the appointment
            # picker, where it stayed after a refusal said under the buttons: taken
            # back once the verdict is answered, unless the clinician moved it.
            focus = self.window().focusWidget()
            self._verdict_focus = focus if focus in (self.approve, self.reject) else None
            self.reject.setEnabled(False)
            self.approve.setEnabled(False)
            self._focus_while_sending = self.window().focusWidget()
            return
        self.reject.setEnabled(True)
        self._offer_approve(self._approve_offered)
        pressed, self._verdict_focus = self._verdict_focus, None
        if pressed is not None and self.window().focusWidget() is self._focus_while_sending:
            step_focus_to(pressed if pressed.isEnabled() else self.reject)

    def set_appointment_sending(self, sending: bool) -> None:
        """A change of the appointment is on its way: Schedule (and Enter in the picker)
        and Cancel appointment wait for it. The focus is given back to the button that
        had it once the change is answered, unless the clinician moved it (disabled, the
        button passed it on, and Cancel appointment, hidden once the booking was called
        off, no longer handed it to the picker)."""
        if sending:
            focus = self.window().focusWidget()
            buttons = (self.schedule, self.cancel_appointment)
            self._appointment_focus = focus if focus in buttons else None
            self.schedule.setEnabled(False)
            self.cancel_appointment.setEnabled(False)
            self._focus_while_booking = self.window().focusWidget()
            return
        self.schedule.setEnabled(True)
        self.cancel_appointment.setEnabled(True)
        pressed, self._appointment_focus = self._appointment_focus, None
        if pressed is not None and self.window().focusWidget() is self._focus_while_booking:
            step_focus_to(pressed)

    def show_schedule_error(self, message: str) -> None:
        """Why the appointment was refused, under the picker ("" clears it)."""
        self._show_error(self.schedule_error, message)

    def verdict_error_text(self) -> str:
        return "" if self.verdict_error.isHidden() else self.verdict_error.text()

    def schedule_error_text(self) -> str:
        return "" if self.schedule_error.isHidden() else self.schedule_error.text()

    @Slot(bool)
    def _on_reasoning_toggle_toggled(self, expanded: bool) -> None:
        self.reasoning.setVisible(expanded)
        self.reasoning_toggle.setArrowType(
            Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow
        )

    @Slot()
    def _on_schedule_clicked(self) -> None:
        if refusal := self._unseen_refusal:
            # A time typed was refused and the picker shows another, the one before:
            # Schedule pressed next (the click that took the focus from the picker, Tab
            # and Space, a slow press) would book a time the clinician did not choose.
            # Said under the picker; pressed again, it books the time shown.
            self._unseen_refusal = ""
            self.show_schedule_error(
                f"{refusal} Not booked: press Schedule again to book "
                f"{self.when.text()}, or change the time."
            )
            return
        naive: Any = self.when.dateTime().toPython()
        when = naive.astimezone() if naive.tzinfo is None else naive
        self.schedule_requested.emit(when)
