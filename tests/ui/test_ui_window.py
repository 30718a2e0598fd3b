"""The main window on a fresh data folder, and the patient list at scale."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QTextLayout, QTextOption
from PySide6.QtWidgets import QAbstractScrollArea, QScrollArea, QWidget
from pytestqt.qtbot import QtBot

from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.services.patients import NewImage
from ophthai_desktop.core.worker import LOAD_STOP_WAIT_S
from ophthai_desktop.desktop import INSTANCE_LOCK, Desktop
from ophthai_desktop.ui.models.patient_table import COLUMN_OF
from ophthai_desktop.ui.session import GuiSession
from ophthai_desktop.ui.views.scan_viewer import THUMB_SIDE_ROOM, THUMB_SIZE
from tests.conftest import make_settings
from tests.support.scripted_engine import DME, NORMAL, ScriptedEngine
from tests.ui.conftest import Maker, open_patient, seed_patients
from tests.ui.demo_images import oct_bscan

REPO = Path(__file__).resolve().parents[2]


def measure_three_visits(
    app: Application, patient_id: str, actor: Actor, *, eyes: tuple[str, ...]
) -> None:
    """Oculomics of three visits over a year, rising pressure and cupping, per eye."""
    for days, iop, cup_to_disc in ((400, 18.0, 0.45), (200, 22.5, 0.55), (10, 24.0, 0.6)):
        for eye in eyes:
            app.oculomics.add_measurement(
                patient_id,
                eye=eye,
                measured_on=date.today() - timedelta(days=days),
                iop_mmhg=iop,
                cup_to_disc_ratio=cup_to_disc,
                rnfl_thickness_um=76.0,
                vessel_density_pct=38.5,
                actor=actor,
            )


def test_window_opens_on_a_fresh_data_folder(qtbot: QtBot, gui: GuiSession) -> None:
    window = gui.window
    assert window.isVisible()
    assert window.windowTitle() == "OphthAI Desktop"
    qtbot.waitUntil(lambda: gui.patient_list.empty_text().startswith("No patients yet"))
    assert gui.patient_list.model.rowCount() == 0
    assert gui.patient_page.stack.currentWidget() is gui.patient_page.empty
    status = window.status
    assert status.model.text() == "Model: not installed"
    assert "not" in status.model.toolTip()  # the engine's own explanation
    assert status.api.text() == "API: off"
    assert status.watcher.text() == "Watch folder: off"
    assert not window.pause_watch_action.isEnabled()
    assert not window.analyse_action.isEnabled()  # no patient chosen
    assert gui.jobs_panel.model.rowCount() == 0
    assert gui.notifications_panel.model.rowCount() == 0


def test_list_pages_searches_filters_and_sorts(qtbot: QtBot, make_gui: Maker) -> None:
    session = make_gui()
    seed_patients(session.application, 450)
    session.patients.refresh()
    view, model = session.patient_list, session.patient_list.model
    qtbot.waitUntil(lambda: model.total == 450)
    assert model.rowCount() == 200  # the first page only
    assert view.count.text() == "Showing 200 of 450 patients (scroll for more)"
    assert model.data(model.index(0, 0)) == "Seeded Patient 00449"  # newest first

    view.table.scrollToBottom()  # the view asks for the next page itself
    qtbot.waitUntil(lambda: model.rowCount() == 400)

    qtbot.keyClicks(view.search, "00042")  # search-as-you-type, debounced
    qtbot.waitUntil(lambda: model.total == 1)
    assert model.data(model.index(0, COLUMN_OF["id"])) == "pt-seed00042"

    view.search.clear()
    qtbot.keyClicks(view.search, "patient")
    qtbot.waitUntil(lambda: model.total == 450)
    view.status.setCurrentIndex(view.status.findData("Critical"))
    qtbot.waitUntil(lambda: model.total == 450 // 4)
    assert {model.data(model.index(r, COLUMN_OF["status"])) for r in range(model.rowCount())} == {
        "Critical"
    }

    header = view.table.horizontalHeader()
    header.setSortIndicator(
        COLUMN_OF["age"], Qt.SortOrder.AscendingOrder
    )  # as a click on "Age" does
    qtbot.waitUntil(
        lambda: model.data(model.index(0, COLUMN_OF["age"])) == "20"
    )  # i=70: Critical, 20
    ages = [int(model.data(model.index(r, COLUMN_OF["age"]))) for r in range(model.rowCount())]
    assert ages == sorted(ages)


def test_a_new_search_filter_or_sort_shows_its_first_rows(qtbot: QtBot, make_gui: Maker) -> None:
    """Scrolled to the end of the list, then a search: the list showed the last of its
    matches (the old scroll position, cut to the new length), the first off the top."""
    session = make_gui()
    seed_patients(session.application, 300)
    session.patients.refresh()
    view, model = session.patient_list, session.patient_list.model
    qtbot.waitUntil(lambda: model.total == 300)
    bar = view.table.verticalScrollBar()

    def scrolled_to_the_end() -> None:
        view.table.scrollToBottom()
        qtbot.waitUntil(lambda: bar.value() > 0 and bar.value() == bar.maximum())

    scrolled_to_the_end()
    qtbot.keyClicks(view.search, "Patient 001")  # 00100 to 00199: more than fit
    qtbot.waitUntil(lambda: model.total == 100)
    assert bar.maximum() > 0
    assert bar.value() == 0
    assert view.table.rowAt(0) == 0  # the first match is the top row shown

    scrolled_to_the_end()
    view.status.setCurrentIndex(view.status.findData("Critical"))
    qtbot.waitUntil(lambda: model.total == 25)
    assert bar.value() == 0

    view.search.selectAll()
    qtbot.keyClick(view.search, Qt.Key.Key_Backspace)  # as typed: the debounced search
    qtbot.waitUntil(lambda: model.total == 75)
    scrolled_to_the_end()
    view.table.horizontalHeader().setSortIndicator(0, Qt.SortOrder.AscendingOrder)  # Name
    qtbot.waitUntil(lambda: model.data(model.index(0, 0)) == "Seeded Patient 00002")
    assert bar.value() == 0


def test_a_sorted_list_keeps_its_place_when_a_patient_arrives(
    qtbot: QtBot, make_gui: Maker
) -> None:
    session = make_gui()
    seed_patients(session.application, 300)
    session.patients.refresh()
    view, model = session.patient_list, session.patient_list.model
    qtbot.waitUntil(lambda: model.total == 300)
    view.table.horizontalHeader().setSortIndicator(0, Qt.SortOrder.AscendingOrder)  # Name
    qtbot.waitUntil(lambda: model.data(model.index(0, 0)) == "Seeded Patient 00000")
    view.table.scrollToBottom()
    qtbot.waitUntil(lambda: model.rowCount() == 300)
    view.table.scrollToBottom()
    view.table.selectRow(297)
    qtbot.waitUntil(lambda: session.patient_page.name.text() == "Seeded Patient 00297")
    scrolled = view.table.verticalScrollBar().value()
    assert scrolled > 0

    session.application.patients.create_patient({"name": "Aaron"}, actor=Actor("t", "api"))

    qtbot.waitUntil(lambda: model.total == 301)
    qtbot.waitUntil(lambda: model.rowCount() >= 300)  # all it had, not the first page
    assert model.data(model.index(0, 0)) == "Aaron"
    selected = view.table.selectionModel().selectedRows()
    assert [model.data(index) for index in selected] == ["Seeded Patient 00297"]
    assert abs(view.table.verticalScrollBar().value() - scrolled) <= 26  # one row at most
    assert session.patient_page.name.text() == "Seeded Patient 00297"


@pytest.mark.parametrize(
    ("column", "change", "first"),
    [
        ("status", {"status": "Critical"}, "Carla"),  # an analysis found something
        ("name", {"name": "Aaron"}, "Aaron"),  # a name corrected
        ("age", {"age": 20}, "Carla"),
    ],
)
def test_a_sorted_list_moves_a_patient_whose_sorted_value_changed(
    qtbot: QtBot, gui: GuiSession, column: str, change: dict[str, object], first: str
) -> None:
    """Sorted by status, a patient turned Critical stayed among the pending ones (their
    row changed where it was): a clinician looking down the Critical rows missed them."""
    actor = Actor("t", "api")
    # Heard before the list is sorted (a patient arriving in a sorted list reads it again).
    with qtbot.waitSignal(gui.bridge.patient_created, check_params_cb=lambda p: p.name == "Dora"):
        for name, age, status in (
            ("Bruno", 50, "Discharged"),
            ("Carla", 60, "Pending Analysis"),
            ("Dora", 70, "Stable"),
        ):
            gui.application.patients.create_patient(
                {"name": name, "age": age, "status": status}, actor=actor
            )
    carla = gui.application.patients.list_patients(search="Carla").items[0]
    gui.patients.refresh()
    view, model = gui.patient_list, gui.patient_list.model

    def names() -> list[str]:
        return [model.data(model.index(row, 0)) for row in range(model.rowCount())]

    qtbot.waitUntil(lambda: names() == ["Dora", "Carla", "Bruno"])  # newest first
    view.table.horizontalHeader().setSortIndicator(COLUMN_OF[column], Qt.SortOrder.AscendingOrder)
    qtbot.waitUntil(lambda: names() == ["Bruno", "Carla", "Dora"])

    gui.application.patients.update_patient(carla.id, change, actor=actor)

    qtbot.waitUntil(lambda: names() == [first, "Bruno", "Dora"])


def test_ten_thousand_patients_open_without_delay(qtbot: QtBot, make_gui: Maker) -> None:
    session = make_gui()
    seed_patients(session.application, 10_000)
    session.patients.refresh()
    model = session.patient_list.model
    qtbot.waitUntil(lambda: model.total == 10_000, timeout=5000)
    assert model.rowCount() == 200
    # One visible page in the selection: the page opens.
    session.patient_list.table.selectRow(3)
    qtbot.waitUntil(lambda: session.patient_page.patient is not None)
    assert session.patient_page.name.text() == "Seeded Patient 09996"


def test_a_long_list_still_fits_an_800_by_600_screen(qtbot: QtBot, make_gui: Maker) -> None:
    """With 10,000 patients, "Showing 200 of 10,000 patients (scroll for more)" on one
    line held the list wider: the window could not be narrower than about 860 px."""
    session = make_gui()
    seed_patients(session.application, 10_000)
    session.patients.refresh()
    qtbot.waitUntil(lambda: session.patient_list.model.total == 10_000)
    assert session.patient_list.count.text().startswith("Showing 200 of 10,000")
    session.window.resize(800, 600)
    qtbot.wait(50)
    assert session.window.width() <= 800
    assert session.patient_list.count.isVisible()
    count = session.patient_list.count
    assert count.heightForWidth(count.width()) <= count.height()  # wrapped, not cut off


def test_the_window_fits_an_800_by_600_screen(qtbot: QtBot, gui: GuiSession) -> None:
    patient = gui.application.patients.create_patient({"name": "Small"}, actor=Actor("t", "gui"))
    gui.patients.open_patient(patient.id)
    qtbot.waitUntil(lambda: gui.patient_page.patient is not None)
    for tab in ("analysis", "scans", "oculomics"):
        gui.patient_page.show_tab(tab)
        gui.window.resize(800, 600)
        qtbot.wait(50)
        assert gui.window.height() <= 600 and gui.window.width() <= 800, tab


def test_the_first_window_fits_a_screen_smaller_than_its_default_size(
    qtbot: QtBot, tmp_path: Path
) -> None:
    """The first start (no geometry remembered) opened the window at 1440 x 900 on any
    screen: on a 1024 x 768 one (here the test platform's 800 x 800) the patient page's
    right side, the job queue and the status bar were off the screen."""
    settings = make_settings(tmp_path, api_enabled=False, model_path=tmp_path / "none")
    desktop = Desktop(settings, tray=False)
    try:
        desktop.start()
        window = desktop.window
        qtbot.waitExposed(window)
        free = window.screen().availableGeometry()
        qtbot.waitUntil(lambda: free.contains(window.geometry()))
        assert window.isMaximized()
    finally:
        desktop.shutdown()


@pytest.mark.parametrize(
    ("size", "least_scale"), [((800, 600), 0.22), ((1024, 700), 0.25), ((1280, 800), 0.45)]
)
def test_a_scan_is_shown_large_in_a_small_window(
    qtbot: QtBot, gui: GuiSession, size: tuple[int, int], least_scale: float
) -> None:
    """A 768 x 496 B-scan fitted at 13 % at 1024 x 700 (32 % at 1280 x 800): the patient
    list kept its width, the thumbnail strip and a wrapped file name took the height.
    At 800 x 600 the column of thumbnails beside it left it 17 %."""
    patient = gui.application.patients.create_patient(
        {"name": "Small Window"},
        actor=Actor("t", "gui"),
        image=NewImage(
            oct_bscan(1), modality="OCT", laterality="OD", filename="a_long_name_" * 6 + ".png"
        ),
    )
    gui.window.resize(*size)
    gui.patients.open_patient(patient.id)
    gui.patient_page.show_tab("scans")
    viewer = gui.scan_viewer
    qtbot.waitUntil(lambda: viewer.canvas.has_image and viewer.zoom_label.text() != "")
    qtbot.waitUntil(lambda: (gui.window.width(), gui.window.height()) == size)
    qtbot.wait(50)  # the layout settles
    canvas = viewer.canvas
    assert canvas.scale_factor() == pytest.approx(canvas.fit_scale())  # fitted
    assert canvas.scale_factor() >= least_scale
    # The page, not the list, has most of the width; the file name takes one line.
    assert gui.patient_page.width() > 0.6 * gui.window.width()
    assert viewer.info.height() < 2 * viewer.info.fontMetrics().lineSpacing()


@pytest.mark.parametrize(
    ("size", "compact"), [((800, 600), True), ((1024, 700), False), ((1280, 800), False)]
)
def test_the_thumbnail_column_gives_way_to_the_image_in_a_small_window(
    qtbot: QtBot, gui: GuiSession, size: tuple[int, int], compact: bool
) -> None:
    """At 800 x 600 the column took ~140 of the viewer's ~290 px, and a B-scan beside it
    got less than half the width: there the column is compact (smaller pictures, no
    labels); in larger windows it is as it was. Every thumbnail stays reachable."""
    app, actor = gui.application, Actor("t", "gui")
    patient = app.patients.create_patient(
        {"name": "Three Scans"},
        actor=actor,
        image=NewImage(oct_bscan(1), modality="OCT", laterality="OD"),
    )
    for seed, eye in ((2, "OS"), (3, "OD")):
        app.patients.attach_image(
            patient.id, NewImage(oct_bscan(seed), modality="OCTA", laterality=eye), actor=actor
        )
    gui.window.resize(*size)
    gui.patients.open_patient(patient.id)
    gui.patient_page.show_tab("scans")
    viewer = gui.scan_viewer
    thumbnails = viewer.thumbnails
    qtbot.waitUntil(lambda: viewer.canvas.has_image and thumbnails.count() == 3)
    qtbot.waitUntil(lambda: (gui.window.width(), gui.window.height()) == size)
    qtbot.wait(50)  # the layout settles

    assert viewer.compact_thumbnails is compact
    labels = [thumbnails.item(row).text() for row in range(3)]
    shown_width = viewer.canvas.scale_factor() * 768  # the B-scan as fitted
    if compact:
        assert labels == ["", "", ""]
        assert thumbnails.width() < 0.35 * viewer.width()
        assert shown_width > 0.55 * viewer.width()  # was 0.45
    else:  # as before: the full column, with each scan's two-line label
        assert thumbnails.iconSize().width() == THUMB_SIZE
        assert thumbnails.gridSize().width() == THUMB_SIZE + THUMB_SIDE_ROOM
        assert all(len(label.splitlines()) == 2 for label in labels)
    assert viewer.current_scan_id() == thumbnails.item(0).data(Qt.ItemDataRole.UserRole)
    for row in (1, 2, 0):  # each can be scrolled to, shown whole, described and chosen
        item = thumbnails.item(row)
        thumbnails.scrollToItem(item)
        rect = thumbnails.visualItemRect(item)
        assert thumbnails.viewport().rect().contains(rect), row
        assert "OCT" in item.toolTip()
        with qtbot.waitSignal(viewer.scan_chosen) as chosen:
            qtbot.mouseClick(thumbnails.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        assert chosen.args == [item.data(Qt.ItemDataRole.UserRole)]


@pytest.mark.parametrize("size", [(800, 600), (1024, 700)])
def test_the_brightness_and_contrast_sliders_have_room(
    qtbot: QtBot, gui: GuiSession, size: tuple[int, int]
) -> None:
    """At 800 x 600 the labels and Reset beside them left each slider about its handle's
    width (~20 px): there they go one a row."""
    patient = gui.application.patients.create_patient(
        {"name": "Sliders"},
        actor=Actor("t", "gui"),
        image=NewImage(oct_bscan(1), modality="OCT", laterality="OD"),
    )
    gui.window.resize(*size)
    gui.patients.open_patient(patient.id)
    gui.patient_page.show_tab("scans")
    viewer = gui.scan_viewer
    qtbot.waitUntil(lambda: viewer.canvas.has_image)
    qtbot.waitUntil(lambda: (gui.window.width(), gui.window.height()) == size)
    qtbot.wait(50)  # the layout settles
    for slider in (viewer.brightness, viewer.contrast):
        assert slider.isVisible() and slider.width() >= 80, (slider.objectName(), slider.width())
        right = slider.mapTo(viewer, slider.rect().topRight()).x()
        assert right <= viewer.width()


def _right_edge_in(scroll: QScrollArea, widget: QWidget) -> int:
    """Where ``widget``'s right edge is in the scroll area's viewport."""
    return widget.mapTo(scroll.viewport(), QPoint(widget.width(), 0)).x()


def test_the_analysis_fits_a_window_made_smaller_while_another_tab_was_in_front(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """Shrunk from 1280 x 720 to 1024 x 640 with the Oculomics tab in front, the
    Analysis tab came back laid out for the wider window: the result card ran past its
    right edge, the PRELIMINARY badge and the findings cut off, with no scroll bar."""
    gui = make_gui(engine=ScriptedEngine(DME))
    patient = gui.application.patients.create_patient(
        {"name": "Shrunk Window"},
        actor=Actor("t", "gui"),
        image=NewImage(oct_bscan(1), modality="OCT"),
    )
    gui.window.resize(1280, 720)
    open_patient(qtbot, gui, patient.id)
    gui.patient_page.show_tab("analysis")
    view = gui.analysis_view
    view.analyse.click()
    qtbot.waitUntil(lambda: view.card.isVisible() and view.approve.isEnabled())
    qtbot.waitUntil(lambda: gui.window.width() == 1280)
    page = gui.patient_page  # the result heard of: the patient's status changed too
    qtbot.waitUntil(lambda: page.patient is not None and page.patient.status == "Critical")
    scroll = view.findChild(QScrollArea)
    wide = scroll.viewport().width()

    gui.patient_page.show_tab("oculomics")
    gui.window.resize(1024, 640)
    qtbot.waitUntil(lambda: gui.window.width() == 1024)
    gui.patient_page.show_tab("analysis")

    qtbot.waitUntil(lambda: scroll.viewport().width() < wide)
    qtbot.waitUntil(lambda: _right_edge_in(scroll, view.card) <= scroll.viewport().width())
    assert _right_edge_in(scroll, view.card.badge) <= scroll.viewport().width()


@pytest.mark.parametrize(("size", "narrow"), [((1024, 700), True), ((1280, 800), False)])
def test_the_analysis_and_oculomics_tabs_do_not_scroll_sideways(
    qtbot: QtBot, make_gui: Maker, size: tuple[int, int], narrow: bool
) -> None:
    """At 1024 x 700 both scrolled sideways: the validation and the appointment side by
    side hid Approve and Schedule; the charts two a row and the form beside the table
    hid the right-hand charts, the form and most of the table's columns."""
    gui = make_gui(engine=ScriptedEngine(DME))
    app, actor = gui.application, Actor("t", "gui")
    patient = app.patients.create_patient(
        {"name": "Narrow Window"}, actor=actor, image=NewImage(oct_bscan(1), modality="OCT")
    )
    measure_three_visits(app, patient.id, actor, eyes=("OD",))
    gui.window.resize(*size)
    open_patient(qtbot, gui, patient.id)
    gui.patient_page.show_tab("analysis")
    view = gui.analysis_view
    view.analyse.click()
    qtbot.waitUntil(lambda: view.card.isVisible())
    view.provenance_toggle.setChecked(True)
    qtbot.waitUntil(lambda: (gui.window.width(), gui.window.height()) == size)
    qtbot.wait(50)  # the layout settles

    scroll = view.findChild(QScrollArea)
    assert scroll.horizontalScrollBar().maximum() == 0
    for button in (view.approve, view.schedule, view.card.copy, view.analyse):
        assert _right_edge_in(scroll, button) <= scroll.viewport().width(), button.text()
    assert view.actions_side_by_side is not narrow  # as before where there is room

    gui.patient_page.show_tab("oculomics")
    ocu = gui.oculomics_view
    qtbot.waitUntil(lambda: ocu.table.rowCount() == 3)
    qtbot.wait(50)
    assert ocu.scroll_area.horizontalScrollBar().maximum() == 0
    assert ocu.table.horizontalScrollBar().maximum() == 0
    for widget in (*ocu.charts.values(), ocu.add_button, ocu.table, ocu.trends):
        assert _right_edge_in(ocu.scroll_area, widget) <= ocu.scroll_area.viewport().width()
    assert ocu.chart_columns == (1 if narrow else 2)
    # The columns but the flags show their values whole; the flags, cut short where the
    # table is narrow, are whole in their tooltips.
    flags = len(ocu.TABLE_COLUMNS) - 1
    metrics = ocu.table.fontMetrics()
    for column in range(flags):
        widest = max(metrics.horizontalAdvance(ocu.table.item(r, column).text()) for r in range(3))
        assert ocu.table.columnWidth(column) > widest, ocu.TABLE_COLUMNS[column]
    newest = ocu.table.item(0, flags)
    assert newest.toolTip() == newest.text() and "IOP high" in newest.text()
    for row in range(ocu.trends.rowCount()):
        for column in range(ocu.trends.columnCount()):
            text = ocu.trends.item(row, column).text()
            assert ocu.trends.columnWidth(column) > metrics.horizontalAdvance(text), text


def _scrolling_sideways(window: QWidget) -> list[str]:
    """The shown lists, tables and scrolling panes of ``window`` that scroll sideways."""
    return [
        f"{type(area).__name__} {area.objectName()}: {area.horizontalScrollBar().maximum()} px"
        for area in window.findChildren(QAbstractScrollArea)
        if area.isVisible() and area.horizontalScrollBar().maximum() > 0
    ]


@pytest.mark.parametrize("size", [(800, 600), (1024, 700), (1024, 768)])
def test_nothing_scrolls_sideways_in_a_small_window(
    qtbot: QtBot, make_gui: Maker, size: tuple[int, int]
) -> None:
    """At 800 x 600 the oculomics tab scrolled sideways (its charts wider than the tab);
    at 1024 px the patient list, the job queue and the notifications did (their columns
    and lines wider than the panes). Columns that do not fit give way, lines are cut
    short, so the clinician never scrolls sideways to read a row."""
    gui = make_gui(engine=ScriptedEngine(DME))
    app, actor = gui.application, Actor("t", "gui")
    seed_patients(app, 40)
    patient = app.patients.create_patient(
        {"name": "Maximiliane Theodora Wolkenstein-Rabensberg"},
        actor=actor,
        image=NewImage(oct_bscan(1), modality="OCT", laterality="OD"),
    )
    measure_three_visits(app, patient.id, actor, eyes=("OD", "OS"))
    app.notifications.create_notification(
        "Watch folder: 3 files were not taken in (not an image): scan_0001_export.dcm, "
        "scan_0002_export.dcm, scan_0003_export.dcm",
        actor=actor,
    )
    gui.window.resize(*size)
    gui.patients.refresh()
    open_patient(qtbot, gui, patient.id)
    view = gui.analysis_view
    view.analyse.click()
    qtbot.waitUntil(lambda: view.card.isVisible())
    qtbot.waitUntil(lambda: gui.notifications_panel.model.rowCount() == 2)
    qtbot.waitUntil(lambda: (gui.window.width(), gui.window.height()) == size)

    for tab in ("analysis", "scans", "oculomics"):
        gui.patient_page.show_tab(tab)
        qtbot.wait(100)  # the layout settles
        sideways = _scrolling_sideways(gui.window)
        assert sideways == [], f"{tab} tab: " + "; ".join(sideways)
    # The list gave the page its room: the details stay beside the tabs at this font.
    assert gui.patient_page.details_beside_tabs
    table = gui.patient_list.table
    for key in ("name", "status"):  # the list still says who and how they are
        assert not table.isColumnHidden(COLUMN_OF[key]), key
    assert table.columnWidth(COLUMN_OF["name"]) >= 80
    assert table.isColumnHidden(COLUMN_OF["appointment_date"])  # no room for it here
    notes = [a.text() for a in gui.patient_list.column_menu().actions() if not a.isEnabled()]
    assert len(notes) == 1 and "Appointment" in notes[0] and "widen the list" in notes[0]


def test_the_window_comes_up_without_torch(tmp_path: Path) -> None:
    """Heavy modules are imported when the model loads, not for the window."""
    script = textwrap.dedent(
        f"""
        import os, sys
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        from PySide6.QtWidgets import QApplication
        app = QApplication([])
        from ophthai_desktop.core.settings import Settings
        from ophthai_desktop.desktop import Desktop
        desktop = Desktop(Settings(data_dir={str(tmp_path)!r}, api_port=0, _env_file=None))
        desktop.start()
        for _ in range(20):
            app.processEvents()
        heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
        desktop.shutdown()
        print("HEAVY", heavy)
        """
    )
    # The window's state (QSettings) goes to the test's folder, not the user's config.
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="thread names from /proc")
def test_the_window_paints_without_qts_thread_pool() -> None:
    """Large fills are painted on the GUI thread, not handed to Qt's GUI thread pool
    and waited for: with the worker and the API busy, the pool's threads wait for a
    core while the GUI thread waits for them (README, bench/gui_stall.py)."""
    script = textwrap.dedent(
        """
        import glob, os
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        os.environ.pop("QT_NO_GUI_THREADPOOL", None)
        from PySide6.QtWidgets import QPlainTextEdit, QTabWidget
        from ophthai_desktop.desktop import qt_application
        app = qt_application()
        tabs = QTabWidget()
        tabs.addTab(QPlainTextEdit("line\\n" * 500), "Analysis")
        tabs.resize(900, 800)
        tabs.show()
        app.processEvents()
        for _ in range(5):
            tabs.repaint()
        names = [open(p).read().strip() for p in glob.glob("/proc/self/task/*/comm")]
        print("POOLED", sum(name == "Thread (pooled)" for name in names))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "POOLED 0" in done.stdout


def test_the_views_paint_what_the_rows_hold_without_running_python(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """Delegates read text, status dot and bold unread notifications from the items;
    repainting the lists calls no Python (which would wait for the interpreter lock
    under load)."""
    import sys

    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QStyledItemDelegate, QStyleOptionViewItem

    from ophthai_desktop.core.records import Actor
    from ophthai_desktop.core.services.patients import NewImage
    from tests.support.images import png_bytes

    actor = Actor("t", "gui")
    patient = gui.application.patients.create_patient(
        {"name": "Painted", "age": 70}, actor=actor, image=NewImage(png_bytes())
    )
    gui.application.notifications.create_notification("Unread one", actor=actor)
    gui.application.jobs.queue_patient_analysis(patient.id, actor=actor)
    patients = gui.patient_list.model
    notes = gui.notifications_panel.model
    jobs = gui.jobs_panel.model
    qtbot.waitUntil(lambda: (patients.rowCount(), notes.rowCount(), jobs.rowCount()) == (1, 1, 1))
    delegate = QStyledItemDelegate()

    def option_for(index: object) -> QStyleOptionViewItem:
        option = QStyleOptionViewItem()
        delegate.initStyleOption(option, index)
        return option

    assert option_for(patients.index(0, 0)).text == "Painted"
    assert option_for(patients.index(0, COLUMN_OF["age"])).text == "70"
    status = option_for(patients.index(0, COLUMN_OF["status"]))
    assert status.text == "Pending Analysis"
    assert isinstance(status.icon, QIcon) and not status.icon.isNull()
    note = option_for(notes.index(0, 0))
    assert note.text.startswith("Unread one") and note.font.bold()
    assert option_for(jobs.index(0, 2)).text == "queued"

    calls: list[str] = []

    def profile(frame: object, event: str, _arg: object) -> None:
        if event == "call":
            calls.append(frame.f_code.co_qualname)  # type: ignore[attr-defined]

    views = (gui.patient_list.table, gui.notifications_panel.list, gui.jobs_panel.table)
    sys.setprofile(profile)
    try:
        for view in views:
            view.viewport().repaint()
    finally:
        sys.setprofile(None)
    assert calls == [], calls


def _sigterm_on(
    marker: str, args: list[str], tmp_path: Path, timeout_s: float, **env: str
) -> tuple[int, str, float]:
    """Start the app (``python args...``), send SIGTERM once ``marker`` shows on its
    stderr; its exit status, the rest of its stderr and the seconds it took to exit."""
    environment = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "QT_QPA_PLATFORM": "offscreen",
        "OPHTHAI_API_PORT": "0",
        **env,
    }
    with subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    ) as process:
        assert process.stderr is not None
        try:
            seen = []
            for line in process.stderr:
                seen.append(line)
                if marker in line:
                    signalled = time.monotonic()
                    process.send_signal(signal.SIGTERM)
                    break
            else:
                pytest.fail(f"the app ended before {marker!r}:\n{''.join(seen)}")
            _, rest = process.communicate(timeout=timeout_s)
            took = time.monotonic() - signalled
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return process.returncode, rest, took


def test_sigterm_right_after_the_window_shows_quits(tmp_path: Path) -> None:
    """A SIGTERM that lands before Qt's event loop runs must not be lost."""
    status, rest, _ = _sigterm_on(
        "desktop window shown",
        ["-m", "ophthai_desktop", "--data-dir", str(tmp_path / "data")],
        tmp_path,
        timeout_s=20,
    )
    assert status == 0, rest


def test_closing_during_a_model_load_hides_at_once_and_does_not_wait_for_it(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model load cannot be interrupted; closing must not freeze the window for it."""
    release = threading.Event()
    engine = ScriptedEngine(NORMAL, state="installed", load_hold=release)
    session = make_gui(engine=engine)
    worker = session.application.worker
    seen: dict[str, object] = {}
    wait_stopped = worker.wait_stopped

    def observed(running: Callable[[], bool], timeout_s: float = 30.0) -> bool:
        seen["visible while waiting"] = session.window.isVisible()
        started = time.monotonic()
        stopped = wait_stopped(running, timeout_s)
        seen["waited"] = time.monotonic() - started
        return stopped

    monkeypatch.setattr(worker, "wait_stopped", observed)
    try:
        worker.request_load()
        qtbot.waitUntil(lambda: engine.state == "loading")
        session.shutdown()
        assert seen["visible while waiting"] is False  # gone before the wait
        assert LOAD_STOP_WAIT_S <= seen["waited"] < LOAD_STOP_WAIT_S + 1.5  # type: ignore[operator]
        assert session.inference.isRunning()  # the load goes on; it only reads files
    finally:
        release.set()
    qtbot.waitUntil(lambda: not session.inference.isRunning())


def test_quitting_the_app_during_a_model_load_exits_promptly_and_cleanly(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """The real app, quit (SIGTERM) while its model load hangs: it used to wait 60 s and
    then abort (a QThread destroyed while running)."""
    script = textwrap.dedent(
        """
        import sys, time
        from ophthai_desktop.core.inference import engine

        def hanging_load(self, install):
            print("MODEL LOAD STARTED", file=sys.stderr, flush=True)
            time.sleep(600)

        engine.InferenceEngine._load = hanging_load
        from ophthai_desktop.__main__ import main
        sys.exit(main(["--data-dir", sys.argv[1]]))
        """
    )
    status, rest, took = _sigterm_on(
        "MODEL LOAD STARTED",
        ["-c", script, str(tmp_path / "data")],
        tmp_path,
        timeout_s=30,
        OPHTHAI_MODEL_PATH=str(tiny_checkpoint),
        OPHTHAI_DEVICE="cpu",
        OPHTHAI_LOAD_MODEL_ON_STARTUP="true",
    )
    assert status == 0, rest
    assert "exiting without waiting for the inference worker" in rest
    assert took < 15, took


def test_a_lock_left_by_a_killed_window_does_not_keep_the_app_out(tmp_path: Path) -> None:
    data = tmp_path / "data"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from ophthai_desktop.desktop import instance_lock; "
            "from pathlib import Path; lock = instance_lock(Path(sys.argv[1])); "
            "print(lock.tryLock(0), flush=True); time.sleep(60)",
            str(data),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
    holder.kill()  # no chance to let go of it
    holder.communicate()
    assert (data / INSTANCE_LOCK).exists()

    status, rest, _ = _sigterm_on(
        "desktop window shown",
        ["-m", "ophthai_desktop", "--data-dir", str(data)],
        tmp_path,
        timeout_s=20,
    )
    assert status == 0, rest
    assert not (data / INSTANCE_LOCK).exists()  # let go of at exit


def test_the_empty_page_s_hint_wraps_as_one_paragraph(qtbot: QtBot, make_gui: Maker) -> None:
    """Its hard line break left "here" alone on a line where the page is narrow (an
    800x600 window)."""
    hint = make_gui().patient_page.empty
    text = hint.text().replace("\n", "\u2028")  # as QLabel lays out a line break
    for width in range(240, 760, 4):
        layout = QTextLayout(text, hint.font())
        option = QTextOption()
        option.setWrapMode(QTextOption.WrapMode.WordWrap)
        layout.setTextOption(option)
        layout.beginLayout()
        lines = []
        while (line := layout.createLine()).isValid():
            line.setLineWidth(width)
            lines.append(text[line.textStart() : line.textStart() + line.textLength()].strip())
        layout.endLayout()
        lone = [words for words in lines[:-1] if len(words.split()) == 1]
        assert lone == [], f"at {width} px: {lines}"
