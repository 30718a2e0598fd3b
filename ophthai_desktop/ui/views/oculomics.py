"""The oculomics tab: one small chart per metric over time (a line per eye, the
reference threshold dashed, out-of-range points in red), the numbers behind the charts
with each eye's trend, and a form to add a measurement. Layout only; the controller
fills it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from PySide6.QtCharts import (
    QChart,
    QChartView,
    QDateTimeAxis,
    QLineSeries,
    QScatterSeries,
    QValueAxis,
)
from PySide6.QtCore import (
    QDate,
    QDateTime,
    QEvent,
    QMargins,
    QSignalBlocker,
    Qt,
    QTime,
    Signal,
    Slot,
)
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QPainter,
    QPalette,
    QPen,
    QResizeEvent,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QBoxLayout,
    QComboBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QStyle,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ophthai_desktop.core.records import OculomicsRecord
from ophthai_desktop.core.services.oculomics import (
    METRICS,
    REFERENCE_RANGES,
    MetricTrend,
    ReferenceRange,
)
from ophthai_desktop.ui.day import today
from ophthai_desktop.ui.views.calendar_keys import CalendarDateEdit
from ophthai_desktop.ui.views.columns import FittingTableWidget
from ophthai_desktop.ui.views.focus import step_focus_to
from ophthai_desktop.ui.views.reflow import room_in, set_side_by_side
from ophthai_desktop.ui.views.scale import scaled
from ophthai_desktop.ui.views.style import set_style_property, set_text

EYES = ("OD", "OS")
EYE_NAMES = {"OD": "OD (right)", "OS": "OS (left)"}
#: One colour per eye in every chart and the table; both read as text on white
#: (contrast 5.8 and 4.9: the brighter orange #ef6c00 this was before is 3.1).
EYE_COLOURS = {"OD": QColor("#1565c0"), "OS": QColor("#b85400")}
#: The same blue and orange, lighter, for the lines on a dark chart (the dark blue was
#: hard to see there).
DARK_EYE_COLOURS = {"OD": QColor("#5c9ded"), "OS": QColor("#ff9b45")}
FLAG_COLOUR = QColor("#d32f2f")
#: The table's coloured text (the eyes, the flagged values) in each look: on the dark
#: theme's base the light look's blue and red were hard to read (contrast 2.6 and 3.0;
#: these are above 5).
TABLE_INKS = {
    "light": {**EYE_COLOURS, "flag": FLAG_COLOUR},
    "dark": {**DARK_EYE_COLOURS, "flag": QColor("#f28b82")},
}
#: Item data role holding which of :data:`TABLE_INKS` a table cell is drawn in.
INK_ROLE = Qt.ItemDataRole.UserRole + 1
THRESHOLD_COLOUR = QColor("#757575")
#: Value-axis ticks at most: their labels must fit a chart ~150 px tall.
MAX_VALUE_TICKS = 5
#: A chart's least size: its axis labels and legend fit whole (tests check they do).
CHART_MIN_WIDTH, CHART_MIN_HEIGHT = 260, 210
#: Between the charts, and between the charts and the numbers.
SPACING = 6
#: The trends table's title, and its name for a screen reader.
TREND_TITLE = "Trend (least-squares change per year)"
#: The least width of the table and trends beside the form: the table's columns whole,
#: with ~100 px for the flags (cut short there, whole in their tooltips).
NUMBERS_MIN_WIDTH = 420
#: The least width of the table's flags column (cut short there, whole in the tooltip;
#: a flagged value is red besides): the header's least, as it was at 1024 x 700.
FLAGS_LEAST_PX = 26
#: The least height of the numbers and the form beside them.
BOTTOM_MIN_HEIGHT = 330
SHORT_LABELS = {
    "iop_mmhg": "IOP",
    "cup_to_disc_ratio": "C/D",
    "rnfl_thickness_um": "RNFL",
    "vessel_density_pct": "Vessel density",
}
#: Decimals shown per metric.
DECIMALS = {"iop_mmhg": 1, "cup_to_disc_ratio": 2, "rnfl_thickness_um": 0, "vessel_density_pct": 1}


def date_ms(day: date) -> float:
    """Where ``day`` lies on a chart's date axis (local noon, in ms since the epoch)."""
    moment = QDateTime(QDate(day.year, day.month, day.day), QTime(12, 0))
    return float(moment.toMSecsSinceEpoch())


