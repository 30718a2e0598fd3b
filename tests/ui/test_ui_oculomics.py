"""The oculomics tab: charts per eye, thresholds, flagged points, the table and the
add-measurement form."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pytest
from PySide6.QtCore import QDate, QRect, Qt
from PySide6.QtGui import QColor, QFontMetrics, QImage, QPaintDevice
from PySide6.QtWidgets import QStyle, QTableWidget, QWidget
from pytestqt.qtbot import QtBot

from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.services.oculomics import METRICS, REFERENCE_RANGES
from ophthai_desktop.ui import day
from ophthai_desktop.ui.session import GuiSession
from ophthai_desktop.ui.theme import apply_theme
from ophthai_desktop.ui.views import oculomics as oculomics_view
from ophthai_desktop.ui.views.oculomics import (
    MAX_VALUE_TICKS,
    MetricChart,
    OculomicsView,
    date_ms,
    nice_ticks,
)
from tests.support.colours import AA_TEXT, contrast
from tests.ui.conftest import Maker, open_patient

ACTOR = Actor(who="Dr. Test", via="test")
TODAY = date.today()


def _points(series: object) -> list[tuple[float, float]]:
    return [(p.x(), p.y()) for p in series.points()]  # type: ignore[attr-defined]


def _patient_with_measurements(gui: GuiSession) -> str:
    app = gui.application
    patient = app.patients.create_patient({"name": "Ocu Lomics", "age": 66}, actor=ACTOR)
    add = app.oculomics.add_measurement
    d1, d2, d3 = (TODAY - timedelta(days=n) for n in (400, 200, 10))
    add(patient.id, eye="OD", measured_on=d1, iop_mmhg=18.0, cup_to_disc_ratio=0.4,
        rnfl_thickness_um=95.0, vessel_density_pct=48.0, actor=ACTOR)  # fmt: skip
    add(patient.id, eye="OD", measured_on=d2, iop_mmhg=22.5, cup_to_disc_ratio=0.55,
        rnfl_thickness_um=82.0, vessel_density_pct=42.0, actor=ACTOR)  # fmt: skip
    add(patient.id, eye="OD", measured_on=d3, iop_mmhg=24.0, cup_to_disc_ratio=0.6,
        rnfl_thickness_um=76.0, vessel_density_pct=38.5, actor=ACTOR)  # fmt: skip
    add(patient.id, eye="OS", measured_on=d1, iop_mmhg=16.0, rnfl_thickness_um=99.0,
        actor=ACTOR)  # fmt: skip
    add(patient.id, eye="OS", measured_on=d3, iop_mmhg=17.0, rnfl_thickness_um=97.0,
        actor=ACTOR)  # fmt: skip
    return patient.id


def _open_oculomics(qtbot: QtBot, gui: GuiSession, patient_id: str) -> None:
    with qtbot.waitSignal(gui.oculomics.loaded, timeout=5000):
        open_patient(qtbot, gui, patient_id)
    gui.patient_page.show_tab("oculomics")


def test_charts_show_each_eyes_measurements_with_thresholds(qtbot: QtBot, gui: GuiSession) -> None:
    patient_id = _patient_with_measurements(gui)
    _open_oculomics(qtbot, gui, patient_id)
    view = gui.oculomics_view
    assert gui.patient_page.tabs.tabText(gui.patient_page.tabs.currentIndex()) == "Oculomics"

    series = gui.application.oculomics.series(patient_id)
    for metric in METRICS:
        chart = view.charts[metric]
        for eye in ("OD", "OS"):
            expected = [
                (date_ms(r.measured_on), getattr(r, metric))
                for r in series[eye]
                if getattr(r, metric) is not None
            ]
            assert _points(chart.lines[eye]) == expected, (metric, eye)
        # The threshold is a flat dashed line at the reference table's bound.
        ref = REFERENCE_RANGES[metric]
        bound = ref.high if ref.worse == "high" else ref.low
        assert {y for _x, y in _points(chart.threshold)} == {bound}
        assert len(chart.threshold.points()) == 2
    assert [view.charts[m].threshold_value for m in METRICS] == [21.0, 0.5, 80.0, 40.0]
    # OS has only IOP and RNFL values.
    assert _points(view.charts["cup_to_disc_ratio"].lines["OS"]) == []


def test_axis_labels_have_room_to_be_drawn_whole(qtbot: QtBot, gui: GuiSession) -> None:
    """Qt Charts draws a label that does not fit its room as "…": "Oct 2024" became
    "Oct 20…" (the year hidden), and seven value ticks on a small chart all "…"."""
    app = gui.application
    patient = app.patients.create_patient({"name": "Two Years"}, actor=ACTOR)
    for days, iop in ((800, 18.0), (400, 23.0), (10, 25.0)):
        app.oculomics.add_measurement(
            patient.id, eye="OD", measured_on=TODAY - timedelta(days=days), iop_mmhg=iop,
            actor=ACTOR,
        )  # fmt: skip
    gui.window.resize(1440, 900)  # the default size
    _open_oculomics(qtbot, gui, patient.id)
    chart = gui.oculomics_view.charts["iop_mmhg"]
    qtbot.waitUntil(lambda: chart.chart().plotArea().height() > 0)
    plot = chart.chart().plotArea()

    axis = chart.x_axis
    step = axis.min().msecsTo(axis.max()) / (axis.tickCount() - 1)
    labels = [
        axis.min().addMSecs(round(i * step)).toString(axis.format())
        for i in range(axis.tickCount())
    ]
    years = {"'" + str(TODAY.year - n)[2:] for n in range(-1, 3)}
    assert all(label[-3:] in years for label in labels), labels  # "Oct '25", not a day
    widest = max(QFontMetrics(axis.labelsFont()).horizontalAdvance(label) for label in labels)
    assert widest <= 0.75 * plot.width() / (axis.tickCount() - 1), labels

    values = chart.y_axis
    assert 2 <= values.tickCount() <= MAX_VALUE_TICKS
    spacing = plot.height() / (values.tickCount() - 1)
    assert spacing >= 1.5 * QFontMetrics(values.labelsFont()).height()


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (15.05, 27.95, (15, 30, 4)),
        (0.43, 0.57, (0.4, 0.6, 5)),
        (70, 90, (70, 90, 5)),
        (0, 130, (0, 150, 4)),
    ],
)
def test_nice_ticks(low: float, high: float, expected: tuple[float, float, int]) -> None:
    bottom, top, ticks = nice_ticks(low, high)
    assert (round(bottom, 9), round(top, 9), ticks) == expected


def test_only_out_of_range_points_are_flagged(qtbot: QtBot, gui: GuiSession) -> None:
    patient_id = _patient_with_measurements(gui)
    _open_oculomics(qtbot, gui, patient_id)
    charts = gui.oculomics_view.charts
    d2, d3 = date_ms(TODAY - timedelta(days=200)), date_ms(TODAY - timedelta(days=10))
    assert _points(charts["iop_mmhg"].flagged) == [(d2, 22.5), (d3, 24.0)]
    assert _points(charts["cup_to_disc_ratio"].flagged) == [(d2, 0.55), (d3, 0.6)]
    assert _points(charts["rnfl_thickness_um"].flagged) == [(d3, 76.0)]
    assert _points(charts["vessel_density_pct"].flagged) == [(d3, 38.5)]


def test_table_and_trends_show_the_numbers(qtbot: QtBot, gui: GuiSession) -> None:
    patient_id = _patient_with_measurements(gui)
    _open_oculomics(qtbot, gui, patient_id)
    view = gui.oculomics_view
    assert view.table.rowCount() == 5
    newest = [view.table.item(0, c).text() for c in range(view.table.columnCount())]
    assert newest[:2] == [(TODAY - timedelta(days=10)).isoformat(), "OD"]
    assert newest[2:6] == ["24.0", "0.60", "76", "38.5"]
    assert newest[6] == "IOP high, C/D high, RNFL low, Vessel density low"
    trend = next(
        t
        for t in gui.application.oculomics.trends(patient_id)
        if t.eye == "OD" and t.metric == "iop_mmhg"
    )
    assert trend.change_per_year is not None
    assert view.trend_text("OD", "iop_mmhg").startswith(f"{trend.change_per_year:+.2f}")
    assert view.trend_text("OS", "cup_to_disc_ratio") == "—"


def test_the_form_adds_a_measurement(qtbot: QtBot, gui: GuiSession) -> None:
    patient_id = _patient_with_measurements(gui)
    _open_oculomics(qtbot, gui, patient_id)
    view = gui.oculomics_view
    view.eye.setCurrentIndex(1)  # OS
    qtbot.keyClicks(view.inputs["iop_mmhg"], "23.5")
    qtbot.keyClicks(view.inputs["vessel_density_pct"], "44")
    with qtbot.waitSignal(gui.oculomics.measurement_added, timeout=5000):
        view.add_button.click()

    os_iop = view.charts["iop_mmhg"].lines["OS"]
    qtbot.waitUntil(lambda: len(os_iop.points()) == 3)
    added_on = date_ms(date.today())  # not TODAY: the run may pass midnight
    assert _points(os_iop)[-1] == (added_on, 23.5)
    assert (added_on, 23.5) in _points(view.charts["iop_mmhg"].flagged)
    assert _points(view.charts["vessel_density_pct"].lines["OS"]) == [(added_on, 44.0)]
    assert view.table.rowCount() == 6
    assert view.table.item(0, 1).text() == "OS"
    assert view.inputs["iop_mmhg"].text() == ""  # the form is ready for the next one
    assert not view.error.isVisible()
    assert len(gui.application.oculomics.series(patient_id)["OS"]) == 3


def test_invalid_input_names_the_field_and_adds_nothing(qtbot: QtBot, gui: GuiSession) -> None:
    patient_id = _patient_with_measurements(gui)
    _open_oculomics(qtbot, gui, patient_id)
    view = gui.oculomics_view
    qtbot.keyClicks(view.inputs["cup_to_disc_ratio"], "1.7")
    view.add_button.click()
    qtbot.waitUntil(lambda: view.error.isVisible())
    assert view.error.text().startswith("Cup-to-disc ratio")
    assert "between 0 and 1" in view.error.text()
    assert view.inputs["cup_to_disc_ratio"].property("invalid") is True
    assert view.inputs["iop_mmhg"].property("invalid") is False

    view.inputs["cup_to_disc_ratio"].clear()
    view.add_button.click()  # nothing filled in
    qtbot.waitUntil(lambda: "at least one" in view.error.text())
    qtbot.keyClicks(view.inputs["iop_mmhg"], "abc")
    view.add_button.click()  # not a number: caught by the form
    assert view.error.text().startswith("Intraocular pressure: enter a number")
    qtbot.waitUntil(lambda: view.add_button.isEnabled())
    assert len(gui.application.oculomics.list_measurements(patient_id)) == 5
    assert view.table.rowCount() == 5


def test_a_measurement_from_elsewhere_refreshes_the_tab(qtbot: QtBot, gui: GuiSession) -> None:
    patient_id = _patient_with_measurements(gui)
    _open_oculomics(qtbot, gui, patient_id)
    view = gui.oculomics_view
    # As the API would: the service publishes OculomicsMeasured, the bridge delivers it.
    gui.application.oculomics.add_measurement(
        patient_id, eye="OS", measured_on=TODAY, cup_to_disc_ratio=0.7, actor=ACTOR
    )
    qtbot.waitUntil(lambda: view.table.rowCount() == 6)
    assert _points(view.charts["cup_to_disc_ratio"].flagged)[-1] == (date_ms(TODAY), 0.7)


def _lightness(chart: MetricChart) -> int:
    """The average lightness of the chart as drawn (grabbed through its parent: grabbing
    a QChartView itself crashes PySide6 6.11)."""
    parent = chart.parentWidget()
    assert parent is not None
    pixmap = parent.grab(chart.geometry())
    image = pixmap.toImage().convertToFormat(QImage.Format.Format_Grayscale8)
    step = 4
    values = [
        image.pixelColor(x, y).lightness()
        for x in range(0, image.width(), step)
        for y in range(0, image.height(), step)
    ]
    return round(sum(values) / len(values))


def test_the_charts_follow_the_theme_when_it_changes(qtbot: QtBot, gui: GuiSession) -> None:
    """They stayed white, with dark labels, in the dark theme."""
    patient_id = _patient_with_measurements(gui)
    _open_oculomics(qtbot, gui, patient_id)
    chart = gui.oculomics_view.charts["iop_mmhg"]
    assert _lightness(chart) > 200
    try:
        apply_theme("dark")
        assert _lightness(chart) < 90
        for axis in (chart.x_axis, chart.y_axis):
            assert axis.labelsColor().lightness() > 150
            # Grid lines are seen, but quieter than the labels.
            assert 40 < axis.gridLineColor().lightness() < axis.labelsColor().lightness() - 60
        assert chart.chart().legend().labelColor().lightness() > 150
        assert chart.chart().titleBrush().color().lightness() > 150
        # A chart made while the theme is dark is dark from the start.
        holder = QWidget()
        qtbot.addWidget(holder)
        made = MetricChart("cup_to_disc_ratio", holder)
        made.resize(300, 220)
        holder.resize(320, 240)
        holder.show()
        assert _lightness(made) < 90
    finally:
        apply_theme("light")
    assert _lightness(chart) > 200
    assert chart.x_axis.labelsColor().lightness() < 100


def _drawn_cell(table: QTableWidget, row: int, column: int) -> tuple[QColor, QColor]:
    """The background and the text colour of a cell as drawn: the commonest pixel and
    the pixel that differs most from it."""
    table.clearSelection()
    table.scrollToItem(table.item(row, column))
    image = table.viewport().grab(table.visualItemRect(table.item(row, column))).toImage()
    pixels = [
        image.pixelColor(x, y).rgb()
        for x in range(2, image.width() - 2)
        for y in range(2, image.height() - 2)
    ]
    background = QColor.fromRgb(Counter(pixels).most_common(1)[0][0])

    def distance(rgb: int) -> int:
        c = QColor.fromRgb(rgb)
        return sum(abs(a - b) for a, b in zip(c.getRgb()[:3], background.getRgb()[:3], strict=True))

    return background, QColor.fromRgb(max(pixels, key=distance))


def _grid_line(table: QTableWidget) -> QColor:
    """The colour of the line between the first row's first two cells, as drawn."""
    x = table.columnViewportPosition(1) - 1
    y = table.rowViewportPosition(0) + table.rowHeight(0) // 2
    return table.viewport().grab().toImage().pixelColor(x, y)


