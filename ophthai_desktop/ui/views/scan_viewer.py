"""The scan viewer: zoom (wheel), pan (drag), fit, brightness and contrast, and
thumbnails of all the patient's scans with their modality and laterality."""

from __future__ import annotations

import math
from collections.abc import Sequence

from PySide6.QtCore import QPointF, QSize, Qt, Signal, Slot
from PySide6.QtGui import (
    QAction,
    QColor,
    QIcon,
    QImage,
    QKeySequence,
    QPainter,
    QPixmap,
    QResizeEvent,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QSizePolicy,
    QSlider,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ophthai_desktop.core.records import ScanRecord
from ophthai_desktop.core.services.ingest import shown_name
from ophthai_desktop.ui.display import MODALITY_NAMES, local_date, local_datetime, scan_label, size
from ophthai_desktop.ui.resources import icon
from ophthai_desktop.ui.views.scale import screen_pixel_ratio
from ophthai_desktop.ui.views.style import set_style_property, set_text

THUMB_SIZE = 80
#: The room beside a thumbnail in its cell, for its label.
THUMB_SIDE_ROOM = 40
#: Below this width of the viewer the thumbnails column is compact: smaller pictures
#: without their labels (each keeps its tooltip, and the line above the image describes
#: the scan shown). The full column is ~140 px wide: at 800 x 600 that was half of the
#: viewer's ~290 px and left a B-scan at 17 %; at 1024 x 700 (~390 px) it leaves 60 %
#: to the image and keeps its labels.
COMPACT_BELOW_PX = 360
#: A thumbnail's picture in the compact column.
COMPACT_THUMB_SIZE = 56
#: Item data role holding a thumbnail's label (shown only in the full column).
LABEL_ROLE = Qt.ItemDataRole.UserRole + 1
#: The eye as a thumbnail names it (the long name is in its tooltip).
EYE_CODES = {"OD": "OD", "OS": "OS", "OU": "OU", "unknown": "eye ?"}
ZOOM_STEP = 1.25
#: The closest zoom: 1600 %, sixteen screen pixels per image pixel (enough to tell
#: single pixels apart on a B-scan); higher showed nothing but blocks. The farthest is
#: the image fitted to the view (or 100 % where that is larger): smaller left it a
#: speck in an empty view (it went down to 2 %).
MAX_SCALE = 16.0
#: What ``fitInView`` leaves free on each side of the image, in pixels.
FIT_MARGIN = 2
#: How close a scale must be to a limit to count as at it (the products of steps of
#: 1.25 are not exact).
SCALE_TOLERANCE = 1e-6


class ImageCanvas(QGraphicsView):
    """A zoomable, pannable image. The wheel zooms about the cursor; dragging pans.

    Signals:
        zoom_changed(float): the scale now (1.0 = one image pixel per screen pixel).
    """

    zoom_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("imageCanvas")
        self.setAccessibleName("Scan image")
        self.setAccessibleDescription("No scan shown")
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
        self.setAccessibleDescription("No scan shown")
        self.zoom_changed.emit(self.scale_factor())

    def scale_factor(self) -> float:
        return float(self.transform().m11())

    def fit_scale(self) -> float:
        """The scale at which the whole image fits the view (scroll bars not counted:
        a fitted image needs none)."""
        if not self.has_image:
            return 1.0
        size = self.maximumViewportSize()
        bounds = self._item.boundingRect()
        width = max(1.0, size.width() - 2 * FIT_MARGIN) / max(1.0, bounds.width())
        height = max(1.0, size.height() - 2 * FIT_MARGIN) / max(1.0, bounds.height())
        return min(width, height)

    def zoom_limits(self) -> tuple[float, float]:
        """The farthest and the closest zoom: fitted to the view (or 100 % where that is
        larger) and :data:`MAX_SCALE` (or the fit, for an image smaller than a 16th of
        the view)."""
        fit = self.fit_scale()
        return min(fit, 1.0), max(MAX_SCALE, fit)

    def can_zoom_in(self) -> bool:
        return self.has_image and self.scale_factor() < self.zoom_limits()[1] * (
            1 - SCALE_TOLERANCE
        )

    def can_zoom_out(self) -> bool:
        return self.has_image and self.scale_factor() > self.zoom_limits()[0] * (
            1 + SCALE_TOLERANCE
        )

    def fit(self) -> None:
        """Show the whole image, as large as the view allows (and keep it fitted as the
        view is resized, until the clinician zooms)."""
        self._fit = True
        if self.has_image:
            scale = self.fit_scale()
            self.setTransform(QTransform.fromScale(scale, scale))
            self.centerOn(self._item)
            self.zoom_changed.emit(self.scale_factor())

    def zoom_by(self, factor: float) -> None:
        """Zoom by ``factor`` (more than 1 is closer), stopping at :meth:`zoom_limits`
        and, on the way out, at the fit (which is then :meth:`fit`)."""
        if not self.has_image:
            return
        current = self.scale_factor() or 1.0
        low, high = self.zoom_limits()
        # Never past a limit, and never the wrong way (the view may have grown since, so
        # that the fit is closer than the zoom now).
        target = min(max(current * factor, min(low, current)), max(high, current))
        fit = self.fit_scale()
        if factor < 1 and current > fit * (1 + SCALE_TOLERANCE) >= target:
            self.fit()  # on the way out, the fit is a stop (and follows the view's size)
            return
        if abs(target / current - 1) <= SCALE_TOLERANCE:  # at a limit already
            self.zoom_changed.emit(current)
            return
        self._fit = False
        self.scale(target / current, target / current)
        self.zoom_changed.emit(self.scale_factor())

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120
        if steps:
            self.zoom_by(ZOOM_STEP**steps)
        event.accept()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._fit:
            self.fit()
        elif self.has_image:  # the fit, one of the limits, moved with the view's size
            self.zoom_changed.emit(self.scale_factor())


class ElidedLabel(QLabel):
    """One line of text, cut with an ellipsis to the label's width (it never widens its
    layout); the whole text is :meth:`full_text` and the tooltip."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(60)
        self._full = ""
        self.set_full_text(text)

    def set_full_text(self, text: str) -> None:
        self._full = text
        self.setToolTip(text)
        self._elide()

    def full_text(self) -> str:
        return self._full

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = self.contentsRect().width()
        set_text(
            self, self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight, width)
        )


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
        # One line, cut to the room there is (the whole line is the tooltip): wrapped,
        # a long file name took three or four lines from the image in a small window.
        self.info = ElidedLabel("No scans yet")
        self.info.setObjectName("muted")
        self.zoom_label = QLabel("")
        self.zoom_label.setObjectName("muted")
        # Actions, so that a limit disables the button and its shortcut together; the
        # shortcuts work while the keyboard focus is in the viewer (click the image).
        self.zoom_in_action = self._viewer_action(
            "zoom-in",
            "Zoom in",
            [*QKeySequence.keyBindings(QKeySequence.StandardKey.ZoomIn), QKeySequence("Ctrl+=")],
        )
        self.zoom_out_action = self._viewer_action(
            "zoom-out", "Zoom out", QKeySequence.keyBindings(QKeySequence.StandardKey.ZoomOut)
        )
        self.fit_action = self._viewer_action(
            "fit", "Fit the image to the view", [QKeySequence("Ctrl+0")]
        )
        zoom_in = QToolButton()
        zoom_in.setDefaultAction(self.zoom_in_action)
        zoom_out = QToolButton()
        zoom_out.setDefaultAction(self.zoom_out_action)
        fit = QToolButton()
        fit.setDefaultAction(self.fit_action)
        self.zoom_in_button = zoom_in
        self.zoom_out_button = zoom_out
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
            slider.setAccessibleName(slider.objectName().capitalize())
            slider.setValue(0)
            slider.valueChanged.connect(self._on_slider_value_changed)
        reset = QToolButton()
        reset.setText("Reset")
        reset.setAccessibleName("Reset brightness and contrast")
        reset.clicked.connect(self.reset_adjustments)
        self._adjust_widgets = (
            QLabel("Brightness"),
            self.brightness,
            QLabel("Contrast"),
            self.contrast,
            reset,
        )
        adjust = QGridLayout()
        self._adjust = adjust

        self.thumbnails = QListWidget()
        self.thumbnails.setObjectName("thumbnails")
        self.thumbnails.setAccessibleName("Scans of the patient")
        self.thumbnails.setViewMode(QListView.ViewMode.IconMode)
        # A column left of the image, not a strip under it: the strip took ~130 px of the
        # height, and scans (B-scans above all) are wider than the room left was tall.
        # Beside it a B-scan fits larger at every window size up to 1440 x 900 (at
        # 1024 x 700 at 30 % instead of 13 %, at 1440 x 900 at 63 % instead of 52 %).
        self.thumbnails.setFlow(QListView.Flow.TopToBottom)
        self.thumbnails.setWrapping(False)
        self.thumbnails.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.thumbnails.setMovement(QListView.Movement.Static)
        # Every cell alike: a square picture and two lines of label (kind and eye, date),
        # each cut to the cell's width here, so that no label wraps to a third line or
        # is cut where Qt happens to cut it.
        self.thumbnails.setUniformItemSizes(True)
        self.thumbnails.setWordWrap(False)
        self.thumbnails.setTextElideMode(Qt.TextElideMode.ElideRight)
        line = self.thumbnails.fontMetrics().lineSpacing()
        # As wide as the widest known kind and eye (a larger font cut "Fundus · OS" to
        # "Fundus · …"); the date is narrower.
        widest = max(
            self.thumbnails.fontMetrics().horizontalAdvance(f"{MODALITY_NAMES[kind]} · {eye}")
            for kind in ("OCT", "OCTA", "fundus")
            for eye in ("OD", "OS", "OU")
        )
        self._full_grid = QSize(
            max(THUMB_SIZE + THUMB_SIDE_ROOM, widest + 12), THUMB_SIZE + 2 * line + 12
        )
        self._compact_grid = QSize(COMPACT_THUMB_SIZE + 8, COMPACT_THUMB_SIZE + 8)
        self.thumbnails.setAcceptDrops(False)
        self._compact = False
        self._lay_out_thumbnails()

        body = QHBoxLayout()
        body.addWidget(self.thumbnails)
        body.addWidget(self.canvas, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(tools)
        layout.addLayout(body, 1)
        layout.addLayout(adjust)

        self.zoom_in_action.triggered.connect(lambda: self.canvas.zoom_by(ZOOM_STEP))
        self.zoom_out_action.triggered.connect(lambda: self.canvas.zoom_by(1 / ZOOM_STEP))
        self.fit_action.triggered.connect(self.canvas.fit)
        self.canvas.zoom_changed.connect(self._on_canvas_zoom_changed)
        self._on_canvas_zoom_changed(self.canvas.scale_factor())
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
                label = self._thumbnail_label(scan)
                item = QListWidgetItem(self._placeholder, "" if self._compact else label)
                item.setData(Qt.ItemDataRole.UserRole, scan.id)
                item.setData(LABEL_ROLE, label)
                described = self._describe(scan)
                item.setToolTip(described)  # all of it, whatever was cut
                # What a screen reader says: the compact column's thumbnails have no
                # text, and the full one's is cut to the cell.
                item.setData(Qt.ItemDataRole.AccessibleTextRole, described)
                item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
                # The whole cell: uniform sizes otherwise take the first item's, and a
                # label wider than that one's (or than the picture) was cut.
                item.setSizeHint(self.thumbnails.gridSize())
                self.thumbnails.insertItem(position, item)
        finally:
            self.thumbnails.blockSignals(blocker)
        if not scans:
            self.canvas.clear()
            self.info.set_full_text("No scans yet: drop an image on the window to add one")
        return [scan.id for scan in fresh]

    def set_thumbnail(self, scan_id: int, thumbnail: QIcon) -> None:
        item = self._item(scan_id)
        if item is not None:
            item.setIcon(self._squared(thumbnail))

    def thumbnail_text(self, scan_id: int) -> str:
        """The label under a scan's thumbnail in the full column (lines joined by a
        newline)."""
        item = self._item(scan_id)
        return "" if item is None else str(item.data(LABEL_ROLE))

    @property
    def compact_thumbnails(self) -> bool:
        """Whether the thumbnails column is compact (see :data:`COMPACT_BELOW_PX`)."""
        return self._compact

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        compact = self.width() < COMPACT_BELOW_PX
        if compact != self._compact:
            self._compact = compact
            self._lay_out_thumbnails()

    def _lay_out_adjustments(self) -> None:
        """Brightness and contrast in one row, or one row each where compact: in one
        row at 800 x 600 the labels and Reset left the sliders no width at all."""
        labels = (self._adjust_widgets[0], self._adjust_widgets[2])
        sliders = (self.brightness, self.contrast)
        reset = self._adjust_widgets[4]
        for widget in self._adjust_widgets:
            self._adjust.removeWidget(widget)
        for column in range(5):
            self._adjust.setColumnStretch(column, 0)
        if self._compact:
            for row, (label, slider) in enumerate(zip(labels, sliders, strict=True)):
                self._adjust.addWidget(label, row, 0)
                self._adjust.addWidget(slider, row, 1)
            self._adjust.addWidget(reset, 0, 2, 2, 1)  # beside both: the rows stay low
            self._adjust.setColumnStretch(1, 1)
            self._adjust.setVerticalSpacing(0)  # the image gives up as little as it can
        else:
            for column, control in enumerate(self._adjust_widgets):
                self._adjust.addWidget(control, 0, column)
            self._adjust.setColumnStretch(1, 1)
            self._adjust.setColumnStretch(3, 1)

    def _lay_out_thumbnails(self) -> None:
        """Size the thumbnails column, full or compact, and show or hide the labels."""
        grid = self._compact_grid if self._compact else self._full_grid
        picture = COMPACT_THUMB_SIZE if self._compact else THUMB_SIZE
        self.thumbnails.setIconSize(QSize(picture, picture))
        self.thumbnails.setGridSize(grid)
        frame = 2 * self.thumbnails.frameWidth()
        bar = self.thumbnails.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
        self.thumbnails.setFixedWidth(grid.width() + frame + bar + 4)  # room for the bar
        self.thumbnails.setMinimumHeight(grid.height() + frame)
        # Without a label the selection has little to show on: a frame marks it.
        set_style_property(self.thumbnails, "compact", self._compact)
        self._lay_out_adjustments()
        for row in range(self.thumbnails.count()):
            item = self.thumbnails.item(row)
            item.setText("" if self._compact else str(item.data(LABEL_ROLE)))
            item.setSizeHint(grid)
        current = self.thumbnails.currentItem()
        if current is not None:
            self.thumbnails.scrollToItem(current)

    def _thumbnail_label(self, scan: ScanRecord) -> str:
        """Two lines, each cut to the cell with an ellipsis: the kind of scan and the
        eye (``Fundus · OS``), and the day it was taken. Where the first line is too
        long, the kind is cut and the eye kept (``unknown t… · OD``): cut at its end, a
        scan of no known kind showed no eye at all."""
        metrics = self.thumbnails.fontMetrics()
        width = self._full_grid.width() - 8
        eye = f" · {EYE_CODES.get(scan.laterality, scan.laterality)}"
        kind = MODALITY_NAMES.get(scan.modality, scan.modality)
        if metrics.horizontalAdvance(kind + eye) > width:
            room = width - metrics.horizontalAdvance(eye)
            kind = metrics.elidedText(kind, Qt.TextElideMode.ElideRight, max(room, 0))
        lines = (
            kind + eye,
            local_date(scan.acquired_at or scan.created_at) or "date unknown",
        )
        return "\n".join(
            metrics.elidedText(text, Qt.TextElideMode.ElideRight, width) for text in lines
        )

    @staticmethod
    def _squared(thumbnail: QIcon) -> QIcon:
        """The thumbnail centred on a square of :data:`THUMB_SIZE`: a wide B-scan and a
        round fundus photograph then have their labels at the same height. The square
        keeps the thumbnail's pixels per logical pixel (two on a screen at 200 %)."""
        pixmap = thumbnail.pixmap(QSize(THUMB_SIZE, THUMB_SIZE), screen_pixel_ratio())
        shown = pixmap.deviceIndependentSize()
        if pixmap.isNull() or (shown.width(), shown.height()) == (THUMB_SIZE, THUMB_SIZE):
            return thumbnail
        ratio = pixmap.devicePixelRatio()
        side = math.ceil(THUMB_SIZE * ratio)
        square = QPixmap(side, side)
        square.setDevicePixelRatio(side / THUMB_SIZE)
        square.fill(Qt.GlobalColor.transparent)
        painter = QPainter(square)
        painter.drawPixmap(
            QPointF((THUMB_SIZE - shown.width()) / 2, (THUMB_SIZE - shown.height()) / 2), pixmap
        )
        painter.end()
        return QIcon(square)

    def select_scan(self, scan_id: int) -> None:
        item = self._item(scan_id)
        if item is not None:
            blocker = self.thumbnails.blockSignals(True)
            self.thumbnails.setCurrentItem(item)
            self.thumbnails.blockSignals(blocker)

    def show_image(self, scan: ScanRecord, image: QImage, *, refit: bool = True) -> None:
        described = self._describe(scan)
        self.info.set_full_text(described)
        self.canvas.setAccessibleDescription(described)
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

    def _viewer_action(self, icon_name: str, text: str, shortcuts: list[QKeySequence]) -> QAction:
        action = QAction(icon(icon_name), text, self)
        action.setShortcuts(shortcuts)
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        keys = shortcuts[0].toString(QKeySequence.SequenceFormat.NativeText)
        wheel = ", mouse wheel" if icon_name.startswith("zoom") else ""
        action.setToolTip(f"{text} ({keys}{wheel})")
        self.addAction(action)
        return action

    def _item(self, scan_id: int) -> QListWidgetItem | None:
        for row in range(self.thumbnails.count()):
            item = self.thumbnails.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == scan_id:
                return item
        return None

    @staticmethod
    def _describe(scan: ScanRecord) -> str:
        when = local_datetime(scan.acquired_at or scan.created_at)
        name = f" · {shown_name(scan.original_filename)}" if scan.original_filename else ""
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
        """The label says the zoom the image is shown at; the buttons (and shortcuts)
        that cannot zoom further are off."""
        shown = self.canvas.has_image
        set_text(self.zoom_label, f"{scale * 100:.0f}%" if shown else "")
        self.zoom_in_action.setEnabled(self.canvas.can_zoom_in())
        self.zoom_out_action.setEnabled(self.canvas.can_zoom_out())
        self.fit_action.setEnabled(shown)

    @Slot(QListWidgetItem, QListWidgetItem)
    def _on_thumbnail_changed(
        self, current: QListWidgetItem | None, _previous: QListWidgetItem | None
    ) -> None:
        if current is not None:
            self.scan_chosen.emit(int(current.data(Qt.ItemDataRole.UserRole)))