def threshold(ref: ReferenceRange) -> float:
    """The bound drawn on the chart: the one on the side that is worse."""
    bound = ref.high if ref.worse == "high" else ref.low
    assert bound is not None
    return bound


def is_flagged(record: OculomicsRecord, metric: str) -> bool:
    """Whether the core flagged ``metric`` of ``record`` as out of range."""
    return f"{metric}_high" in record.flags or f"{metric}_low" in record.flags


def format_value(metric: str, value: float | None) -> str:
    return "—" if value is None else f"{value:.{DECIMALS[metric]}f}"


def flag_text(flag: str) -> str:
    """``iop_mmhg_high`` as the table shows it: ``IOP high``."""
    metric, _, direction = flag.rpartition("_")
    return f"{SHORT_LABELS.get(metric, metric)} {direction}"


def unit_suffix(ref: ReferenceRange) -> str:
    return f" ({ref.unit})" if ref.unit else ""


def mix(base: QColor, ink: QColor, share: float) -> QColor:
    """``share`` of ``ink`` over ``base`` (0: the base, 1: the ink)."""
    return QColor.fromRgbF(
        base.redF() + (ink.redF() - base.redF()) * share,
        base.greenF() + (ink.greenF() - base.greenF()) * share,
        base.blueF() + (ink.blueF() - base.blueF()) * share,
    )


def is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Base).lightness() < 128


def nice_ticks(low: float, high: float, most: int = MAX_VALUE_TICKS) -> tuple[float, float, int]:
    """A range around ``low``..``high`` on round steps (1, 2 or 5 times a power of ten,
    so that two decimals show every tick exactly) with at most ``most`` ticks: the
    range's ends and the tick count.

    Qt's ``applyNiceNumbers`` gave up to nine ticks, and on a chart ~150 px tall their
    labels did not fit and were all drawn as "…".
    """
    span = max(high - low, 1e-9)
    raw = span / (most - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))
    while True:
        bottom = math.floor(low / step + 1e-9) * step
        top = math.ceil(high / step - 1e-9) * step
        ticks = round((top - bottom) / step) + 1
        if ticks <= most:
            return bottom, top, max(ticks, 2)
        step *= 2


