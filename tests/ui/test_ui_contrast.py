"""Text the window draws in colour is readable: WCAG AA's 4.5:1 against what it is drawn
on, as drawn (the stylesheet resolved), in the light and the dark theme."""

from __future__ import annotations

from collections import Counter

from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QLabel,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from pytestqt.qtbot import QtBot

from ophthai_desktop.core.records import Actor
from ophthai_desktop.ui.models.job_table import STATE_COLUMN, JobRow
from ophthai_desktop.ui.session import GuiSession
from ophthai_desktop.ui.theme import apply_theme
from ophthai_desktop.ui.views.style import set_style_property
from tests.support.colours import AA_TEXT, contrast
from tests.ui.conftest import Maker, open_patient

AA = AA_TEXT


def drawn_contrast(widget: QWidget) -> tuple[float, str, str]:
    """The contrast of a shown widget's text as the window draws it: the commonest
    pixel (the background) against the pixel that differs most from it (the core of a
    glyph). The edges are left out (rounded corners show what is behind)."""
    window = widget.window()
    image = window.grab(QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())).toImage()
    return image_contrast(image)


def image_contrast(image: QImage) -> tuple[float, str, str]:
    """:func:`drawn_contrast` of a picture of the widget."""
    inset_x, inset_y = min(8, image.width() // 4), min(3, image.height() // 4)
    pixels = [
        image.pixelColor(x, y).rgb()
        for x in range(inset_x, image.width() - inset_x)
        for y in range(inset_y, image.height() - inset_y)
    ]
    background = QColor.fromRgb(Counter(pixels).most_common(1)[0][0])

    def distance(rgb: int) -> int:
        c = QColor.fromRgb(rgb)
        return sum(abs(a - b) for a, b in zip(c.getRgb()[:3], background.getRgb()[:3], strict=True))

    ink = QColor.fromRgb(max(pixels, key=distance))
    return contrast(background, ink), ink.name(), background.name()


def _patient(gui: GuiSession, qtbot: QtBot) -> None:
    record = gui.application.patients.create_patient(
        {"name": "Ada Contrast", "age": 60}, actor=Actor("Dr. Test", "gui")
    )
    open_patient(qtbot, gui, record.id)
    gui.patient_page.show_tab("analysis")
    gui.analysis_view.card.show()


def _unreadable(gui: GuiSession) -> list[str]:
    """Each text the stylesheet colours by state that is under AA, in every state:
    'what: ratio ink on background'."""
    bad: list[str] = []

    def check(what: str, widget: QWidget) -> None:
        QApplication.processEvents()
        ratio, ink, background = drawn_contrast(widget)
        if ratio < AA:
            bad.append(f"{what}: {ratio:.2f} {ink} on {background}")

    pill = gui.patient_page.status
    for status in ("Critical", "Stable", "Pending Analysis", "Discharged", "Unknown"):
        pill.setText(status)
        set_style_property(pill, "status", status)
        check(f"status pill {status}", pill)
    badge = gui.analysis_view.card.badge
    for status, text in (
        ("", "PRELIMINARY"),
        ("approved", "APPROVED"),
        ("rejected", "REJECTED"),
        ("parse_failed", "UNREADABLE"),
    ):
        badge.setText(text)
        set_style_property(badge, "status", status)
        check(f"verdict badge {text}", badge)
    stepper = gui.patient_page.stepper
    for step in (1, 2, 3, 4):
        stepper.set_step(step)
        for dot, label in zip(stepper._dots, stepper._labels, strict=True):
            state = dot.property("state")
            check(f"step dot {dot.text()} ({state})", dot)
            check(f"step label {label.text()} ({state})", label)
    status = gui.window.status
    for kind in ("ok", "warn", "error", ""):
        status.set_model(f"Model: {kind or 'plain'} state", kind, "")
        check(f"status bar {kind or 'plain'}", status.model)
    check("empty hint", gui.jobs_panel.body.hint)
    manager = gui.model_manager.open()
    for kind in ("ok", "warn", "error"):
        set_style_property(manager.state, "kind", kind)
        check(f"model manager state {kind}", manager.state)
    manager.close()
    return bad


def test_coloured_text_is_readable_in_the_light_theme(qtbot: QtBot, gui: GuiSession) -> None:
    """White on the orange of PRELIMINARY and Pending Analysis was 2.4:1; the status
    bar's warning 3.9, the empty lists' hints 4.1."""
    _patient(gui, qtbot)
    bad = _unreadable(gui)
    assert bad == [], "\n".join(bad)


def test_coloured_text_is_readable_in_the_dark_theme(qtbot: QtBot, gui: GuiSession) -> None:
    """The stepper's and the status bar's greens, blues and reds were the light theme's,
    2.4 to 3.8:1 on the dark background."""
    _patient(gui, qtbot)
    try:
        apply_theme("dark")
        bad = _unreadable(gui)
        assert bad == [], "\n".join(bad)
    finally:
        apply_theme("light")


def _unreadable_job_states(qtbot: QtBot, gui: GuiSession) -> list[str]:
    model, table = gui.jobs_panel.model, gui.jobs_panel.table
    states = ("queued", "running", "done", "failed", "cancelled")
    for job_id, state in enumerate(states, start=1):
        model.upsert(JobRow(job_id, None, state, 0, "2026-01-01 09:00", "", "Ada Contrast"))
    qtbot.waitUntil(lambda: table.isVisible())
    table.clearSelection()
    bad = []
    for position in range(model.rowCount()):
        index = model.index(position, STATE_COLUMN)
        rect = table.visualRect(index)
        window = table.window()
        origin = table.viewport().mapTo(window, rect.topLeft())
        image = window.grab(QRect(origin, rect.size())).toImage()
        pixels = [
            image.pixelColor(x, y).rgb()
            for x in range(2, image.width() - 2)
            for y in range(2, image.height() - 2)
        ]
        background = QColor.fromRgb(Counter(pixels).most_common(1)[0][0])
        ink = QColor.fromRgb(max(pixels, key=lambda rgb: _distance(rgb, background)))
        ratio = contrast(background, ink)
        if ratio < AA:
            bad.append(f"{index.data()}: {ratio:.2f} {ink.name()} on {background.name()}")
    return bad


def _distance(rgb: int, background: QColor) -> int:
    c = QColor.fromRgb(rgb)
    return sum(abs(a - b) for a, b in zip(c.getRgb()[:3], background.getRgb()[:3], strict=True))


def test_job_states_are_readable_in_either_theme(qtbot: QtBot, gui: GuiSession) -> None:
    """The queue's state column kept the light theme's colours in the dark one (done
    2.9:1, running 2.6, failed 2.6)."""
    assert _unreadable_job_states(qtbot, gui) == []
    try:
        apply_theme("dark")
        bad = _unreadable_job_states(qtbot, gui)
        assert bad == [], "\n".join(bad)
    finally:
        apply_theme("light")
    assert _unreadable_job_states(qtbot, gui) == []


def test_job_states_are_readable_when_the_app_starts_dark(qtbot: QtBot, make_gui: Maker) -> None:
    try:
        gui = make_gui(theme="dark")
        bad = _unreadable_job_states(qtbot, gui)
        assert bad == [], "\n".join(bad)
    finally:
        apply_theme("light")


def _unreadable_placeholders(gui: GuiSession) -> list[str]:
    """Each placeholder (a line edit's and a text box's, as typed in and as marked
    invalid) under AA: 'what: ratio ink on background'."""
    gui.patient_list.table.setFocus()  # no text cursor drawn over the placeholder
    gui.analysis_view.verdict_group.setEnabled(True)  # as it is once there is a result
    bad: list[str] = []
    for what, widget in (
        ("search", gui.patient_list.search),
        ("verdict notes", gui.analysis_view.notes),
    ):
        assert widget.placeholderText() and not widget.hasFocus()
        for invalid in (False, True):
            set_style_property(widget, "invalid", invalid)
            QApplication.processEvents()
            # The widget drawn on its own: the notes are further down the tab than
            # the window shows.
            ratio, ink, background = image_contrast(widget.grab().toImage())
            if ratio < AA:
                state = " (invalid)" if invalid else ""
                bad.append(f"{what} placeholder{state}: {ratio:.2f} {ink} on {background}")
        set_style_property(widget, "invalid", False)
    return bad


def test_placeholders_are_readable_in_either_theme(qtbot: QtBot, gui: GuiSession) -> None:
    """With the stylesheet's text colour, Qt draws a placeholder in that colour at half
    opacity: 4.0:1 on the light theme's white, 4.2:1 on the dark theme's fields."""
    _patient(gui, qtbot)
    try:
        for theme in ("light", "dark"):
            apply_theme(theme)
            bad = _unreadable_placeholders(gui)
            assert bad == [], f"{theme}:\n" + "\n".join(bad)
    finally:
        apply_theme("light")


def _loud_steps_to_do(gui: GuiSession) -> list[str]:
    """The stepper at step 2: each step to do (its circle, the line to it) that stands
    out from the page more than the current step's circle and the done line do."""
    stepper = gui.patient_page.stepper
    stepper.set_step(2)
    QApplication.processEvents()
    window = stepper.window()

    def fill(widget: QWidget) -> QColor:
        """The commonest colour the widget is drawn in (a circle's or a line's)."""
        image = window.grab(QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())).toImage()
        pixels = [
            image.pixelColor(x, y).rgb()
            for x in range(image.width())
            for y in range(image.height())
        ]
        return QColor.fromRgb(Counter(pixels).most_common(1)[0][0])

    page = fill(stepper)
    loudest_shown = min(
        contrast(fill(stepper._dots[1]), page), contrast(fill(stepper._lines[0]), page)
    )
    loud = []
    for what, widget in (
        ("circle 3", stepper._dots[2]),
        ("circle 4", stepper._dots[3]),
        ("line to 3", stepper._lines[1]),
        ("line to 4", stepper._lines[2]),
    ):
        ratio = contrast(fill(widget), page)
        if ratio >= loudest_shown:
            loud.append(f"{what}: {ratio:.1f}:1 against the current/done {loudest_shown:.1f}:1")
    return loud