def _check_table_readable(table: QTableWidget, dark: bool) -> None:
    eye_column = OculomicsView.TABLE_COLUMNS.index("Eye")
    iop_column = OculomicsView.TABLE_COLUMNS.index("IOP")
    rows = {table.item(r, eye_column).text(): r for r in range(table.rowCount())}
    newest_od = min(r for r in range(table.rowCount()) if table.item(r, eye_column).text() == "OD")
    assert table.item(newest_od, iop_column).text() == "24.0"  # flagged: above 21
    for row, column in (
        (rows["OD"], eye_column),
        (rows["OS"], eye_column),
        (newest_od, iop_column),
    ):
        background, ink = _drawn_cell(table, row, column)
        assert (background.lightness() < 80) is dark
        # WCAG AA's 4.5 for text, in both themes (the light theme's orange OS was 3.1).
        assert contrast(background, ink) >= AA_TEXT, (table.item(row, column).text(), ink.name())
    line, base = _grid_line(table), _drawn_cell(table, 0, 0)[0]
    assert 1.1 < contrast(line, base) < 2.0, line.name()  # seen, but quiet


def test_a_chart_answers_qts_questions_about_it_as_a_paint_device(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """A chart kept its metric's name in ``metric``, hiding Qt's ``metric()`` (how many
    dots per inch...): when Qt asked, sizing the chart's font after the application font
    changed and the stylesheet was set again (a theme switch, the text following the
    font), it called the name and the app crashed."""
    for chart in gui.oculomics_view.charts.values():
        assert chart.metric(QPaintDevice.PaintDeviceMetric.PdmDpiY) > 0
        assert chart.logicalDpiY() > 0


def test_the_table_follows_the_theme_when_it_changes(qtbot: QtBot, gui: GuiSession) -> None:
    """In the dark theme its blue OD and red flags were hard to read, and its grid lines
    white."""
    _open_oculomics(qtbot, gui, _patient_with_measurements(gui))
    table = gui.oculomics_view.table
    _check_table_readable(table, dark=False)
    try:
        apply_theme("dark")
        _check_table_readable(table, dark=True)
    finally:
        apply_theme("light")
    _check_table_readable(table, dark=False)


def test_the_table_is_readable_when_the_app_starts_dark(qtbot: QtBot, make_gui: Maker) -> None:
    try:
        gui = make_gui(theme="dark")
        _open_oculomics(qtbot, gui, _patient_with_measurements(gui))
        _check_table_readable(gui.oculomics_view.table, dark=True)
    finally:
        apply_theme("light")


def _shown_whole(table: QTableWidget, row: int, column: int) -> bool:
    """Whether the cell's text, wrapped to its width, fits its height."""
    index = table.model().index(row, column)
    rect = table.visualRect(index)
    margin = table.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, table) + 1
    text = table.item(row, column).text()
    room = QRect(0, 0, rect.width() - 2 * margin, 10_000)
    needed = table.fontMetrics().boundingRect(room, Qt.TextFlag.TextWordWrap, text)
    return needed.width() <= room.width() and needed.height() <= rect.height()


