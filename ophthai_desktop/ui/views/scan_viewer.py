"""The scan viewer: zoom (wheel), pan (drag), fit, brightness and contrast, and
thumbnails of all the patient's scans with their modality and laterality."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QSize, Qt, Signal, Slot
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap, QWheelEvent
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ophthai_desktop.core.records import ScanRecord
from ophthai_desktop.ui.display import local_datetime, scan_label, size
from ophthai_desktop.ui.resources import icon

THUMB_SIZE = 80
ZOOM_STEP = 1.25
MIN_SCALE, MAX_SCALE = 0.02, 40.0


class ImageCanvas(QGraphicsView):
    """A zoomable, pannable image. The wheel zooms about the cursor; dragging pans.

    Signals:
        zoom_changed(float): the scale now (1.0 = one image pixel per screen pixel).
    """

    zoom_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("imageCanvas")
        self._scene = QGraphicsScene(self)
        self._item = QGraphicsPixmapItem()
        self._item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._scene.addItem(self._item)
        self.setScene(self._scene)
        self.setBackgroundBrush(QColor("#101417"))
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setFrameShape(QFrame.Shape.NoFrame)
        # Files dropped on the image go to the window (attach to this patient).
        self.setAcceptDrops(False)
        self.viewport().setAcceptDrops(False)
        self._fit = True

    @property
    def has_image(self) -> bool:
        return not self._item.pixmap().isNull()

    def set_image(self, image: QImage, *, refit: bool = True) -> None:
        """Show ``image``; ``refit`` fits it to the view, else the zoom is kept."""
        self._item.setPixmap(QPixmap.fromImage(image))
        self._scene.setSceneRect(self._item.boundingRect())
        if refit:
            self.fit()

    def clear(self) -> None:
        self._item.setPixmap(QPixmap())

    def scale_factor(self) -> float:
        return float(self.transform().m11())

    def fit(self) -> None:
        self._fit = True
        if self.has_image:
            self.fitInView(self._item, Qt.AspectRatioMode.KeepAspectRatio)
            self.zoom_changed.emit(self.scale_factor())

    def zoom_by(self, factor: float) -> None:
        current = self.scale_factor() or 1.0
        factor = max(MIN_SCALE / current, min(MAX_SCALE / current, factor))
        self._fit = False
        self.scale(factor, factor)
        self.zoom_changed.emit(self.scale_factor())

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120
        if steps:
            self.zoom_by(ZOOM_STEP**steps)
        event.accept()

    def resizeEvent(self, event: object) -> None:
        super().resizeEvent(event)  # type: ignore[arg-type]
        if self._fit:
            self.fit()


class ScanViewer(QWidget):
    """Thumbnails of every scan and the chosen one, large.

    Signals:
        scan_chosen(int): the clinician picked a thumbnail (scan id).
        adjustments_changed(int brightness, int contrast): both -100..100.
    """

    scan_chosen = Signal(int)
    adjustments_changed = Signal(int, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("scanViewer")
        self.canvas = ImageCanvas()
        self.info = QLabel("No scans yet")
        self.info.setObjectName("muted")
        # A long file name wraps rather than widening the page (and the window) past
        # the screen; the whole line is also the tooltip.
        self.info.setWordWrap(True)
        self.info.setMinimumWidth(120)
        self.zoom_label = QLabel("")
        self.zoom_label.setObjectName("muted")
        zoom_in = QToolButton()
        zoom_in.setIcon(icon("zoom-in"))
        zoom_in.setToolTip("Zoom in (mouse wheel)")
        zoom_out = QToolButton()
        zoom_out.setIcon(icon("zoom-out"))
        zoom_out.setToolTip("Zoom out (mouse wheel)")
        fit = QToolButton()
        fit.setIcon(icon("fit"))
        fit.setToolTip("Fit the image to the view")
        self.fit_button = fit
        tools = QHBoxLayout()
        tools.addWidget(self.info, 1)
        tools.addWidget(self.zoom_label)
        tools.addWidget(zoom_out)
        tools.addWidget(zoom_in)
        tools.addWidget(fit)

        self.brightness = QSlider(Qt.Orientation.Horizontal)
        self.brightness.setObjectName("brightness")
        self.contrast = QSlider(Qt.Orientation.Horizontal)
        self.contrast.setObjectName("contrast")
        for slider in (self.brightness, self.contrast):
            slider.setRange(-100, 100)
            slider.setValue(0)
            slider.valueChanged.connect(self._on_slider_value_changed)
        reset = QToolButton()
        reset.setText("Reset")
        reset.clicked.connect(self.reset_adjustments)
        adjust = QHBoxLayout()
        adjust.addWidget(QLabel("Brightness"))
        adjust.addWidget(self.brightness, 1)
        adjust.addWidget(QLabel("Contrast"))
        adjust.addWidget(self.contrast, 1)
        adjust.addWidget(reset)

        self.thumbnails = QListWidget()
        self.thumbnails.setObjectName("thumbnails")
        self.thumbnails.setViewMode(QListView.ViewMode.IconMode)
        self.thumbnails.setFlow(QListView.Flow.LeftToRight)
        self.thumbnails.setWrapping(False)
        self.thumbnails.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.thumbnails.setMovement(QListView.Movement.Static)
        self.thumbnails.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.thumbnails.setGridSize(QSize(THUMB_SIZE + 40, THUMB_SIZE + 40))
        self.thumbnails.setFixedHeight(THUMB_SIZE + 52)
        self.thumbnails.setAcceptDrops(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(tools)
        layout.addWidget(self.canvas, 1)
        layout.addLayout(adjust)
        layout.addWidget(self.thumbnails)

        zoom_in.clicked.connect(lambda: self.canvas.zoom_by(ZOOM_STEP))
        zoom_out.clicked.connect(lambda: self.canvas.zoom_by(1 / ZOOM_STEP))
        fit.clicked.connect(self.canvas.fit)
        self.canvas.zoom_changed.connect(self._on_canvas_zoom_changed)
        self.thumbnails.currentItemChanged.connect(self._on_thumbnail_changed)
        self._placeholder = self._blank_icon()

    def show_scans(self, scans: Sequence[ScanRecord]) -> list[int]:
        """List the scans (newest first); returns the ids of the items added (with a
        placeholder thumbnail). New scans in front of the listed ones are inserted;
        any other change rebuilds the list."""
        shown = [
            int(self.thumbnails.item(row).data(Qt.ItemDataRole.UserRole))
            for row in range(self.thumbnails.count())
        ]
        ids = [scan.id for scan in scans]
        blocker = self.thumbnails.blockSignals(True)
        try:
            if shown and ids[len(ids) - len(shown) :] == shown:
                fresh = scans[: len(ids) - len(shown)]
            else:
                self.thumbnails.clear()
                fresh = scans
            for position, scan in enumerate(fresh):
                item = QListWidgetItem(
                    self._placeholder, scan_label(scan.modality, scan.laterality)
                )
                item.setData(Qt.ItemDataRole.UserRole, scan.id)
                item.setToolTip(self._describe(scan))
                item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
                self.thumbnails.insertItem(position, item)
        finally:
            self.thumbnails.blockSignals(blocker)
        if not scans:
            self.canvas.clear()
            self.info.setText("No scans yet: drop an image on the window to add one")
            self.info.setToolTip("")
        return [scan.id for scan in fresh]

    def set_thumbnail(self, scan_id: int, thumbnail: QIcon) -> None:
        item = self._item(scan_id)
        if item is not None:
            item.setIcon(thumbnail)

    def select_scan(self, scan_id: int) -> None:
        item = self._item(scan_id)
        if item is not None:
            blocker = self.thumbnails.blockSignals(True)
            self.thumbnails.setCurrentItem(item)
            self.thumbnails.blockSignals(blocker)

    def show_image(self, scan: ScanRecord, image: QImage, *, refit: bool = True) -> None:
        self.info.setText(self._describe(scan))
        self.info.setToolTip(self.info.text())
        self.canvas.set_image(image, refit=refit)

    def current_scan_id(self) -> int | None:
        item = self.thumbnails.currentItem()
        return None if item is None else int(item.data(Qt.ItemDataRole.UserRole))

    def scan_count(self) -> int:
        return self.thumbnails.count()

    @Slot()
    def reset_adjustments(self) -> None:
        self.brightness.setValue(0)
        self.contrast.setValue(0)

    def _item(self, scan_id: int) -> QListWidgetItem | None:
        for row in range(self.thumbnails.count()):
            item = self.thumbnails.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == scan_id:
                return item
        return None

    @staticmethod
    def _describe(scan: ScanRecord) -> str:
        when = local_datetime(scan.acquired_at or scan.created_at)
        name = f" · {scan.original_filename}" if scan.original_filename else ""
        return (
            f"{scan_label(scan.modality, scan.laterality)} · {when} · "
            f"{scan.width} x {scan.height} px · {size(scan.size_bytes)}{name}"
        )

    @staticmethod
    def _blank_icon() -> QIcon:
        pixmap = QPixmap(THUMB_SIZE, THUMB_SIZE)
        pixmap.fill(QColor("#dfe5ea"))
        return QIcon(pixmap)

    @Slot(int)
    def _on_slider_value_changed(self, _value: int) -> None:
        self.adjustments_changed.emit(self.brightness.value(), self.contrast.value())

    @Slot(float)
    def _on_canvas_zoom_changed(self, scale: float) -> None:
        self.zoom_label.setText(f"{scale * 100:.0f}%")

    @Slot(QListWidgetItem, QListWidgetItem)
    def _on_thumbnail_changed(
        self, current: QListWidgetItem | None, _previous: QListWidgetItem | None
    ) -> None:
        if current is not None:
            self.scan_chosen.emit(int(current.data(Qt.ItemDataRole.UserRole)))
