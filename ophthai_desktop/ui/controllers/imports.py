"""Images dropped on the window or picked with File ▸ Import image…: checked off the
GUI thread, filed under the shown patient (or a new one) and queued for analysis.

Every file is read and checked before anything is stored, so a refused file (not an
image, too large, unreadable) leaves nothing behind; the clinician is told which file
and why.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QFileDialog

from ophthai_desktop.core.domain import Laterality, Modality, ScanSource
from ophthai_desktop.core.errors import (
    ChangeRolledBack,
    DatabaseUnavailable,
    OphthaiError,
    PayloadTooLarge,
)
from ophthai_desktop.core.imaging import inspect_image, too_large_message
from ophthai_desktop.core.log_safety import patient_ref
from ophthai_desktop.core.records import PatientRecord
from ophthai_desktop.core.services.ingest import shown_name
from ophthai_desktop.core.services.patients import NewImage
from ophthai_desktop.core.storage.images import sha256_hex
from ophthai_desktop.ui.context import GuiContext
from ophthai_desktop.ui.controllers.patients import PatientsController, core_fields
from ophthai_desktop.ui.messages import (
    DATABASE_BACK,
    DATABASE_DOWN,
    describe,
    once_database_answers,
)
from ophthai_desktop.ui.views.main_window import MainWindow
from ophthai_desktop.ui.views.patient_page import PatientPage

log = logging.getLogger(__name__)

#: How long "N images added ...; queued" stays: it is out of date once the analysis runs.
ADDED_SHOWN_MS = 10_000
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff);;All files (*)"
_TOKENS = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True)
class CheckedFile:
    """A file that was read and checked; ``problem`` says why it is refused."""

    path: Path
    data: bytes = b""
    problem: str | None = None
    modality: str = Modality.UNKNOWN.value
    laterality: str = Laterality.UNKNOWN.value

    @property
    def name(self) -> str:
        return self.path.name


def guess_kind(filename: str) -> tuple[str, str]:
    """Modality and laterality from words in a file name (``OCT_OD_0001.png``)."""
    words = {word.lower() for word in _TOKENS.findall(filename)}
    modality = Modality.UNKNOWN.value
    if "octa" in words or "angio" in words:
        modality = Modality.OCTA.value
    elif "oct" in words:
        modality = Modality.OCT.value
    elif words & {"fundus", "cfp", "retinography", "fundo"}:
        modality = Modality.FUNDUS.value
    laterality = Laterality.UNKNOWN.value
    if words & {"od", "right"}:
        laterality = Laterality.OD.value
    elif words & {"os", "left"}:
        laterality = Laterality.OS.value
    elif "ou" in words:
        laterality = Laterality.OU.value
    return modality, laterality


def check_file(path: Path, *, max_bytes: int, max_pixels: int) -> CheckedFile:
    """Read and check one file (pool thread); never raises."""
    try:
        if not path.exists():  # moved or deleted since it was dragged or picked
            return CheckedFile(path, problem="the file is no longer there (moved or deleted)")
        if not path.is_file():
            return CheckedFile(path, problem="it is not a file (folders are not imported)")
        size = path.stat().st_size
        if size > max_bytes:
            # As the API and the watch folder say it: one byte over is not "25.0 MB; the
            # limit is 25.0 MB".
            raise PayloadTooLarge(too_large_message(size, max_bytes, "file"))
        data = path.read_bytes()
        inspect_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    except (OphthaiError, OSError) as exc:
        return CheckedFile(path, problem=describe(exc))
    modality, laterality = guess_kind(path.name)
    return CheckedFile(path, data, None, modality, laterality)


class ImportController(QObject):
    """Files in, scans and queued analyses out.

    Signals:
        imported(str patient_id, int count): images were filed and queued.
        refused(list): ``(file name, reason)`` pairs for files that were not taken.
    """

    imported = Signal(str, int)
    refused = Signal(list)

    def __init__(
        self,
        ctx: GuiContext,
        window: MainWindow,
        patients: PatientsController,
        page: PatientPage,
    ) -> None:
        super().__init__(window)
        self._ctx = ctx
        self._app = ctx.application
        self._window = window
        self._patients = patients
        self._page = page
        window.files_dropped.connect(self.import_files)
        window.import_action.triggered.connect(self._on_import_action_triggered)

    @Slot()
    def _on_import_action_triggered(self) -> None:
        names, _filter = QFileDialog.getOpenFileNames(
            self._window, "Import images", "", IMAGE_FILTER
        )
        if names:
            self.import_files([Path(name) for name in names])

    @Slot(list)
    def import_files(self, paths: Sequence[Path]) -> None:
        """Check ``paths``, then attach them to the shown patient or offer a new one."""
        settings = self._app.settings
        target = self._patients.current_patient_id
        files = [Path(p) for p in paths]

        def check() -> list[CheckedFile]:
            checked = [
                check_file(
                    path,
                    max_bytes=settings.max_image_bytes,
                    max_pixels=settings.max_image_pixels,
                )
                for path in files
            ]
            return self._refuse_repeats(target, checked)

        # Counted as saving from here: quitting asks before the files are left out.
        self._ctx.tasks.submit(
            check,
            lambda checked: self._on_checked(target, checked),
            importing=True,
            first_step=True,  # stored by the next step, sent from _on_checked
        )

    def _refuse_repeats(self, target: str | None, checked: list[CheckedFile]) -> list[CheckedFile]:
        """Pool thread: an image given twice in one drop (a file and a link to it, a
        copy under another name), or one the patient already has, is refused by name:
        it was filed as one more scan with one more analysis of the same pixels (a
        folder imported again after one new image was added to it doubled them all)."""
        repeats: dict[str, str] = {}  # an image's hash: why it is not taken again
        if target is not None:
            try:
                scans = self._app.patients.list_scans(target)
            except OphthaiError:  # deleted meanwhile: storing says so
                scans = ()
            for scan in scans:  # newest first: an older copy's name wins
                name = shown_name(scan.original_filename or "an earlier scan")
                repeats[scan.sha256] = f"The patient already has this image (as {name})"
        result = []
        for item in checked:
            if item.problem is None:
                digest = sha256_hex(item.data)
                problem = repeats.get(digest)
                if problem is None:
                    repeats[digest] = (
                        f"The same image as {shown_name(item.name)}, also in this import"
                    )
                else:
                    item = replace(item, data=b"", problem=problem)
            result.append(item)
        return result

    def _on_checked(self, target: str | None, checked: list[CheckedFile]) -> None:
        refused = [(c.name, c.problem) for c in checked if c.problem]
        good = [c for c in checked if not c.problem]
        if refused:
            taken = (
                f"\n{_count(len(good), 'other file')} {_be(len(good), 'is', 'are')} being added."
                if good
                else ""
            )
            self._window.banner.show_message(_refusals(refused) + taken, "error")
            self.refused.emit(refused)
            # Not all given is saved: quitting once saved stays to say so (see below).
            self._ctx.tasks.mark_not_saved()
        if not good:
            return
        if target is not None:
            self._attach(target, good, refused)
        else:
            self._offer_new_patient(good, refused)

    def _attach(
        self, patient_id: str, files: list[CheckedFile], refused: list[tuple[str, str]]
    ) -> None:
        def work() -> tuple[int, list[tuple[str, str]]]:
            return self._store_each(patient_id, files)

        def done(outcome: tuple[int, list[tuple[str, str]]]) -> None:
            count, failed = outcome
            if failed:
                # The task ended without an error, its images refused: counted as saved,
                # "Quit once saved" quit, and the banner naming them went with the window.
                self._ctx.tasks.mark_not_saved()
            self._after_import(patient_id, count, refused + failed)

        # Not on the changes' thread: a drop of many files stores them one by one for
        # seconds, and every verdict or booking would wait behind it.
        self._ctx.tasks.submit(work, done, self._on_failed, importing=True)

    def _offer_new_patient(self, files: list[CheckedFile], refused: list[tuple[str, str]]) -> None:
        failed: list[tuple[str, str]] = []  # the files after the first that were not stored

        def create(fields: dict[str, Any]) -> PatientRecord:
            first, rest = files[0], files[1:]
            modality = fields.get("_modality", first.modality)
            laterality = fields.get("_laterality", first.laterality)
            # The patient, its first image and that image's analysis in one
            # transaction: if that fails, the dialog says why and nothing was created.
            # Once it is done, the patient exists: a later file that fails is named, not
            # made the dialog's error (a second "Create patient" made a second patient).
            record, _job = self._app.jobs.create_and_queue(
                self._app.patients,
                core_fields(fields),
                self._new_image(first, modality, laterality),
                actor=self._ctx.actor,
            )
            count, failed[:] = self._store_each(record.id, rest)
            self.imported.emit(record.id, 1 + count)  # queued to the GUI thread
            return record

        dialog = self._patients.new_patient(
            files=[f.name for f in files],
            create=create,
            guess=(files[0].modality, files[0].laterality),
        )
        # The images wait in the form until the patient is created (a saving task) or
        # the clinician cancels: quitting meanwhile asks first, as during their check.
        hold = self._ctx.tasks.hold()
        dialog.finished.connect(lambda _result: self._ctx.tasks.release(hold))
        dialog.accepted.connect(lambda: self._page.show_tab("analysis"))
        dialog.accepted.connect(lambda: self._after_new_patient(len(files), refused, failed))
        if refused:  # the banner said the others "are being added": say they were not
            others = (
                "The other file was" if len(files) == 1 else f"The other {len(files)} files were"
            )
            dialog.rejected.connect(
                lambda: self._window.banner.show_message(
                    f"{_refusals(refused)}\n{others} not added: no patient was created.",
                    "error",
                )
            )

    def _store_each(
        self, patient_id: str, files: Sequence[CheckedFile]
    ) -> tuple[int, list[tuple[str, str]]]:
        """Pool thread: each file stored and queued on its own. One that fails (the disk
        full, the store read-only) is named with the reason and the others go on: the
        files stored before it are not called "not added". Once the database does not
        answer, the files left are not tried (each waited up to 30 s for a locked
        database before it was refused: twenty files, ten minutes before the window
        said anything) and are named with the same reason. Returns how many were stored
        and the ``(file name, reason)`` of those that were not."""
        failed: list[tuple[str, str]] = []
        outage: str | None = None  # the database does not answer: why the rest wait
        for item in files:
            if outage is not None:
                failed.append((item.name, outage))
                continue
            try:
                self._store_and_queue(patient_id, item)
            except OphthaiError as exc:
                log.warning(
                    "a dropped image was not filed under patient %s: %s",
                    patient_ref(patient_id),
                    type(exc).__name__,
                )
                failed.append((item.name, describe(exc)))
                if isinstance(exc, DatabaseUnavailable) and not isinstance(exc, ChangeRolledBack):
                    outage = describe(exc)
        return len(files) - len(failed), failed

    def _store_and_queue(self, patient_id: str, item: CheckedFile) -> None:
        """Pool thread: one scan and the queued analysis of it, both or neither (a scan
        stored without its analysis was called not added). This scan's: another scan of
        the patient arriving meanwhile (the watch folder, the API) would otherwise be the
        newest and this one never run."""
        self._app.jobs.attach_and_queue(
            self._app.patients,
            patient_id,
            self._new_image(item, item.modality, item.laterality),
            actor=self._ctx.actor,
        )

    @staticmethod
    def _new_image(item: CheckedFile, modality: str, laterality: str) -> NewImage:
        return NewImage(
            data=item.data,
            source=ScanSource.DROP.value,
            modality=modality,
            laterality=laterality,
            filename=item.name,
        )

    def _after_import(self, patient_id: str, count: int, refused: list[tuple[str, str]]) -> None:
        """Say what was added, and again what was refused (the banner holds one
        message, and the refusal shown while the others were stored would be gone)."""
        if count == 0:  # every file was refused or failed: nothing to open or queue
            self._window.banner.show_message(
                f"No image was added.\n{_refusals(refused)}",
                "error",
                resolved=_once_database_answers(refused),
            )
            return
        log.info("%d image(s) filed under patient %s and queued", count, patient_ref(patient_id))
        current = self._patients.current_patient
        if current is not None and current.id == patient_id:
            self._page.show_tab("analysis")
            who = current.name
        else:
            who = f"patient {patient_id}"
        if count == 1:
            added = f"1 image added to {who}; its analysis is queued."
        else:
            added = f"{count} images added to {who}; their analyses are queued."
        if refused:
            self._window.banner.show_message(
                f"{added}\n{_refusals(refused)}",
                "warning",
                resolved=_once_database_answers(refused, added),
            )
        else:
            self._window.banner.show_message(added, "info", shown_ms=ADDED_SHOWN_MS)
        self.imported.emit(patient_id, count)

    def _after_new_patient(
        self, total: int, refused: list[tuple[str, str]], failed: list[tuple[str, str]]
    ) -> None:
        """The new patient was created: name the files it was created without (the
        banner, if any, said the others "are being added")."""
        if failed:
            self._ctx.tasks.mark_not_saved()  # the patient's creation: not all it was given
            created = f"The patient was created with {total - len(failed)} of the {total} images."
            self._window.banner.show_message(
                f"{created}\n{_refusals(refused + failed)}",
                "warning",
                resolved=_once_database_answers(refused + failed, created),
            )

    def _on_failed(self, exc: BaseException) -> None:
        self._window.banner.show_message(
            f"The images could not be added: {describe(exc)}",
            "error",
            resolved=once_database_answers(
                exc, "The images were not added: drop or import them again."
            ),
        )


def _once_database_answers(refused: list[tuple[str, str]], added: str = "") -> str | None:
    """What a banner naming ``refused`` files says once the database answers again:
    those the outage refused are to be imported again, the others' reasons stay; None
    where the outage refused none."""
    again = [name for name, problem in refused if problem == DATABASE_DOWN]
    if not again:
        return None
    others = [(name, problem) for name, problem in refused if problem != DATABASE_DOWN]
    lines = [
        DATABASE_BACK,
        added,
        f"Not added while it did not answer: {', '.join(map(shown_name, again))}. "
        "Import them again.",
    ]
    if others:
        lines.append(_refusals(others))
    return "\n".join(line for line in lines if line)


def _refusals(refused: list[tuple[str, str]]) -> str:
    lines = "\n".join(f"• {shown_name(name)}: {problem}" for name, problem in refused)
    return f"{_count(len(refused), 'file')} {_be(len(refused))} not imported:\n{lines}"


def _count(count: int, noun: str) -> str:
    """``1 file`` or ``3 files`` (it read "1 file(s) were not imported")."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _be(count: int, one: str = "was", more: str = "were") -> str:
    return one if count == 1 else more
