"""Quitting while changes the clinician made are not saved yet asks first.

A verdict, a booking, a deletion or an import waits for the database while another
program holds its lock (up to 30 s, then it is refused and the window says to do it
again). Quitting meanwhile dropped it without a word: the clinician left believing the
verdict recorded. Now Quit (the menu, the tray, the window's close button) asks: quit
once they are saved (the default), quit without them, or stay. Quitting by a signal
(``SIGTERM`` at log-out) asks nothing; :meth:`TaskRunner.shutdown` then lets them run,
up to its deadline.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Slot
from PySide6.QtWidgets import QAbstractButton, QDialog, QMessageBox

from ophthai_desktop.ui.tasks import TaskRunner
from ophthai_desktop.ui.views.main_window import MainWindow

#: The status bar says the window waits to quit for this long at most (the changes
#: themselves give up after 30 s, and the window says so).
WAITING_SHOWN_MS = 10 * 60_000
#: How long the status bar says that quitting was called off.
CALLED_OFF_SHOWN_MS = 20_000
QUIT_ONCE_SAVED = "Quit once saved"
QUIT_WITHOUT_SAVING = "Quit without saving"


def _changes(count: int) -> str:
    return "1 change" if count == 1 else f"{count} changes"


def _not_quitting(failures: int) -> str:
    return f"Not quitting: {_changes(failures)} could not be saved."


def _they_are(count: int) -> str:
    return "it is" if count == 1 else "they are"


class QuitGuard(QObject):
    """Asks before quitting with unsaved changes; quits once they are saved if told to.

    ``quit`` ends the application (the session's quit, which asks this guard first);
    ``show_window`` brings the window forward for the question (Quit from the tray)."""

    def __init__(
        self,
        tasks: TaskRunner,
        window: MainWindow,
        quit: Callable[[], None],
        show_window: Callable[[], None],
    ) -> None:
        super().__init__(window)
        self._tasks = tasks
        self._window = window
        self._quit = quit
        self._show_window = show_window
        #: The clinician chose to quit without the unsaved changes (shutdown drops them).
        self.drop_unsaved = False
        self._waiting = False  # quit once saved: set until the changes settle
        #: The runner's failed saves when the question was asked: those since then keep
        #: the window (refused while the question was open, or while waiting).
        self._failed_before = tasks.saves_failed
        #: The question, while asked (tests answer it).
        self.question: QMessageBox | None = None
        tasks.settled.connect(self._on_settled)

    @property
    def waiting(self) -> bool:
        """Whether the window quits by itself once the unsaved changes are saved."""
        return self._waiting

    def allows_quit(self) -> bool:
        """True when quitting loses nothing (or the clinician said to quit anyway);
        otherwise asks what to do and returns False (the answer may quit later)."""
        if self.drop_unsaved or self._tasks.saving == 0:
            return True
        self._ask(self._tasks.saving)
        return False

    def _ask(self, count: int) -> None:
        if self.question is not None and self.question.isVisible():
            self.question.raise_()
            return
        self._failed_before = self._tasks.saves_failed
        self._show_window()
        box = QMessageBox(QMessageBox.Icon.Warning, "Quit OphthAI Desktop", "", parent=self._window)
        box.setObjectName("quitWithUnsavedChanges")
        box.setText(f"{_changes(count)} you made {'is' if count == 1 else 'are'} not saved yet.")
        box.setInformativeText(
            # Not "the database has not answered": an import reading its images from a
            # slow share or USB stick is counted too, with the database answering.
            "Saving can take a while: an import stores its images one by one, and "
            "another program using the database makes changes wait. "
            f"{QUIT_ONCE_SAVED}: the window quits by itself once {_they_are(count)} saved, "
            f"and stays if {'it' if count == 1 else 'one'} cannot be. "
            f"{QUIT_WITHOUT_SAVING}: {_they_are(count)} lost."
        )
        wait = box.addButton(QUIT_ONCE_SAVED, QMessageBox.ButtonRole.AcceptRole)
        drop = box.addButton(QUIT_WITHOUT_SAVING, QMessageBox.ButtonRole.DestructiveRole)
        stay = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(wait)
        box.setEscapeButton(stay)

        def answered(button: QAbstractButton) -> None:
            if button is wait:
                self._quit_once_saved()
            elif button is drop:
                self._waiting = False
                self.drop_unsaved = True
                self._quit()
            else:
                self._call_off("")

        box.buttonClicked.connect(answered)
        box.finished.connect(lambda _result: self._forget(box))
        box.finished.connect(box.deleteLater)
        self.question = box
        box.open()

    def _failed_since_asked(self) -> int:
        return self._tasks.saves_failed - self._failed_before

    def _forget(self, box: QMessageBox) -> None:
        """The question answered (or closed), and deleted next: kept, the next Quit
        asked the deleted box whether it was shown, raised, and neither asked nor quit."""
        if self.question is box:
            self.question = None

    def _quit_once_saved(self) -> None:
        if self._tasks.saving == 0:  # settled while the question was open
            failures = self._failed_since_asked()
            if failures:  # refused meanwhile: quitting now would lose it without a word
                self._call_off(_not_quitting(failures))
                return
            self._quit()
            return
        self._waiting = True
        self._window.status.show_message("Quitting once your changes are saved…", WAITING_SHOWN_MS)

    def _call_off(self, why: str) -> None:
        was_waiting, self._waiting = self._waiting, False
        if why:
            self._window.status.show_message(why, CALLED_OFF_SHOWN_MS)
        elif was_waiting:
            self._window.status.show_message("", 1)

    @Slot()
    def _on_settled(self) -> None:
        question = self.question
        if question is not None and question.isVisible():
            if self._failed_since_asked():
                return  # the answer decides (Quit once saved stays); the refusal is said
            # Saved while the question was open: it went on saying "not saved yet" (a
            # clinician reading it could send the verdict again). Nothing is lost now:
            # the Quit asked for goes ahead, as it would have without the question.
            question.done(QDialog.DialogCode.Rejected)  # no button: no answer handled
            self._waiting = False
            self._quit()
            return
        if not self._waiting:
            return
        failures = self._failed_since_asked()
        if failures:
            # Stays: what was not saved is said where it was done (its own message).
            self._call_off(_not_quitting(failures))
            return
        self._waiting = False
        self._window.status.show_message("", 1)
        self._quit()
