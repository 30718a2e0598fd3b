"""The oculomics tab: loads the shown patient's measurements and trends, adds new ones
off the GUI thread, and refreshes when a measurement arrives (from the form, the API
or anywhere else)."""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from ophthai_desktop.core.errors import OphthaiError
from ophthai_desktop.core.log_safety import patient_ref
from ophthai_desktop.core.records import OculomicsRecord, PatientRecord
from ophthai_desktop.core.services.oculomics import REFERENCE_RANGES, OculomicsOverview
from ophthai_desktop.ui.context import GuiContext
from ophthai_desktop.ui.controllers.patients import PatientsController
from ophthai_desktop.ui.messages import describe
from ophthai_desktop.ui.views.oculomics import OculomicsView

log = logging.getLogger(__name__)

FORM_LABELS = {
    "eye": "Eye",
    "measured_on": "Date",
    **{metric: ref.label for metric, ref in REFERENCE_RANGES.items()},
}


def form_message(exc: BaseException) -> str:
    """The core's message, led by the form label of the field it is about."""
    return describe(exc, FORM_LABELS)


class OculomicsController(QObject):
    """Keeps the oculomics tab in step with the shown patient.

    Signals:
        loaded(str): the tab now shows this patient's measurements.
        measurement_added(object): the form's OculomicsRecord was stored.
    """

    loaded = Signal(str)
    measurement_added = Signal(object)

    def __init__(self, ctx: GuiContext, view: OculomicsView, patients: PatientsController) -> None:
        super().__init__(view)
        self._ctx = ctx
        self._service = ctx.application.oculomics
        self._view = view
        self._patient_id: str | None = None
        self._generation = 0
        self.overview: OculomicsOverview | None = None

        patients.patient_opened.connect(self._on_patients_patient_opened)
        patients.day_watch.day_changed.connect(view.follow_today)
        ctx.bridge.oculomics_measured.connect(self._on_bridge_oculomics_measured)
        view.measurement_submitted.connect(self._on_view_measurement_submitted)

    @property
    def patient_id(self) -> str | None:
        return self._patient_id

    def reload(self) -> None:
        """Read the patient's series and trends on a pool thread, then show them."""
        patient_id = self._patient_id
        if patient_id is None:
            return
        self._generation += 1
        generation = self._generation
        service = self._service

        def done(overview: OculomicsOverview) -> None:
            if generation != self._generation:
                return
            self.overview = overview
            self._view.show_overview(overview.series, overview.trends)
            self.loaded.emit(overview.patient_id)

        def failed(exc: BaseException) -> None:
            if generation == self._generation:
                self._view.show_error(describe(exc))

        self._ctx.tasks.submit(lambda: service.overview(patient_id), done, failed)

    @Slot(object)
    def _on_patients_patient_opened(self, patient: PatientRecord | None) -> None:
        if patient is None:
            self._patient_id = None
            self._generation += 1
            self.overview = None
            self._view.show_overview({}, ())
            return
        if patient.id != self._patient_id:
            self._patient_id = patient.id
            self._view.clear_form()
            self.reload()

    @Slot(object)
    def _on_bridge_oculomics_measured(self, record: OculomicsRecord) -> None:
        if record.patient_id == self._patient_id:
            self.reload()

    @Slot(dict)
    def _on_view_measurement_submitted(self, values: dict[str, Any]) -> None:
        patient_id = self._patient_id
        if patient_id is None:
            return
        service, actor = self._service, self._ctx.actor
        self._view.set_busy(True)

        def add() -> OculomicsRecord:  # a pool thread
            return service.add_measurement(patient_id, actor=actor, **values)

        def done(record: OculomicsRecord) -> None:
            self._view.set_busy(False)
            log.info(
                "oculomics measurement %s added for patient %s", record.id, patient_ref(patient_id)
            )
            if patient_id == self._patient_id:
                self._view.clear_form()
            self.measurement_added.emit(record)
            # The OculomicsMeasured event reloads the tab as well; reloading here too
            # keeps the tab current even if the bridge is closing.
            self.reload()

        def failed(exc: BaseException) -> None:
            self._view.set_busy(False)
            field = exc.field if isinstance(exc, OphthaiError) else None
            self._view.show_error(form_message(exc), field)

        self._ctx.tasks.submit(add, done, failed, change=True)
