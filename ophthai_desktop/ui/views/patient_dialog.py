"""Create or edit a patient. The core validates; the dialog shows which field is wrong."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QDate, QTimer, Signal, Slot
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ophthai_desktop.core.domain import Laterality, Modality, PatientStatus, age_on
from ophthai_desktop.core.records import PatientRecord
from ophthai_desktop.core.services.ingest import shown_name
from ophthai_desktop.ui import day
from ophthai_desktop.ui.display import LATERALITY_NAMES, MODALITY_NAMES
from ophthai_desktop.ui.messages import DATABASE_DOWN
from ophthai_desktop.ui.views.announce import announce
from ophthai_desktop.ui.views.calendar_keys import CalendarDateEdit
from ophthai_desktop.ui.views.focus import step_focus_to
from ophthai_desktop.ui.views.scale import scaled
from ophthai_desktop.ui.views.style import set_style_property
from ophthai_desktop.ui.views.tall_enough import TallEnough

NO_AGE = -1

#: A save still waiting after this long is said to wait for the database (a lock held by
#: another program is waited for up to 30 s).
BUSY_NOTICE_MS = 1000

SAVING = "Saving…"
SAVING_BUSY = "Saving… the database is busy; this can take up to 30 s."
NOT_CANCELLED = (
    "Saving… the form was already sent to the database, which is busy, and cannot be taken "
    "back: the patient is shown once it is saved; if the database refuses it, this form "
    "closes with nothing saved."
)


class PatientDialog(QDialog):
    """The patient form. OK sends the fields; the controller closes the dialog once the
    core accepted them, or calls :meth:`show_error` with the field it refused.

    Signals:
        submitted(dict): the form's values under the core's field names (on an edit,
            only those changed: :meth:`changed_fields`); when images come with the
            dialog, also ``_modality`` and ``_laterality``.
    """

    submitted = Signal(dict)

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        patient: PatientRecord | None = None,
        files: Sequence[str] = (),
    ) -> None:
        super().__init__(parent)
        TallEnough(self)  # a message or note of two lines shown whole
        self.setObjectName("patientDialog")
        self.patient = patient
        self.setWindowTitle("Edit patient" if patient else "New patient")
        self.setMinimumWidth(scaled(self, 460))
        self._busy = False  # the form was sent and is being saved
        self._cancel_asked = False  # Cancel pressed while it was being saved
        self._busy_timer = QTimer(self)
        self._busy_timer.setSingleShot(True)
        self._busy_timer.timeout.connect(self._on_busy_timer_timeout)

        self.name = QLineEdit()
        self.name.setObjectName("name")
        self.age = QSpinBox()
        self.age.setObjectName("age")
        self.age.setRange(NO_AGE, 130)
        self.age.setSpecialValueText("—")
        self.age.setValue(NO_AGE)
        self.birth_known = QCheckBox("known")
        self.birth_date = CalendarDateEdit()
        self.birth_date.setObjectName("birth_date")
        self.birth_date.setCalendarPopup(True)
        self.birth_date.setDisplayFormat("yyyy-MM-dd")
        self.birth_date.setDate(QDate(1970, 1, 1))
        self.birth_date.setMaximumDate(day.today())  # no births in the future (follow_today)
        self.birth_date.setEnabled(False)
        # Their row's label is not their buddy (it labels the pair): named here, else a
        # screen reader said a bare "known" and nothing for the date.
        self.birth_known.setAccessibleName("Birth date known")
        self.birth_date.setAccessibleName("Birth date")
        self.birth_known.toggled.connect(self._on_birth_known_toggled)
        self.birth_date.dateChanged.connect(self._on_birth_date_date_changed)
        birth = QHBoxLayout()
        birth.addWidget(self.birth_known)
        birth.addWidget(self.birth_date, 1)
        self.gender = QComboBox()
        self.gender.setObjectName("gender")
        self.gender.setEditable(True)
        self.gender.addItems(["", "Female", "Male", "Other"])
        self.status = QComboBox()
        self.status.setObjectName("status")
        for status in PatientStatus:
            self.status.addItem(status.value, status.value)
        self.status.setCurrentIndex(self.status.findData(PatientStatus.PENDING_ANALYSIS.value))
        # One symptom a line: a comma belongs to a symptom ("pain, worse at night"), so
        # a comma-separated field split it in two when the patient was edited.
        self.symptoms = QPlainTextEdit()
        self.symptoms.setObjectName("symptoms")
        self.symptoms.setPlaceholderText("one a line, e.g.\nblurred vision\nfloaters")
        self.symptoms.setFixedHeight(scaled(self.symptoms, 64))  # three lines, at any size
        self.symptoms.setTabChangesFocus(True)
        self.history = QPlainTextEdit()
        self.history.setObjectName("history")
        self.history.setPlaceholderText("Medical history")
        self.history.setFixedHeight(scaled(self.history, 90))
        self.history.setTabChangesFocus(True)  # Tab moves on to Save, as in a form

        form = QFormLayout()
        form.addRow("Name *", self.name)
        form.addRow("Age", self.age)
        form.addRow("Birth date", birth)
        form.addRow("Sex", self.gender)
        form.addRow("Status", self.status)
        form.addRow("Symptoms", self.symptoms)
        form.addRow("History", self.history)

        self.modality = QComboBox()
        self.modality.setObjectName("modality")
        for modality in (Modality.UNKNOWN, Modality.OCT, Modality.OCTA, Modality.FUNDUS):
            self.modality.addItem(MODALITY_NAMES[modality.value], modality.value)
        self.laterality = QComboBox()
        self.laterality.setObjectName("laterality")
        for side in (Laterality.UNKNOWN, Laterality.OD, Laterality.OS, Laterality.OU):
            self.laterality.addItem(LATERALITY_NAMES[side.value], side.value)
        self.files = list(files)
        if self.files:
            names = ", ".join(shown_name(name) for name in self.files[:3]) + (
                " …" if len(self.files) > 3 else ""
            )
            images = QLabel(names)
            images.setWordWrap(True)
            form.addRow("Images", images)
            form.addRow("Modality", self.modality)
            form.addRow("Eye", self.laterality)

        self.error = QLabel()
        self.error.setObjectName("fieldError")
        self.error.setWordWrap(True)
        self.error.hide()
        # What a save sent is waiting for: the buttons alone went grey for up to 30 s.
        self.saving = QLabel()
        self.saving.setObjectName("savingNote")
        self.saving.setWordWrap(True)
        self.saving.hide()
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setText("Save" if patient else "Create patient")
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(self.saving)
        layout.addWidget(self.buttons)
        self.buttons.accepted.connect(self._on_buttons_accepted)
        self.buttons.rejected.connect(self.reject)
        # Enter in Symptoms or History starts a new line (one symptom a line), so Enter
        # saves only from the other fields: Ctrl+Enter saves from any of them.
        ok.setToolTip(f"{ok.text()} (Enter; Ctrl+Enter in Symptoms and History)")
        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            save = QShortcut(QKeySequence(keys), self)
            save.setWhatsThis(ok.text())
            save.activated.connect(self._on_save_key)
        self._widgets: dict[str, QWidget] = {
            "name": self.name,
            "age": self.age,
            "birth_date": self.birth_date,
            "gender": self.gender,
            "status": self.status,
            "symptoms": self.symptoms,
            "history": self.history,
            "modality": self.modality,
            "laterality": self.laterality,
        }
        self._refused: QWidget | None = None  # the field the last error pointed at
        self.name.textEdited.connect(self._on_field_edited)
        self.age.valueChanged.connect(self._on_field_edited)
        self.birth_date.dateChanged.connect(self._on_field_edited)
        self.gender.currentTextChanged.connect(self._on_field_edited)
        self.status.currentIndexChanged.connect(self._on_field_edited)
        self.symptoms.textChanged.connect(self._on_field_edited)
        self.history.textChanged.connect(self._on_field_edited)
        self.modality.currentIndexChanged.connect(self._on_field_edited)
        self.laterality.currentIndexChanged.connect(self._on_field_edited)
        if patient is not None:
            self._fill(patient)
        self._initial = self.fields() if patient is not None else {}
        self.name.setFocus()

    def set_guess(self, modality: str, laterality: str) -> None:
        """Preselect what the file names suggest about the images."""
        self.modality.setCurrentIndex(max(0, self.modality.findData(modality)))
        self.laterality.setCurrentIndex(max(0, self.laterality.findData(laterality)))

    @Slot(bool)
    def _on_birth_known_toggled(self, known: bool) -> None:
        """A known birth date gives the age (the core derives it too): the age box
        follows it, read-only, so the two can never disagree."""
        self.birth_date.setEnabled(known)
        self.age.setEnabled(not known)
        if known:
            age = self.age.value()
            shown = day.python_date(self.birth_date.date())
            if age != NO_AGE and age_on(shown) != age:
                # Start from a date that keeps the age entered (the clinician then sets
                # the day), not the picker's 1970-01-01, which changed the age with it.
                self.birth_date.setDate(day.today().addYears(-age))
            self._on_birth_date_date_changed(self.birth_date.date())

    @Slot()
    def follow_today(self) -> None:
        """A new day while the form is open: today can be picked as the birth date (the
        latest was the day the form opened, so a baby born after midnight could not be
        entered until it was opened again), and the age shown is counted to today. The
        date entered stays as it is."""
        latest = day.today()
        if self.birth_date.maximumDate() < latest:  # a later latest date moves no date
            self.birth_date.setMaximumDate(latest)
        self._on_birth_date_date_changed(self.birth_date.date())

    @Slot(QDate)
    def _on_birth_date_date_changed(self, born: QDate) -> None:
        if self.birth_known.isChecked():
            self.age.setValue(age_on(day.python_date(born)))

    def _fill(self, patient: PatientRecord) -> None:
        self.name.setText(patient.name)
        self.age.setValue(NO_AGE if patient.age is None else patient.age)
        if patient.birth_date is not None:
            self.birth_known.setChecked(True)
            self.birth_date.setDate(
                QDate(patient.birth_date.year, patient.birth_date.month, patient.birth_date.day)
            )
        self.gender.setCurrentText(patient.gender or "")
        self.status.setCurrentIndex(max(0, self.status.findData(patient.status)))
        self.symptoms.setPlainText("\n".join(patient.symptoms))
        self.history.setPlainText(patient.history)

    def fields(self) -> dict[str, Any]:
        """The form's values under the core's field names."""
        values: dict[str, Any] = {
            "name": self.name.text(),
            "age": None if self.age.value() == NO_AGE else self.age.value(),
            "birth_date": self.birth_date.date().toPython()
            if self.birth_known.isChecked()
            else None,
            "gender": self.gender.currentText().strip() or None,
            "status": self.status.currentData(),
            "symptoms": [s.strip() for s in self.symptoms.toPlainText().splitlines() if s.strip()],
            "history": self.history.toPlainText(),
        }
        if self.files:
            values["_modality"] = self.modality.currentData()
            values["_laterality"] = self.laterality.currentData()
        return values

    def changed_fields(self) -> dict[str, Any]:
        """On an edit, the values the clinician changed; all of them for a new patient.

        Only these are saved, so a field left alone keeps what someone else (another
        client, the watch folder, the model's finding) wrote while the dialog was open,
        and a symptom with a comma in it is not split by the comma-separated field.
        """
        values = self.fields()
        if self.patient is None:
            return values
        return {key: value for key, value in values.items() if self._initial.get(key) != value}

    def show_error(self, field: str | None, message: str) -> None:
        """Point at the refused field (if it is on the form) and say why; or, where Cancel
        was pressed while it was being saved, close the form: nothing was saved."""
        self.set_busy(False)
        if self._cancel_asked:
            self.reject()
            return
        for shown in self._widgets.values():
            self._mark(shown, False)
        widget = self._widgets.get(field or "")
        self._refused = widget
        if widget is not None:
            self._mark(widget, True)
            step_focus_to(widget)
        self.error.setText(message)
        self.error.show()
        # Heard, not only seen: with the focus already on the refused field (Enter in
        # the name left empty) a screen reader said nothing at all.
        announce(self.error, message, urgent=True)

    def error_text(self) -> str:
        return self.error.text() if self.error.isVisible() else ""

    def saving_text(self) -> str:
        return self.saving.text() if self.saving.isVisible() else ""

    @property
    def cancel_asked(self) -> bool:
        """Whether Cancel was pressed while the form was being saved."""
        return self._cancel_asked

    def set_busy(self, busy: bool) -> None:
        """Being saved: Save waits (a second press made a second patient), Cancel stays
        pressable and says what it can do, and the form says that it saves."""
        self._busy = busy
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not busy)
        if busy:
            self.saving.setText(SAVING)
            self.saving.show()
            self._busy_timer.start(BUSY_NOTICE_MS)
        else:
            self._busy_timer.stop()
            self.saving.hide()

    @Slot()
    def _on_busy_timer_timeout(self) -> None:
        if self._busy and not self._cancel_asked:
            self.saving.setText(SAVING_BUSY)
            announce(self.saving, SAVING_BUSY)

    @Slot(bool)
    def database_answered(self, available: bool) -> None:
        """The database answers again: the form's "does not answer" gives way, as the
        window's banner does (it stayed, under a banner saying the opposite). The save it
        refused was rolled back, so Save again makes one patient."""
        if available and not self._busy and self.error_text() == DATABASE_DOWN:
            ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok).text()
            message = f"The database answers again; nothing was saved yet: press {ok} again."
            self.error.setText(message)
            announce(self.error, message)

    def reject(self) -> None:
        """Cancel, Escape and the close button, while the form is being saved, say that
        the save cannot be taken back and close the form once it is done (refused: at
        once; saved: as a save does). A closed dialog told the clinician that nothing was
        saved while it was (a patient dropped images for was created "cancelled")."""
        if self._busy:
            self._cancel_asked = True
            self._busy_timer.stop()
            self.saving.setText(NOT_CANCELLED)
            announce(self.saving, NOT_CANCELLED, urgent=True)
            return
        super().reject()

    @Slot()
    def _on_field_edited(self) -> None:
        """The refused field changed: its red frame and the error go, else the form went
        on saying "Name: the name is required" under the name just typed in."""
        widget = self._refused
        if widget is None or self.sender() is not widget:
            return
        self._refused = None
        self._mark(widget, False)
        self.error.hide()

    @staticmethod
    def _mark(widget: QWidget, invalid: bool) -> None:
        set_style_property(widget, "invalid", invalid)

    @Slot()
    def _on_save_key(self) -> None:
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        if self.buttons.isEnabled() and ok.isEnabled():  # not while saving
            ok.click()

    @Slot()
    def _on_buttons_accepted(self) -> None:
        self.set_busy(True)
        self.error.hide()
        if self.birth_known.isChecked():
            # The age as of now: counted when the birth date was set, a dialog left open
            # past midnight into a birthday sent last year's, and the core refused it as
            # not matching the birth date.
            self._on_birth_date_date_changed(self.birth_date.date())
        self.submitted.emit(self.changed_fields())