def test_the_steps_still_to_do_are_the_quiet_ones_in_either_theme(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """In the dark theme the steps to do kept the light theme's pale grey: a white line
    and white circles, the loudest part of the stepper (13:1 on the dark page, against
    the current step's 2.9:1)."""
    _patient(gui, qtbot)
    try:
        for theme in ("light", "dark"):
            apply_theme(theme)
            loud = _loud_steps_to_do(gui)
            assert loud == [], f"{theme}:\n" + "\n".join(loud)
    finally:
        apply_theme("light")


class QBalloonTip(QWidget):
    """Stands in for Qt's private balloon of the same class name, which shows the tray
    messages where the desktop has a tray but no notification service (X11): always
    pale yellow (#ffffe1); its labels take their colour from the application."""

    def __init__(self) -> None:
        super().__init__()
        self.setAutoFillBackground(True)
        palette = self.palette()
        palette.setColor(self.backgroundRole(), QColor("#ffffe1"))
        self.setPalette(palette)
        layout = QVBoxLayout(self)
        self.title = QLabel("OphthAI is still running")
        self.message = QLabel("Analyses and the watch folder carry on.")
        layout.addWidget(self.title)
        layout.addWidget(self.message)


def test_a_tray_message_is_readable_in_the_dark_theme(qtbot: QtBot) -> None:
    """Under Xvfb with a tray (trayer), the dark theme's light text on the balloon's pale
    yellow was 1.2:1: the critical-finding message could not be read."""
    try:
        apply_theme("dark")
        balloon = QBalloonTip()
        qtbot.addWidget(balloon)
        balloon.show()
        qtbot.waitExposed(balloon)
        for label in (balloon.title, balloon.message):
            text = label.palette().color(label.foregroundRole())
            ratio = contrast(text, QColor("#ffffe1"))
            assert ratio >= AA, f"{label.text()}: {text.name()} on #ffffe1 is {ratio:.1f}:1"
    finally:
        apply_theme("light")


def test_disabled_labels_and_check_boxes_look_disabled_in_either_theme(qtbot: QtBot) -> None:
    """In the dark theme a disabled label's or check box's text was drawn as bright as an
    enabled one's (the validation form's Clinician and Notes before there is a result to
    validate, Settings' tray box where there is no tray): the control looked usable and
    did nothing. It is dimmer than the enabled one's, as in the light theme."""
    try:
        for theme in ("light", "dark"):
            apply_theme(theme)
            for kind in (QLabel, QCheckBox):
                host = QWidget()
                qtbot.addWidget(host)
                layout = QVBoxLayout(host)
                enabled, disabled = kind("Clinician WWWW"), kind("Clinician WWWW")
                disabled.setEnabled(False)
                layout.addWidget(enabled)
                layout.addWidget(disabled)
                host.show()
                qtbot.waitExposed(host)
                on, off = drawn_contrast(enabled)[0], drawn_contrast(disabled)[0]
                assert off < on / 1.5, f"{theme} {kind.__name__}: {off:.1f}:1 vs {on:.1f}:1"
    finally:
        apply_theme("light")


def test_the_confidence_bar_follows_the_dark_theme(qtbot: QtBot, gui: GuiSession) -> None:
    """In the dark theme the result card's confidence bar kept the light look's trough,
    #eef2f5: a white bar on the dark card. Its trough is dark there, and its figure
    readable over the trough and over the filled part, in either theme."""
    _patient(gui, qtbot)
    bar = gui.analysis_view.card.confidence
    try:
        for theme in ("light", "dark"):
            apply_theme(theme)
            for value in (30, 87):  # the figure over the trough, then over the chunk
                bar.setValue(value)
                bar.setFormat(f"{value}% confidence")
                QApplication.processEvents()
                image = bar.grab().toImage()
                trough = image.pixelColor(image.width() - 6, image.height() // 2)
                ratio, ink, background = drawn_contrast(bar)
                assert ratio >= AA, f"{theme} {value}%: {ratio:.2f} {ink} on {background}"
                if theme == "dark":
                    assert trough.lightnessF() < 0.3, f"dark trough {trough.name()}"
    finally:
        apply_theme("light")


#: WCAG's least contrast of a control's parts, a focus indicator among them (1.4.11).
AA_NON_TEXT = 3.0


def _focus_ring_contrast(qtbot: QtBot, kind: type[QWidget]) -> tuple[float, str, str]:
    """The contrast of the ring that marks the button the keyboard is on, as drawn:
    the pixel that most differs between the button with the focus (reached by Tab) and
    without it, against the window behind."""
    host = QWidget()
    qtbot.addWidget(host)
    layout = QVBoxLayout(host)
    first, second = kind(), kind()
    for button in (first, second):
        button.setText("Analyse")
        layout.addWidget(button)
    host.show()
    qtbot.waitExposed(host)
    host.activateWindow()
    first.setFocus()
    qtbot.waitUntil(first.hasFocus)
    without = second.grab().toImage()
    qtbot.keyClick(first, Qt.Key.Key_Tab)  # Qt draws the ring after a key moved the focus
    qtbot.waitUntil(second.hasFocus)
    QApplication.processEvents()
    with_focus = second.grab().toImage()

    def change(x: int, y: int) -> int:
        a, b = with_focus.pixelColor(x, y), without.pixelColor(x, y)
        return sum(abs(p - q) for p, q in zip(a.getRgb()[:3], b.getRgb()[:3], strict=True))

    points = [(x, y) for x in range(with_focus.width()) for y in range(with_focus.height())]
    ring = with_focus.pixelColor(*max(points, key=lambda point: change(*point)))
    behind = host.grab().toImage().pixelColor(1, 1)
    return contrast(ring, behind), ring.name(), behind.name()


def test_the_keyboard_focus_shows_on_buttons_in_either_theme(qtbot: QtBot) -> None:
    """In the dark theme the ring round the focused button was drawn in the selection's
    dark teal, #1d4555 on the window's #1e2226 (1.5:1): a clinician moving by Tab could
    not see which button Space would press. It stands out 3:1 at least, as in the light
    theme (4.6:1)."""
    try:
        for theme in ("light", "dark"):
            apply_theme(theme)
            for kind in (QPushButton, QToolButton, QCheckBox):
                ratio, ring, behind = _focus_ring_contrast(qtbot, kind)
                assert ratio >= AA_NON_TEXT, (
                    f"{theme} {kind.__name__}: {ratio:.2f} {ring} on {behind}"
                )
    finally:
        apply_theme("light")
