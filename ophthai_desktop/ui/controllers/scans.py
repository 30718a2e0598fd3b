"""The scan viewer: the shown patient's scans, thumbnails, the chosen image and its
brightness and contrast. Decoding and adjusting run on pool threads."""

from __future__ import annotations

import logging
import math
from collections import OrderedDict

import numpy as np
from PySide6.QtCore import QObject, QTimer, Slot
from PySide6.QtGui import QIcon, QImage, QPixmap

from ophthai_desktop.core.records import PatientRecord, ScanRecord
from ophthai_desktop.ui import scan_images
from ophthai_desktop.ui.context import GuiContext
from ophthai_desktop.ui.controllers.patients import PatientsController
from ophthai_desktop.ui.messages import describe
from ophthai_desktop.ui.views.scale import screen_pixel_ratio
from ophthai_desktop.ui.views.scan_viewer import THUMB_SIZE, ScanViewer

log = logging.getLogger(__name__)

ADJUST_DEBOUNCE_MS = 30
MAX_THUMBNAILS = 60
#: Thumbnails kept (a scan's pixels never change: its file is content-addressed).
THUMBNAIL_CACHE = 600


class ScansController(QObject):
    """Loads what the scan viewer shows for the patient on the page."""

    def __init__(self, ctx: GuiContext, viewer: ScanViewer, patients: PatientsController) -> None:
        super().__init__(viewer)
        self._ctx = ctx
        self._service = ctx.application.patients
        self._viewer = viewer
        self._patient_id: str | None = None
        self._scans: dict[int, ScanRecord] = {}
        self._order: tuple[int, ...] = ()
        #: Thumbnails made, by scan, with the side in device pixels each was made at.
        self._thumbs: OrderedDict[int, tuple[int, QIcon]] = OrderedDict()
        self._thumbs_loading: set[int] = set()
        self._generation = 0
        self._shown: int | None = None
        self._pixels: np.ndarray | None = None
        self._adjust_pending = False
        self._adjust_timer = QTimer(self)
        self._adjust_timer.setSingleShot(True)
        self._adjust_timer.setInterval(ADJUST_DEBOUNCE_MS)
        self._adjust_timer.timeout.connect(self._on_adjust_timer_timeout)
        self._adjusting = False

        patients.patient_opened.connect(self._on_patients_patient_opened)
        ctx.bridge.scan_ingested.connect(self._on_bridge_scan_ingested)
        viewer.scan_chosen.connect(self.show_scan)
        viewer.adjustments_changed.connect(self._on_viewer_adjustments_changed)

    @property
    def shown_scan_id(self) -> int | None:
        return self._shown

    @Slot(object)
    def _on_patients_patient_opened(self, patient: PatientRecord | None) -> None:
        if patient is None:
            self._patient_id = None
            self._generation += 1
            self._scans, self._order = {}, ()
            self._shown, self._pixels = None, None  # a decode in flight is now stale
            self._viewer.show_scans([])
            return
        if patient.id != self._patient_id:
            self._patient_id = patient.id
            self._shown, self._pixels = None, None
            self.load_scans()

    @Slot(object)
    def _on_bridge_scan_ingested(self, scan: ScanRecord) -> None:
        if scan.patient_id == self._patient_id:
            self.load_scans(select=scan.id)

    def load_scans(self, select: int | None = None) -> None:
        """List the patient's scans and show ``select`` (default: the newest)."""
        patient_id = self._patient_id
        if patient_id is None:
            return
        self._generation += 1
        generation = self._generation

        def done(scans: tuple[ScanRecord, ...]) -> None:
            if generation != self._generation:
                return
            self._scans = {scan.id: scan for scan in scans}
            order = tuple(scan.id for scan in scans)
            if order != self._order:
                self._order = order
                added = set(self._viewer.show_scans(scans))
                for scan in scans[:MAX_THUMBNAILS]:
                    if scan.id not in added:
                        continue
                    cached = self._thumbs.get(scan.id)
                    if cached is not None and cached[0] == _thumbnail_side():
                        self._viewer.set_thumbnail(scan.id, cached[1])
                    else:  # not made yet, or made for a screen of another scale
                        self._load_thumbnail(scan)
            chosen = select if select in self._scans else (scans[0].id if scans else None)
            if chosen is not None:
                self._viewer.select_scan(chosen)
                self.show_scan(chosen)
            else:
                self._shown = None
                self._pixels = None

        self._ctx.tasks.submit(lambda: self._service.list_scans(patient_id), done)

    def _load_thumbnail(self, scan: ScanRecord) -> None:
        if scan.id in self._thumbs_loading:
            return
        self._thumbs_loading.add(scan.id)
        side = _thumbnail_side()

        def make() -> QImage:
            path, _media = self._service.scan_image(scan.id)
            return scan_images.thumbnail(path, side)

        def done(image: QImage) -> None:
            self._thumbs_loading.discard(scan.id)
            pixmap = QPixmap.fromImage(image)
            pixmap.setDevicePixelRatio(side / THUMB_SIZE)
            thumbnail = QIcon(pixmap)
            self._thumbs[scan.id] = (side, thumbnail)
            while len(self._thumbs) > THUMBNAIL_CACHE:
                self._thumbs.popitem(last=False)
            if scan.id in self._scans:
                self._viewer.set_thumbnail(scan.id, thumbnail)

        def failed(exc: BaseException) -> None:
            self._thumbs_loading.discard(scan.id)
            log.warning("a thumbnail could not be made")  # why: the task's failure line

        self._ctx.tasks.submit(make, done, failed)

    @Slot(int)
    def show_scan(self, scan_id: int) -> None:
        scan = self._scans.get(scan_id)
        if scan is None:
            return
        self._shown = scan_id
        brightness, contrast = self._viewer.brightness.value(), self._viewer.contrast.value()

        def decode() -> tuple[np.ndarray, QImage]:
            path, _media = self._service.scan_image(scan_id)
            pixels = scan_images.decode(path)
            return pixels, scan_images.to_qimage(scan_images.adjust(pixels, brightness, contrast))

        def done(result: tuple[np.ndarray, QImage]) -> None:
            if self._shown != scan_id:
                return
            self._pixels, image = result
            self._viewer.show_image(scan, image)
            # The sliders may have moved while decoding.
            if (brightness, contrast) != (
                self._viewer.brightness.value(),
                self._viewer.contrast.value(),
            ):
                self._adjust_timer.start()

        def failed(exc: BaseException) -> None:
            if self._shown == scan_id:
                self._viewer.info.setText(f"This scan cannot be shown: {describe(exc)}")

        self._ctx.tasks.submit(decode, done, failed)

    @Slot(int, int)
    def _on_viewer_adjustments_changed(self, _brightness: int, _contrast: int) -> None:
        self._adjust_timer.start()

    @Slot()
    def _on_adjust_timer_timeout(self) -> None:
        pixels, scan_id = self._pixels, self._shown
        if pixels is None or scan_id is None:
            return
        if self._adjusting:  # one at a time; the newest values win
            self._adjust_pending = True
            return
        self._adjusting = True
        brightness, contrast = self._viewer.brightness.value(), self._viewer.contrast.value()

        def done(image: QImage) -> None:
            self._adjusting = False
            scan = self._scans.get(scan_id)
            if self._shown == scan_id and scan is not None:
                self._viewer.show_image(scan, image, refit=False)
            if self._adjust_pending:
                self._adjust_pending = False
                self._adjust_timer.start()

        def failed(exc: BaseException) -> None:
            self._adjusting = False
            log.warning("adjusting the scan failed")

        self._ctx.tasks.submit(
            lambda: scan_images.to_qimage(scan_images.adjust(pixels, brightness, contrast)),
            done,
            failed,
        )


def _thumbnail_side() -> int:
    """A thumbnail's side in device pixels: one for each pixel of the screen's. Made at
    THUMB_SIZE pixels, a thumbnail was scaled up, blurred, on a screen at 150 or 200 %;
    and one made before such a screen was plugged in stayed so while cached."""
    return math.ceil(THUMB_SIZE * screen_pixel_ratio())