@pytest.mark.parametrize(("size", "wrapped"), [((1680, 1300), True), ((1024, 700), False)])
def test_a_row_s_flags_are_shown_whole_where_their_words_fit(
    qtbot: QtBot, gui: GuiSession, size: tuple[int, int], wrapped: bool
) -> None:
    """Even at 1680 x 1300 the first row's flags read "IOP high, C/D hig…": they wrap
    onto more lines where their column is narrower than they are, and the table does
    not scroll sideways for them. Where the column is narrower than a word of them (at
    1024 x 700, the values taking the room) they stay one line, cut short, whole in the
    tooltip: wrapped there, a row was a column of "h…", "l…"."""
    gui.window.resize(*size)
    patient_id = _patient_with_measurements(gui)
    _open_oculomics(qtbot, gui, patient_id)
    view = gui.oculomics_view
    table = view.table
    qtbot.waitUntil(lambda: (gui.window.width(), gui.window.height()) == size)
    qtbot.wait(50)  # the layout settles
    flags = table.columnCount() - 1
    text = "IOP high, C/D high, RNFL low, Vessel density low"
    assert table.item(0, flags).text() == text
    assert table.item(0, flags).toolTip() == text
    assert table.horizontalScrollBar().maximum() == 0
    plain = next(r for r in range(table.rowCount()) if not table.item(r, flags).text())
    if wrapped:
        for row in range(table.rowCount()):
            assert _shown_whole(table, row, flags), table.item(row, flags).text()
        assert table.rowHeight(0) > table.rowHeight(plain)
    else:
        assert not _shown_whole(table, 0, flags)
        assert table.rowHeight(0) == table.rowHeight(plain)
    # A row without flags stays one line tall.
    assert table.rowHeight(plain) < 2 * table.fontMetrics().lineSpacing() + 6


