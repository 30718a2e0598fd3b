"""The main window: patient list beside the patient page, notifications and the job
queue docked below, menus, toolbar and status bar. Files dropped anywhere on it are
offered to the import controller."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal, Slot
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QFont,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QMainWindow,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from ophthai_desktop.ui.resources import icon
from ophthai_desktop.ui.views.banner import Banner
from ophthai_desktop.ui.views.jobs import JobQueuePanel
from ophthai_desktop.ui.views.notifications import NotificationsPanel
from ophthai_desktop.ui.views.patient_list import PatientListView
from ophthai_desktop.ui.views.patient_page import PatientPage
from ophthai_desktop.ui.views.status_bar import AppStatusBar
from ophthai_desktop.ui.views.toast import Toast


def local_files(event: QDragEnterEvent | QDragMoveEvent | QDropEvent) -> list[Path]:
    """The local files a drag carries (URLs of other kinds are ignored)."""
    mime = event.mimeData()
    if not mime.hasUrls():
        return []
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]


class MainWindow(QMainWindow):
    """The clinician's workspace.

    Signals:
        files_dropped(list): paths of local files dropped on the window.
        about_to_hide(): closing hides the window (to the tray), its lists still shown.
    """

    files_dropped = Signal(list)
    about_to_hide = Signal()

    def __init__(
        self,
        patient_list: PatientListView,
        patient_page: PatientPage,
        notifications: NotificationsPanel,
        jobs: JobQueuePanel,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.setWindowTitle("OphthAI Desktop")
        self.setWindowIcon(icon("app"))
        self.setAcceptDrops(True)
        self.resize(1440, 900)
        self.patient_list = patient_list
        self.patient_page = patient_page
        self.notifications = notifications
        self.jobs = jobs
        #: Asked on close: True to close, False to keep running (hidden to the tray),
        #: None to stay as it is (a question was asked instead).
        self.close_policy: Callable[[], bool | None] = lambda: True

        self.banner = Banner()
        split = QSplitter(Qt.Orientation.Horizontal)
        split.setObjectName("mainSplit")
        split.addWidget(patient_list)
        split.addWidget(patient_page)
        # The list gives up room too as the window narrows (it kept its 540 px, and at
        # 1024 px the page was left at its minimum, the scan image small).
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 3)
        split.setSizes([540, 900])
        self.split = split
        #: Whether the clinician dragged the list's edge (their sizes then stand).
        self._split_dragged = False
        split.splitterMoved.connect(self._on_split_splitter_moved)
        patient_page.room_for_details = self._give_room_for_details
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(4, 4, 4, 0)
        layout.addWidget(self.banner)
        layout.addWidget(split, 1)
        self.setCentralWidget(central)

        self.notifications_dock = self._dock("Notifications", "notificationsDock", notifications)
        self.jobs_dock = self._dock("Job queue", "jobsDock", jobs)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.notifications_dock)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.jobs_dock)
        self.splitDockWidget(self.notifications_dock, self.jobs_dock, Qt.Orientation.Horizontal)
        self.resizeDocks([self.notifications_dock], [210], Qt.Orientation.Vertical)

        self.status = AppStatusBar()
        self.setStatusBar(self.status)
        self.toast = Toast(
            self,
            anchors=(notifications.list, self.notifications_dock, central),
            footer=self.status,
        )
        self._make_actions()

    def _give_room_for_details(self, wanted: int) -> bool:
        """The patient page's ``wanted`` pixels more, to keep the details beside the
        tabs, taken from the list down to its least width, as while the page could not
        be narrower (at 800 x 600 the list gives 48 px); where the list cannot spare
        them, or the clinician dragged its edge, the details go under the tabs."""
        patients, page = self.patient_list, self.patient_page
        spare = patients.width() - max(patients.minimumWidth(), patients.minimumSizeHint().width())
        if self._split_dragged or wanted > spare:
            return False
        self.split.setSizes([patients.width() - wanted, page.width() + wanted])
        return True

    @Slot(int, int)
    def _on_split_splitter_moved(self, _pos: int, _index: int) -> None:
        self._split_dragged = True

    # Actions ---------------------------------------------------------------------------

    def _action(
        self,
        text: str,
        icon_name: str | None = None,
        shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None,
    ) -> QAction:
        action = QAction(text, self)
        if icon_name is not None:
            action.setIcon(icon(icon_name))
        if shortcut is not None:
            action.setShortcut(shortcut)
        return action

    def _make_actions(self) -> None:
        # Every menu entry has a mnemonic (Alt+F, then N: New patient…), unique in its
        # menu; toolbar buttons show the text without the ampersand.
        self.new_patient_action = self._action(
            "&New patient…", "patient-add", QKeySequence.StandardKey.New
        )
        self.import_action = self._action("&Import image…", "import", QKeySequence("Ctrl+I"))
        self.quit_action = self._action("&Quit", None, QKeySequence.StandardKey.Quit)
        self.find_action = self._action("&Find patient", None, QKeySequence.StandardKey.Find)
        self.find_action.triggered.connect(self._on_find_triggered)
        self.edit_patient_action = self._action("&Edit patient…", "edit", QKeySequence("Ctrl+E"))
        self.delete_patient_action = self._action("&Delete patient…", "delete")
        self.analyse_action = self._action("&Analyse", "analyse", QKeySequence("Ctrl+R"))
        self.load_model_action = self._action("&Load model", "model")
        self.unload_model_action = self._action("&Unload model", None)
        self.check_model_action = self._action("&Check model files again", "refresh")
        self.model_manager_action = self._action("&Model manager…", "model")
        self.api_server_action = self._action("&API server…", None)
        self.api_docs_action = self._action("Open API &docs", None)
        self.pause_watch_action = self._action("&Pause watch folder", None)
        self.pause_watch_action.setCheckable(True)
        self.pause_watch_action.setEnabled(False)
        self.watcher_details_action = self._action("Watch folder &status…", None)
        self.watcher_details_action.triggered.connect(self.status.show_watcher_details)
        self.notifications_action = self.notifications_dock.toggleViewAction()
        self.notifications_action.setIcon(icon("bell"))
        self.notifications_action.setText("&Notifications")
        self.jobs_action = self.jobs_dock.toggleViewAction()
        self.jobs_action.setText("&Job queue")
        # F6 / Shift+F6 go from one area of the window to the next, as in other
        # desktop applications (Tab goes from field to field within one).
        self.next_area_action = self._action("Ne&xt area", None, QKeySequence("F6"))
        self.next_area_action.triggered.connect(self._on_next_area_triggered)
        self.previous_area_action = self._action("Pre&vious area", None, QKeySequence("Shift+F6"))
        self.previous_area_action.triggered.connect(self._on_previous_area_triggered)
        self.about_action = self._action("&About OphthAI Desktop", None)
        # F1 on Windows and Linux desktops (the platform's own key for help).
        self.shortcuts_action = self._action(
            "&Keyboard shortcuts", None, QKeySequence.StandardKey.HelpContents
        )
        self.getting_started_action = self._action("&Getting started", None)
        self.settings_action = self._action("&Settings…", None, QKeySequence("Ctrl+,"))
        self.settings_action.setMenuRole(QAction.MenuRole.PreferencesRole)
        self.open_watch_folder_action = self._action("Open &watch folder", None)
        for action in (self.edit_patient_action, self.delete_patient_action, self.analyse_action):
            action.setEnabled(False)

        menus = self.menuBar()
        file_menu = menus.addMenu("&File")
        file_menu.addAction(self.new_patient_action)
        file_menu.addAction(self.import_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        edit_menu = menus.addMenu("&Edit")
        edit_menu.addAction(self.find_action)
        edit_menu.addSeparator()
        edit_menu.addAction(self.edit_patient_action)
        edit_menu.addAction(self.delete_patient_action)
        view_menu = menus.addMenu("&View")
        view_menu.addAction(self.notifications_action)
        view_menu.addAction(self.jobs_action)
        view_menu.addSeparator()
        view_menu.addAction(self.next_area_action)
        view_menu.addAction(self.previous_area_action)
        view_menu.addSeparator()
        view_menu.addAction(self.pause_watch_action)
        view_menu.addAction(self.watcher_details_action)
        model_menu = menus.addMenu("&AI")
        model_menu.addAction(self.analyse_action)
        model_menu.addSeparator()
        model_menu.addAction(self.load_model_action)
        model_menu.addAction(self.unload_model_action)
        model_menu.addAction(self.check_model_action)
        model_menu.addSeparator()
        model_menu.addAction(self.model_manager_action)
        tools_menu = menus.addMenu("&Tools")
        tools_menu.addAction(self.api_server_action)
        tools_menu.addAction(self.open_watch_folder_action)
        tools_menu.addSeparator()
        tools_menu.addAction(self.settings_action)
        help_menu = menus.addMenu("&Help")
        help_menu.addAction(self.getting_started_action)
        help_menu.addAction(self.shortcuts_action)
        help_menu.addSeparator()
        help_menu.addAction(self.api_docs_action)
        help_menu.addSeparator()
        help_menu.addAction(self.about_action)

        toolbar = QToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setIconSize(QSize(20, 20))
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        toolbar.addAction(self.new_patient_action)
        toolbar.addAction(self.import_action)
        toolbar.addAction(self.analyse_action)
        toolbar.addSeparator()
        toolbar.addAction(self.notifications_action)
        toolbar.addAction(self.load_model_action)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, toolbar)
        self.toolbar = toolbar

    @Slot()
    def _on_find_triggered(self) -> None:
        self.patient_list.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.patient_list.search.selectAll()

    # Moving between the areas ---------------------------------------------------------

    def areas(self) -> list[tuple[QWidget, QWidget]]:
        """The window's areas in F6 order, each with the widget that takes the focus
        when it has had none: the patient list, the patient page, the notifications and
        the job queue."""
        return [
            (self.patient_list, self.patient_list.table),
            (self.patient_page, self.patient_page.tabs.tabBar()),
            (self.notifications_dock, self.notifications.list),
            (self.jobs_dock, self.jobs.table),
        ]

    @Slot()
    def _on_next_area_triggered(self) -> None:
        self.focus_next_area(1)

    @Slot()
    def _on_previous_area_triggered(self) -> None:
        self.focus_next_area(-1)

    def focus_next_area(self, step: int) -> None:
        """Give the keyboard focus to the next area (``step`` 1) or the previous one
        (-1) that is shown and has something to take it (a closed dock and the page
        without a patient are passed over): where the focus last was in it, else the
        area's main widget."""
        areas = self.areas()
        focused = QApplication.focusWidget()
        current = next(
            (
                index
                for index, (area, _main) in enumerate(areas)
                if focused is not None and (focused is area or area.isAncestorOf(focused))
            ),
            -1 if step > 0 else len(areas),  # from elsewhere (the toolbar): the first
        )
        for offset in range(1, len(areas) + 1):
            area, main = areas[(current + offset * step) % len(areas)]
            target = _focus_target(area, main)
            if target is not None and target is not focused:
                if not target.isActiveWindow():  # a floating dock, or back from one
                    target.activateWindow()
                target.setFocus(Qt.FocusReason.ShortcutFocusReason)
                return

    def _dock(self, title: str, name: str, widget: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        # Qt paints a dock's title in the font the application had when the dock was
        # made, unless the dock's font differs from the application's: after the
        # desktop's font grew with the window open, the titles stayed small. Bold (as
        # the stylesheet asks, to no effect) is the dock's own: its size still follows
        # the application's font, and the panel inside keeps the usual weight.
        dock.setFont(_weighted(bold=True))
        widget.setFont(_weighted(bold=False))
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetClosable
            | QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        return dock

    def set_patient_actions_enabled(self, enabled: bool) -> None:
        self.offer_analyse()  # one patient's reason it was off is not the next one's
        for action in (self.edit_patient_action, self.delete_patient_action, self.analyse_action):
            action.setEnabled(enabled)

    def offer_analyse(self, why_not: str = "") -> None:
        """Analyse (menu, toolbar, Ctrl+R) on, or off with ``why_not`` as its tooltip and
        status tip."""
        self.analyse_action.setEnabled(not why_not)
        self.analyse_action.setToolTip(why_not or "Analyse")
        self.analyse_action.setStatusTip(why_not)

    def set_unread(self, count: int) -> None:
        """The unread badge on the dock title and the toolbar button."""
        suffix = f" ({count} unread)" if count else ""
        self.notifications_dock.setWindowTitle(f"Notifications{suffix}")
        text = f"&Notifications ({count})" if count else "&Notifications"
        self.notifications_action.setText(text)

    # Drag and drop ---------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if local_files(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if local_files(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        files = local_files(event)
        if not files:
            event.ignore()
            return
        event.acceptProposedAction()
        self.files_dropped.emit(files)

    # Closing ---------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:
        policy = self.close_policy()
        if policy:
            event.accept()
            return
        event.ignore()
        if policy is False:
            self.about_to_hide.emit()
            self.hide()


def _weighted(*, bold: bool) -> QFont:
    """A font that sets the weight alone: the rest follows the parent's font."""
    font = QFont()
    font.setBold(bold)
    return font


def _focus_target(area: QWidget, main: QWidget) -> QWidget | None:
    """Where the focus goes in ``area``: the widget in it that last had the focus,
    else ``main``, if it can take the focus now; else None."""
    for widget in (area.focusWidget(), main):
        if (
            widget is not None
            and (widget is area or area.isAncestorOf(widget))
            and widget.isVisible()
            and widget.isEnabled()
            and widget.focusPolicy() & Qt.FocusPolicy.TabFocus
        ):
            return widget
    return None
