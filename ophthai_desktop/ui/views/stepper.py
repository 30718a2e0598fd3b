"""The workflow stepper: Analysis → Validation → Scheduling → Complete."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, QTimer
from PySide6.QtGui import QFont, QFontMetrics, QResizeEvent, QShowEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QWidget

from ophthai_desktop.ui.display import STEP_NAMES
from ophthai_desktop.ui.views.style import set_style_property, set_text

#: How a screen reader names each state of a step (the screen shows a tick, a bold
#: name and colours).
STATE_WORDS = {"done": "done", "current": "current step", "todo": "to do"}


class WorkflowStepper(QWidget):
    """Shows where a patient is in the workflow: a tick on the steps done, the current
    step's name in bold (and coloured); each step, and the whole, are named for screen
    readers. Narrower than every name needs (a large font, a narrow page), only the
    current step's is shown, the others' in their circles' tooltips: the four names
    kept the page 650 px wide at 1.5 times the font, wider than a 1024 px screen left
    it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("workflowStepper")
        self.setAccessibleName("Workflow")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 4)
        self._dots: list[QLabel] = []
        self._labels: list[QLabel] = []
        self._lines: list[QFrame] = []
        for number, name in STEP_NAMES.items():
            if number > 1:
                line = QFrame()
                line.setObjectName("stepLine")
                line.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
                line.setMinimumWidth(16)
                layout.addWidget(line, 1)
                self._lines.append(line)
            dot = QLabel(str(number))
            dot.setObjectName("stepDot")
            dot.setToolTip(name)
            label = QLabel(name)
            label.setObjectName("stepLabel")
            layout.addWidget(dot)
            layout.addWidget(label)
            self._dots.append(dot)
            self._labels.append(label)
        self.step = 0
        #: The width that shows every step's name (see :meth:`_fit_names`).
        self._full_width = 0
        self.set_step(1)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._fit_names()  # polished now: the stylesheet's fonts are the labels'

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_labels()

    @property
    def compact(self) -> bool:
        """Whether only the current step's name is shown (too narrow for them all)."""
        return self.width() < self._full_width

    def _fit_labels(self) -> None:
        """Every name where they fit, else the current step's alone."""
        compact = self.compact
        current = min(self.step, len(self._labels)) - 1
        for index, label in enumerate(self._labels):
            shown = not compact or index == current
            if label.isHidden() == shown:
                label.setVisible(shown)

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange):
            QTimer.singleShot(0, self, self._fit_names)  # once the labels are restyled

    def _fit_names(self) -> None:
        """Each step's name as wide in every state as in bold (the current step's look).
        The stylesheet makes a step bold as it turns current; its wider name was laid
        out an event-loop turn later, and a paint before that (a screenshot right after
        a drop) showed it cut ("Validatio"). A minimum width set here, not a ``sizeHint``
        written in Python: laying the page out then runs no Python. It depends on the
        font and the style alone, not on the step: set when shown or restyled, it stays
        as it is when the step changes (no layout pass then). Measured from the font,
        not from the label's size hint, which includes the minimum set before (each
        step grew the names a few pixels, and laid the page out again)."""
        for label in self._labels:
            bold = QFont(label.font())
            bold.setBold(True)
            margins = label.contentsMargins()
            width = (
                QFontMetrics(bold).size(Qt.TextFlag.TextSingleLine, label.text()).width()
                + margins.left()
                + margins.right()
                + 2 * label.margin()
                + max(0, label.indent())
            )
            if label.minimumWidth() != width:
                label.setMinimumWidth(width)
        # Its least width: the circles, the least lines and the widest name alone.
        layout = self.layout()
        assert layout is not None  # set in __init__
        margins = layout.contentsMargins()
        names = [label.minimumWidth() for label in self._labels]
        parts = len(self._dots) + len(self._labels) + len(self._lines)
        rest = (
            sum(dot.minimumSizeHint().width() for dot in self._dots)
            + sum(line.minimumWidth() for line in self._lines)
            + layout.spacing() * (parts - 1)
            + margins.left()
            + margins.right()
        )
        self._full_width = rest + sum(names)
        least = rest + max(names) - layout.spacing() * (len(names) - 1)
        if self.minimumWidth() != least:
            self.setMinimumWidth(least)
        self._fit_labels()

    def set_step(self, step: int) -> None:
        """Steps before ``step`` are done; ``step`` is current (4 = all done)."""
        if step == self.step:
            return
        self.step = step
        for index, (dot, label) in enumerate(zip(self._dots, self._labels, strict=True)):
            number = index + 1
            complete = number < step or (step >= len(STEP_NAMES) and number == step)
            state = "done" if complete else "current" if number == step else "todo"
            set_text(dot, "✓" if state == "done" else str(number))
            set_style_property(dot, "state", state)
            set_style_property(label, "state", state)
            words = f"Step {number}, {STEP_NAMES[number]}: {STATE_WORDS[state]}"
            dot.setAccessibleName(words)
            label.setAccessibleName(words)
        for index, line in enumerate(self._lines):
            set_style_property(line, "state", "done" if index + 2 <= step else "todo")
        if self.compact:
            self._fit_labels()
        total = len(STEP_NAMES)
        if step >= total:
            self.setAccessibleDescription(f"All {total} steps complete")
        else:
            self.setAccessibleDescription(f"Step {step} of {total}: {self.current_name()}")

    def current_name(self) -> str:
        return STEP_NAMES.get(self.step, "")