def _view_opened_yesterday(qtbot: QtBot, monkeypatch: pytest.MonkeyPatch) -> OculomicsView:
    """The form as made the day before (the window left open overnight)."""
    yesterday = QDate.currentDate().addDays(-1)
    with monkeypatch.context() as clock:
        clock.setattr(oculomics_view, "today", lambda: yesterday)
        view = OculomicsView()
    qtbot.addWidget(view)
    assert view.measured_on.date() == yesterday
    return view


def _submitted(qtbot: QtBot, view: OculomicsView) -> dict[str, object]:
    view.inputs["iop_mmhg"].setText("17")
    with qtbot.waitSignal(view.measurement_submitted) as submitted:
        view.add_button.click()
    values: dict[str, object] = submitted.args[0]
    return values


def test_a_measurement_added_the_day_after_the_form_was_made_is_dated_today(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The form's date was the day the window opened: left open overnight (or for days
    in the tray), a measurement added next morning was recorded a day early."""
    view = _view_opened_yesterday(qtbot, monkeypatch)

    assert _submitted(qtbot, view)["measured_on"] == date.today()
    assert view.measured_on.date() == QDate.currentDate()  # and the form says so


def test_a_date_the_clinician_picked_stays_the_next_day(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    view = _view_opened_yesterday(qtbot, monkeypatch)
    picked = QDate.currentDate().addDays(-30)
    view.measured_on.setDate(picked)  # as the clinician's editing or calendar sets it

    assert _submitted(qtbot, view)["measured_on"] == picked.toPython()


@pytest.mark.parametrize("picked", [False, True])
def test_the_form_on_screen_at_midnight_moves_on_to_the_new_day(
    qtbot: QtBot, gui: GuiSession, monkeypatch: pytest.MonkeyPatch, picked: bool
) -> None:
    """The form's date followed the day when the tab was shown and at Add, not at
    midnight while on screen: the next morning it still said the day before (and Add
    then moved it without a word), and the latest date offered was the day before.
    A date the clinician picked stays."""
    _open_oculomics(qtbot, gui, _patient_with_measurements(gui))
    view = gui.oculomics_view
    today = QDate.currentDate()
    assert view.measured_on.date() == today
    assert view.measured_on.maximumDate() == today  # the core refuses a future date
    earlier = today.addDays(-30)
    if picked:
        view.measured_on.setDate(earlier)  # as the clinician's editing or calendar sets it

    tomorrow = today.addDays(1)
    monkeypatch.setattr(oculomics_view, "today", lambda: tomorrow)
    monkeypatch.setattr(day, "today", lambda: tomorrow)
    gui.patients.day_watch.look()  # as its timer does just past midnight

    assert view.measured_on.date() == (earlier if picked else tomorrow)
    assert view.measured_on.maximumDate() == tomorrow
