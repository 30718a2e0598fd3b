"""The scan viewer on its own: how far it zooms, what its zoom controls say and allow,
and its thumbnails' labels."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QIcon, QImage, QPixmap
from pytestqt.qtbot import QtBot

from ophthai_desktop.core.records import ScanRecord
from ophthai_desktop.ui.display import local_date, scan_label
from ophthai_desktop.ui.views.scan_viewer import COMPACT_BELOW_PX, MAX_SCALE, THUMB_SIZE, ScanViewer


@pytest.fixture
def viewer(qtbot: QtBot) -> Iterator[ScanViewer]:
    widget = ScanViewer()
    qtbot.addWidget(widget)
    widget.resize(700, 560)
    widget.show()
    qtbot.waitExposed(widget)
    yield widget


def _image(width: int, height: int) -> QImage:
    image = QImage(width, height, QImage.Format.Format_RGB888)
    image.fill(QColor("#808080"))
    return image


def _scan(scan_id: int, modality: str, laterality: str, filename: str | None = None) -> ScanRecord:
    return ScanRecord(
        id=scan_id,
        patient_id="pt-1",
        sha256="0" * 64,
        media_type="image/png",
        width=768,
        height=496,
        size_bytes=250_000,
        modality=modality,
        laterality=laterality,
        source="drop",
        original_filename=filename,
        acquired_at=datetime(2026, 3, 9, 10, 30, tzinfo=UTC),
        created_at=datetime(2026, 3, 9, 10, 31, tzinfo=UTC),
    )


def _percent(viewer: ScanViewer) -> str:
    return f"{viewer.canvas.scale_factor() * 100:.0f}%"


def test_zoom_stops_at_1600_percent_and_at_the_fit(qtbot: QtBot, viewer: ScanViewer) -> None:
    canvas = viewer.canvas
    canvas.set_image(_image(768, 496))
    fit = canvas.fit_scale()
    assert 0.2 < fit < 1  # a B-scan larger than the view
    assert canvas.scale_factor() == pytest.approx(fit)
    assert viewer.zoom_label.text() == _percent(viewer)
    # Fitted is as far out as it goes.
    assert not viewer.zoom_out_button.isEnabled() and viewer.zoom_in_button.isEnabled()

    for _ in range(40):
        qtbot.mouseClick(viewer.zoom_in_button, Qt.MouseButton.LeftButton)
    assert canvas.scale_factor() == pytest.approx(MAX_SCALE)
    assert viewer.zoom_label.text() == "1600%"
    assert not viewer.zoom_in_button.isEnabled() and not viewer.zoom_in_action.isEnabled()
    canvas.zoom_by(1.25)  # the wheel, past the limit
    assert canvas.scale_factor() == pytest.approx(MAX_SCALE)

    for _ in range(40):
        canvas.zoom_by(0.8)
    assert canvas.scale_factor() == pytest.approx(fit)  # never smaller than the fit
    assert viewer.zoom_label.text() == _percent(viewer)
    assert not viewer.zoom_out_button.isEnabled() and not viewer.zoom_out_action.isEnabled()

    # Zoomed out to the fit, it follows the view's size as Fit does.
    viewer.resize(900, 700)
    qtbot.waitUntil(lambda: canvas.fit_scale() > fit)
    assert canvas.scale_factor() == pytest.approx(canvas.fit_scale())
    assert viewer.zoom_label.text() == _percent(viewer)


def test_a_small_image_zooms_out_to_its_real_size_not_below(
    qtbot: QtBot, viewer: ScanViewer
) -> None:
    canvas = viewer.canvas
    canvas.set_image(_image(60, 40))
    assert canvas.fit_scale() > 5  # fitted, it is shown large
    for _ in range(30):
        canvas.zoom_by(0.8)
    assert canvas.scale_factor() == pytest.approx(1.0)
    assert viewer.zoom_label.text() == "100%"
    assert not viewer.zoom_out_button.isEnabled()
    for _ in range(30):
        canvas.zoom_by(1.25)
    assert canvas.scale_factor() == pytest.approx(MAX_SCALE)


def test_zoom_shortcuts_follow_the_limits(qtbot: QtBot, viewer: ScanViewer) -> None:
    canvas = viewer.canvas
    canvas.set_image(_image(768, 496))
    viewer.activateWindow()
    canvas.setFocus()
    qtbot.waitUntil(canvas.hasFocus)
    fit = canvas.scale_factor()

    qtbot.keyClick(canvas, Qt.Key.Key_Minus, Qt.KeyboardModifier.ControlModifier)
    assert canvas.scale_factor() == pytest.approx(fit)  # disabled at the fit
    qtbot.keyClick(canvas, Qt.Key.Key_Equal, Qt.KeyboardModifier.ControlModifier)
    assert canvas.scale_factor() == pytest.approx(fit * 1.25)
    for _ in range(40):
        qtbot.keyClick(canvas, Qt.Key.Key_Plus, Qt.KeyboardModifier.ControlModifier)
    assert canvas.scale_factor() == pytest.approx(MAX_SCALE)
    qtbot.keyClick(canvas, Qt.Key.Key_Minus, Qt.KeyboardModifier.ControlModifier)
    assert canvas.scale_factor() == pytest.approx(MAX_SCALE / 1.25)
    qtbot.keyClick(canvas, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert canvas.scale_factor() == pytest.approx(fit)
    assert viewer.zoom_label.text() == _percent(viewer)


def test_without_an_image_the_zoom_controls_are_off(qtbot: QtBot, viewer: ScanViewer) -> None:
    assert viewer.zoom_label.text() == ""
    assert not viewer.zoom_in_button.isEnabled()
    assert not viewer.zoom_out_button.isEnabled()
    assert not viewer.fit_button.isEnabled()
    viewer.canvas.set_image(_image(768, 496))
    assert viewer.fit_button.isEnabled() and viewer.zoom_label.text() != ""
    viewer.show_scans([])  # the patient's last scan went
    assert viewer.zoom_label.text() == ""
    assert not viewer.zoom_in_button.isEnabled() and not viewer.fit_button.isEnabled()


def _icon(width: int, height: int) -> QIcon:
    pixmap = QPixmap(width, height)
    pixmap.fill(QColor("#406080"))
    return QIcon(pixmap)


def test_thumbnail_labels_are_alike_and_cut_the_same_way(viewer: ScanViewer) -> None:
    scans = [
        _scan(3, "OCTA", "OS", "a_very_long_file_name_followup.png"),
        _scan(2, "fundus", "OD"),
        _scan(1, "unknown", "unknown"),
    ]
    viewer.show_scans(scans)
    viewer.set_thumbnail(3, _icon(80, 52))  # a wide B-scan
    viewer.set_thumbnail(2, _icon(80, 80))  # a round fundus photograph, square
    day = local_date(scans[0].acquired_at)
    assert viewer.thumbnail_text(3) == f"OCTA · OS\n{day}"
    assert viewer.thumbnail_text(2) == f"Fundus · OD\n{day}"

    # The pictures take the same room, so the labels under them line up.
    sizes = {
        viewer.thumbnails.item(row).icon().actualSize(QSize(THUMB_SIZE, THUMB_SIZE)).toTuple()
        for row in range(3)
    }
    assert sizes == {(THUMB_SIZE, THUMB_SIZE)}
    rects = {
        viewer.thumbnails.visualItemRect(viewer.thumbnails.item(row)).size() for row in range(3)
    }
    assert len(rects) == 1

    # Two lines each, every line within the cell; what does not fit ends in an ellipsis,
    # and the tooltip has all of it.
    metrics = viewer.thumbnails.fontMetrics()
    room = viewer.thumbnails.gridSize().width()
    for row, scan in enumerate(scans):
        item = viewer.thumbnails.item(row)
        lines = item.text().splitlines()
        assert len(lines) == 2
        assert all(metrics.horizontalAdvance(line) < room for line in lines)
        tip = item.toolTip()
        assert scan_label(scan.modality, scan.laterality) in tip and day in tip
    unknown = viewer.thumbnail_text(1).splitlines()[0]
    kind, eye = unknown.split(" · ")
    assert kind.endswith("…") and "unknown type".startswith(kind[:-1]) and eye == "eye ?"
    # Two lines fit the strip with room to spare: no label is cut off at the bottom.
    assert viewer.thumbnails.height() >= next(iter(rects)).height()


@pytest.mark.parametrize("eye", ["OD", "OS", "OU"])
def test_a_thumbnail_of_no_known_kind_still_names_the_eye(viewer: ScanViewer, eye: str) -> None:
    """A scan of no known kind ("unknown type · OD", wider than the cell) keeps its eye:
    the kind is cut, not the eye (it showed "unknown type · …", the eye only in the
    tooltip)."""
    viewer.show_scans([_scan(2, "unknown", eye), _scan(1, "fundus", eye)])
    first = viewer.thumbnail_text(2).splitlines()[0]
    assert first.endswith(f" · {eye}")
    assert first.startswith("unknown") and "…" in first
    assert viewer.thumbnails.fontMetrics().horizontalAdvance(first) < (
        viewer.thumbnails.gridSize().width()
    )
    # One that fits is not cut at all.
    assert viewer.thumbnail_text(1).splitlines()[0] == f"Fundus · {eye}"


def test_a_narrow_viewer_has_a_compact_thumbnail_column(qtbot: QtBot, viewer: ScanViewer) -> None:
    scans = [_scan(2, "OCTA", "OS"), _scan(1, "fundus", "OD")]
    viewer.show_scans(scans)
    viewer.thumbnails.setCurrentRow(1)
    full_width = viewer.thumbnails.width()
    labels = [viewer.thumbnails.item(row).text() for row in range(2)]
    assert all(labels)

    viewer.resize(COMPACT_BELOW_PX - 20, 400)
    qtbot.waitUntil(lambda: viewer.compact_thumbnails)
    assert viewer.thumbnails.width() < 0.65 * full_width
    assert [viewer.thumbnails.item(row).text() for row in range(2)] == ["", ""]
    assert viewer.thumbnail_text(1) == labels[1]  # kept for the full column
    assert viewer.current_scan_id() == 1
    viewer.show_scans([_scan(3, "OCT", "OD"), *scans])  # a new scan arrives meanwhile
    assert viewer.thumbnails.item(0).text() == ""

    viewer.resize(COMPACT_BELOW_PX + 20, 400)
    qtbot.waitUntil(lambda: not viewer.compact_thumbnails)
    assert viewer.thumbnails.width() == full_width
    assert [viewer.thumbnails.item(row).text() for row in (1, 2)] == labels
    assert viewer.thumbnails.item(0).text().startswith("OCT · OD")