class MetricChart(QChartView):
    """One metric over time: a line per eye, the threshold, the flagged points."""

    def __init__(self, metric: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # Not ``metric``: that would hide QPaintDevice.metric(), which Qt calls (when it
        # sizes the chart's font) and would find a string to call.
        self.metric_name = metric
        self.reference = REFERENCE_RANGES[metric]
        self.threshold_value = threshold(self.reference)
        chart = QChart()
        chart.setTitle(f"{self.reference.label}{unit_suffix(self.reference)}")
        # A picture with nothing to do by keyboard (the table below has its values): no
        # Tab stop, where the focus showed nothing and a screen reader said nothing; a
        # screen reader reading the window names it.
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setAccessibleName(f"{chart.title()} over time")
        title_font = QFont(chart.titleFont())
        title_font.setPointSizeF(max(8.0, title_font.pointSizeF()))
        title_font.setBold(True)
        chart.setTitleFont(title_font)
        chart.setMargins(QMargins(4, 4, 4, 4))
        chart.setBackgroundRoundness(4)
        chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
        legend_font = QFont(chart.legend().font())
        legend_font.setPointSizeF(max(7.0, legend_font.pointSizeF() - 1))
        chart.legend().setFont(legend_font)

        self.x_axis = QDateTimeAxis()
        self.x_axis.setTickCount(4)
        self.y_axis = QValueAxis()
        self.y_axis.setLabelFormat("%.2f" if DECIMALS[metric] > 1 else "%.0f")
        chart.addAxis(self.x_axis, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(self.y_axis, Qt.AlignmentFlag.AlignLeft)

        self.lines: dict[str, QLineSeries] = {}
        for eye in EYES:
            line = QLineSeries()
            line.setName(eye)
            pen = QPen(EYE_COLOURS[eye])
            pen.setWidthF(2.0)
            line.setPen(pen)
            line.setPointsVisible(True)
            self.lines[eye] = line
        self.threshold = QLineSeries()
        # Short legend names: the chart is ~270 px wide and longer ones were cut
        # ("limit 21 …", "out of ra…"); the dashed line's value is on the value axis.
        self.threshold.setName("limit")
        dashed = QPen(THRESHOLD_COLOUR)
        dashed.setStyle(Qt.PenStyle.DashLine)
        dashed.setWidthF(1.5)
        self.threshold.setPen(dashed)
        self.flagged = QScatterSeries()
        self.flagged.setName("flagged")
        self.flagged.setMarkerSize(10.0)
        self.flagged.setColor(FLAG_COLOUR)
        self.flagged.setBorderColor(FLAG_COLOUR.darker(130))
        self.flagged.setBrush(QBrush(FLAG_COLOUR))
        for series in (*self.lines.values(), self.threshold, self.flagged):
            chart.addSeries(series)
            series.attachAxis(self.x_axis)
            series.attachAxis(self.y_axis)
        self.setChart(chart)
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        # Grown with the font: at 1.5 times the size the axes' labels were all "…".
        self.setMinimumSize(scaled(self, CHART_MIN_WIDTH), scaled(self, CHART_MIN_HEIGHT))
        # Qt Charts' light look, to go back to from the dark one.
        self._light_look = (
            chart.backgroundBrush(),
            chart.titleBrush().color(),
            chart.legend().labelColor(),
            self.x_axis.labelsColor(),
            self.x_axis.gridLineColor(),
            self.x_axis.linePenColor(),
        )
        self._follow_palette()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:  # the theme changed
            self._follow_palette()

    def _follow_palette(self) -> None:
        """Draw the chart in the look of the widget's palette: Qt Charts' own light look
        on a light one; on a dark one the palette's base with its text colour, and
        lighter lines. (A chart does not follow the palette by itself: it stayed white
        in the dark theme.)"""
        palette = self.palette()
        chart = self.chart()
        dark = is_dark(palette)
        if dark:
            base = palette.color(QPalette.ColorRole.Base)
            text = palette.color(QPalette.ColorRole.Text)
            background = QBrush(base)
            title, legend, labels = text, mix(base, text, 0.85), mix(base, text, 0.8)
            grid, axis_line = mix(base, text, 0.14), mix(base, text, 0.3)
        else:
            background, title, legend, labels, grid, axis_line = self._light_look
        chart.setBackgroundBrush(background)
        chart.setTitleBrush(QBrush(title))
        chart.legend().setLabelColor(legend)
        for axis in (self.x_axis, self.y_axis):
            axis.setLabelsColor(labels)
            axis.setGridLineColor(grid)
            axis.setLinePenColor(axis_line)
        colours = DARK_EYE_COLOURS if dark else EYE_COLOURS
        for eye, line in self.lines.items():
            pen = line.pen()
            pen.setColor(colours[eye])
            line.setPen(pen)

    def show_series(self, series: Mapping[str, Sequence[OculomicsRecord]]) -> None:
        """Plot each eye's values of this chart's metric (records oldest first)."""
        metric = self.metric_name
        days: list[date] = []
        values: list[float] = [self.threshold_value]
        flagged: list[tuple[float, float]] = []
        for eye in EYES:
            points = []
            for record in series.get(eye, ()):
                value = getattr(record, metric)
                if value is None:
                    continue
                points.append((date_ms(record.measured_on), float(value)))
                days.append(record.measured_on)
                values.append(float(value))
                if is_flagged(record, metric):
                    flagged.append((date_ms(record.measured_on), float(value)))
            self.lines[eye].clear()
            for x, y in points:
                self.lines[eye].append(x, y)
        self.flagged.clear()
        for x, y in flagged:
            self.flagged.append(x, y)

        first = min(days, default=date.today() - timedelta(days=365))
        last = max(days, default=date.today())
        pad = max(7, (last - first).days // 12)
        start, end = first - timedelta(days=pad), last + timedelta(days=pad)
        # Short enough for the axis to show whole: "Oct 2024" was cut to "Oct 20…",
        # which hid the year; within a few months the day matters more than the year.
        # "Oct '25" (not "Oct 25", which reads as a day of October).
        self.x_axis.setFormat("MMM ''yy" if (end - start).days > 120 else "d MMM")
        self.x_axis.setRange(
            QDateTime.fromMSecsSinceEpoch(int(date_ms(start))),
            QDateTime.fromMSecsSinceEpoch(int(date_ms(end))),
        )
        self.threshold.clear()
        self.threshold.append(date_ms(start), self.threshold_value)
        self.threshold.append(date_ms(end), self.threshold_value)
        low, high = min(values), max(values)
        margin = (high - low) * 0.15 or abs(high) * 0.1 or 1.0
        bottom, top, ticks = nice_ticks(max(0.0, low - margin), high + margin)
        self.y_axis.setRange(bottom, top)
        self.y_axis.setTickCount(ticks)


class OculomicsView(QWidget):
    """Charts, the measurement table with trends, and the add-measurement form.

    Signals:
        measurement_submitted(dict): the form's values, ready for
            ``OculomicsService.add_measurement`` (``eye``, ``measured_on`` and the
            metrics that were filled in).
    """

    measurement_submitted = Signal(dict)

    TABLE_COLUMNS = ("Date", "Eye", *(SHORT_LABELS[m] for m in METRICS), "Flags")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("oculomicsView")
        self.charts: dict[str, MetricChart] = {metric: MetricChart(metric) for metric in METRICS}
        # Two charts a row where the tab is wide enough, else one (see _reflow).
        self._grid = QGridLayout()
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(SPACING)
        self._chart_columns = 0
        charts = QWidget()
        charts.setLayout(self._grid)

        self.table = FittingTableWidget(0, len(self.TABLE_COLUMNS))
        self.table.setObjectName("oculomicsTable")
        self.table.setAccessibleName("Measurements")
        # "Vessel density" on two lines: on one it made its column of short numbers the
        # widest but the flags.
        self.table.setHorizontalHeaderLabels([c.replace(" ", "\n") for c in self.TABLE_COLUMNS])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        # Tab leaves the tables (it went round their cells and never out: a keyboard
        # trap); the arrow keys move in them.
        self.table.setTabKeyNavigation(False)
        self.table.verticalHeader().setVisible(False)
        # The flags wrap onto more lines where their column is narrower than they are
        # (cut short, the first row read "IOP high, C/D hig…" even at 1680 x 1300), a
        # row as tall as its text; where the column is narrower than a word of them (at
        # 1024 x 700) they are cut short instead (see _wrap_flags). The other columns
        # are as wide as their values, one line each.
        self.table.setWordWrap(False)
        self._flag_word_px = 0  # the widest word of the flags shown
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # The flags (also shown as the red values) take the width left, wrapped or cut
        # short where it is not enough (whole in the tooltip), rather than make the
        # table scroll sideways.
        header.setSectionResizeMode(len(self.TABLE_COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        # Where even the values do not fit (at 800 x 600 the table scrolled sideways),
        # the last metrics give way (the charts above show them), then the flags.
        flags = len(self.TABLE_COLUMNS) - 1
        self.table.fit_columns(stretch=flags, least_px=FLAGS_LEAST_PX, order=range(flags))
        self._fit_table()
        header.sectionResized.connect(self._on_table_header_section_resized)

        self.trends = QTableWidget(len(METRICS), len(EYES))
        self.trends.setObjectName("oculomicsTrends")
        self.trends.setAccessibleName(TREND_TITLE)
        self.trends.setHorizontalHeaderLabels([EYE_NAMES[e] for e in EYES])
        self.trends.setVerticalHeaderLabels([SHORT_LABELS[m] for m in METRICS])
        self.trends.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.trends.setTabKeyNavigation(False)
        self.trends.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        row_height = self.trends.fontMetrics().height() + 8
        self.trends.verticalHeader().setDefaultSectionSize(row_height)
        self.trends.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.trends.setWordWrap(False)
        self.trends.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.trends.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.trends.setFixedHeight(
            self.trends.horizontalHeader().sizeHint().height()
            + len(METRICS) * row_height
            + 2 * self.trends.frameWidth()
        )
        self.table.setMinimumHeight(140)

        self.eye = QComboBox()
        for eye in EYES:
            self.eye.addItem(EYE_NAMES[eye], eye)
        self.measured_on = CalendarDateEdit(today())
        self.measured_on.setCalendarPopup(True)
        self.measured_on.setDisplayFormat("yyyy-MM-dd")
        # No measurement in the future (the core refuses one); the latest date follows
        # the day, and so does the date until the clinician picks one (follow_today).
        self.measured_on.setMaximumDate(today())
        self._date_chosen = False
        self.measured_on.dateChanged.connect(self._on_measured_on_date_changed)
        self.inputs: dict[str, QLineEdit] = {}
        form = QFormLayout()
        form.addRow("Eye", self.eye)
        form.addRow("Date", self.measured_on)
        for metric in METRICS:
            ref = REFERENCE_RANGES[metric]
            edit = QLineEdit()
            edit.setObjectName(f"input_{metric}")
            edit.setPlaceholderText("optional")
            edit.setClearButtonEnabled(True)
            self.inputs[metric] = edit
            form.addRow(f"{SHORT_LABELS[metric]}{unit_suffix(ref)}", edit)
        self.error = QLabel()
        self.error.setObjectName("fieldError")  # red in each theme (style.qss, theme.py)
        self.error.setWordWrap(True)
        self.error.hide()
        self.add_button = QPushButton("Add measurement")
        self.add_button.setObjectName("addMeasurementButton")
        form_box = QGroupBox("Add a measurement")
        self._form_box = form_box
        form_layout = QVBoxLayout(form_box)
        form_layout.addLayout(form)
        form_layout.addWidget(self.error)
        form_layout.addWidget(self.add_button)
        form_layout.addStretch(1)

        self.empty = QLabel("No oculomics measurements yet.")
        self.empty.setObjectName("emptyHint")
        numbers = QWidget()
        numbers_layout = QVBoxLayout(numbers)
        numbers_layout.setContentsMargins(0, 0, 0, 0)
        numbers_layout.addWidget(self.empty)
        numbers_layout.addWidget(self.table, 1)
        trend_title = QLabel(TREND_TITLE)
        trend_title.setObjectName("sectionTitle")
        trend_title.setWordWrap(True)
        numbers_layout.addWidget(trend_title)
        numbers_layout.addWidget(self.trends)

        bottom = QWidget()
        # The form beside the numbers, or under them where the tab is narrow.
        self._bottom_layout = QHBoxLayout(bottom)
        self._bottom_layout.setContentsMargins(0, 0, 0, 0)
        self._bottom_layout.addWidget(numbers, 1)
        self._bottom_layout.addWidget(form_box)

        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.setObjectName("oculomicsSplit")
        self.split.addWidget(charts)
        self.split.addWidget(bottom)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 2)
        self.split.setSizes([560, 440])
        # On a small window the tab scrolls rather than squeezing the charts unreadable.
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidget(self.split)
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        # No Tab stop of its own (it took the focus unseen): Tab to a field in it scrolls
        # to that field, and a click in it gives it the arrow keys and Page Up/Down.
        self.scroll_area.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self._reflow()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.scroll_area)

        self.add_button.clicked.connect(self._on_add_button_clicked)
        for edit in self.inputs.values():
            edit.returnPressed.connect(self._on_add_button_clicked)

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:  # the theme changed
            self._recolour_tables()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._reflow()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.follow_today()

    @property
    def chart_columns(self) -> int:
        """How many charts a row shows (two, or one in a narrow tab)."""
        return self._chart_columns

    @property
    def form_beside_numbers(self) -> bool:
        """Whether the form is beside the table and trends (else under them)."""
        return self._bottom_layout.direction() == QBoxLayout.Direction.LeftToRight

    def _reflow(self) -> None:
        """Two charts a row and the form beside the numbers where the tab is wide
        enough for them, else one under the other: the tab scrolled sideways (at
        1024 x 700 the right-hand charts and the form were out of sight)."""
        room = room_in(self.scroll_area)
        chart_width, chart_height = scaled(self, CHART_MIN_WIDTH), scaled(self, CHART_MIN_HEIGHT)
        columns = 2 if room >= 2 * chart_width + SPACING else 1
        if columns != self._chart_columns:
            self._chart_columns = columns
            for i, metric in enumerate(METRICS):
                self._grid.addWidget(self.charts[metric], i // columns, i % columns)
        beside = room >= NUMBERS_MIN_WIDTH + SPACING + self._form_box.sizeHint().width()
        set_side_by_side(self._bottom_layout, beside)
        rows = -(-len(METRICS) // columns)  # rounded up
        charts = rows * chart_height + (rows - 1) * SPACING
        bottom = self._bottom_layout.minimumSize().height()
        self.split.setMinimumHeight(charts + max(BOTTOM_MIN_HEIGHT, bottom) + SPACING)

    def _ink(self, name: str) -> QColor:
        return TABLE_INKS["dark" if is_dark(self.palette()) else "light"][name]

    def _inked_item(self, text: str, ink: str | None) -> QTableWidgetItem:
        """A table cell, in the colour ``ink`` of :data:`TABLE_INKS` if given."""
        item = QTableWidgetItem(text)
        if ink is not None:
            item.setData(INK_ROLE, ink)
            item.setForeground(self._ink(ink))
        return item

    def _recolour_tables(self) -> None:
        """Give the coloured cells the current look's colours (like the charts, the
        cells do not follow the palette by themselves)."""
        for table in (self.table, self.trends):
            for row in range(table.rowCount()):
                for column in range(table.columnCount()):
                    item = table.item(row, column)
                    ink = item.data(INK_ROLE) if item is not None else None
                    if item is not None and ink:
                        item.setForeground(self._ink(ink))

    # Filling ------------------------------------------------------------------------

    def show_overview(
        self, series: Mapping[str, Sequence[OculomicsRecord]], trends: Sequence[MetricTrend]
    ) -> None:
        """Show a patient's measurements (per eye, oldest first) and trends."""
        for chart in self.charts.values():
            chart.show_series(series)
        rows = sorted(
            (r for eye in EYES for r in series.get(eye, ())),
            key=lambda r: (-r.measured_on.toordinal(), r.eye, -r.id),
        )
        self.empty.setVisible(not rows)
        self.table.setRowCount(len(rows))
        for row, record in enumerate(rows):
            cells: list[tuple[str, str | None]] = [
                (record.measured_on.isoformat(), None),
                (record.eye, record.eye if record.eye in EYE_COLOURS else None),
            ]
            for metric in METRICS:
                flagged = is_flagged(record, metric)
                cells.append(
                    (format_value(metric, getattr(record, metric)), "flag" if flagged else None)
                )
            flags = ", ".join(flag_text(flag) for flag in record.flags)
            cells.append((flags, "flag" if record.flags else None))
            for column, (text, ink) in enumerate(cells):
                self.table.setItem(row, column, self._inked_item(text, ink))
            flags_item = self.table.item(row, len(cells) - 1)
            assert flags_item is not None  # set just above
            flags_item.setToolTip(flags)  # whole, where the column cuts it short
        metrics = self.table.fontMetrics()
        self._flag_word_px = max(
            (
                metrics.horizontalAdvance(word)
                for record in rows
                for flag in record.flags
                for word in f"{flag_text(flag)},".split()
            ),
            default=0,
        )
        self._wrap_flags()
        by_key = {(t.eye, t.metric): t for t in trends}
        for row, metric in enumerate(METRICS):
            for column, eye in enumerate(EYES):
                trend = by_key.get((eye, metric))
                flagged = trend is not None and bool(trend.latest_flag)
                item = self._inked_item(self._trend_text(trend), "flag" if flagged else None)
                if trend is not None:
                    item.setToolTip(  # the change whole, where the column cuts it short
                        f"{item.text()}: {trend.points} values, {trend.first_on.isoformat()} to "
                        f"{trend.last_on.isoformat()}; latest "
                        f"{format_value(metric, trend.latest_value)}"
                    )
                self.trends.setItem(row, column, item)
        self._fit_table()

    @Slot(int, int, int)
    def _on_table_header_section_resized(self, column: int, _old: int, _new: int) -> None:
        if column == len(self.TABLE_COLUMNS) - 1:
            self._wrap_flags()

    def _wrap_flags(self) -> None:
        """Wrap the flags where their column holds each of their words whole; else cut
        them short on one line (a column a few letters wide gave a row of "h…" "l…")."""
        table = self.table
        margin = table.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, table)
        room = table.columnWidth(len(self.TABLE_COLUMNS) - 1) - 2 * (margin + 1)
        wrap = 0 < self._flag_word_px <= room
        if table.wordWrap() != wrap:
            table.setWordWrap(wrap)
            table.resizeRowsToContents()

    def _fit_table(self) -> None:
        """Tell the table's column fitting how wide each column's header and values
        are (Qt sizes the shown ones to them; a hidden one has no size to read)."""
        columns = self.table.columns
        if columns is None:
            return
        header = self.table.horizontalHeader()
        columns.set_widths(
            {
                column: max(
                    header.sectionSizeFromContents(column).width(),
                    self.table.sizeHintForColumn(column),
                )
                for column in range(len(self.TABLE_COLUMNS) - 1)
            }
        )

    @staticmethod
    def _trend_text(trend: MetricTrend | None) -> str:
        if trend is None:
            return "—"
        unit = f" {trend.unit}" if trend.unit else ""
        if trend.change_per_year is None:
            return f"one date ({format_value(trend.metric, trend.latest_value)}{unit})"
        decimals = DECIMALS[trend.metric] + 1
        return f"{trend.change_per_year:+.{decimals}f}{unit}/yr"

    def trend_text(self, eye: str, metric: str) -> str:
        """What the trend table shows for ``eye`` and ``metric``."""
        item = self.trends.item(METRICS.index(metric), EYES.index(eye))
        return item.text() if item is not None else ""

    # Form ---------------------------------------------------------------------------

    def show_error(self, message: str, field: str | None = None) -> None:
        """Show why the measurement was not added and mark the field it is about."""
        set_text(self.error, message)
        self.error.setVisible(bool(message))
        for metric, edit in self.inputs.items():
            set_style_property(edit, "invalid", metric == field)
        set_style_property(self.eye, "invalid", field == "eye")
        set_style_property(self.measured_on, "invalid", field == "measured_on")
        target = self.inputs.get(field or "")
        if target is not None:
            step_focus_to(target)

    def clear_form(self) -> None:
        """Empty the values after a measurement was added (eye and date stay)."""
        for edit in self.inputs.values():
            edit.clear()
        self.show_error("")

    def set_busy(self, busy: bool) -> None:
        self.add_button.setEnabled(not busy)

    @Slot()
    def follow_today(self) -> None:
        """The form's date is today's, unless the clinician picked one, and the latest it
        offers is today: a window left open overnight (in the tray, for days) offered
        the day it was opened, and a measurement added next morning was recorded a day
        early, without a word. Called on a new day, when shown and at Add."""
        day = today()
        with QSignalBlocker(self.measured_on):  # not the clinician's
            shown = self.measured_on.date()
            # A date picked later than today (the clock set back) stays as it is rather
            # than moved without a word: the core says why it is refused.
            latest = day if not self._date_chosen else max(day, shown)
            if self.measured_on.maximumDate() != latest:
                self.measured_on.setMaximumDate(latest)
            if not self._date_chosen and shown != day:
                self.measured_on.setDate(day)

    @Slot(QDate)
    def _on_measured_on_date_changed(self, _date: QDate) -> None:
        self._date_chosen = True  # by the clinician: the form's own changes are blocked

    @Slot()
    def _on_add_button_clicked(self) -> None:
        self.follow_today()
        values: dict[str, Any] = {
            "eye": self.eye.currentData(),
            "measured_on": self.measured_on.date().toPython(),
        }
        for metric, edit in self.inputs.items():
            text = edit.text().strip().replace(",", ".")
            if not text:
                continue
            try:
                values[metric] = float(text)
            except ValueError:
                label = REFERENCE_RANGES[metric].label
                self.show_error(f"{label}: enter a number, such as 17.5", metric)
                return
        self.measurement_submitted.emit(values)
