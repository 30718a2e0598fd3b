"""The workflow stepper: Analysis → Validation → Scheduling → Complete."""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QWidget

from ophthai_desktop.ui.display import STEP_NAMES
from ophthai_desktop.ui.views.style import set_style_property, set_text

#: How a screen reader names each state of a step (the screen shows a tick, a bold
#: name and colours).
STATE_WORDS = {"done": "done", "current": "current step", "todo": "to do"}


class _StepLabel(QLabel):
    """A step's name, as wide in every state as in bold (the current step's look).

    The stylesheet makes the current step bold as its state changes; the wider bold
    name was laid out only in a later event-loop turn, and a paint before it (a
    screenshot right after a drop) showed the name cut ("Validatio")."""

    def sizeHint(self) -> QSize:
        return self._as_bold(super().sizeHint())

    def minimumSizeHint(self) -> QSize:
        return self._as_bold(super().minimumSizeHint())

    def _as_bold(self, size: QSize) -> QSize:
        bold = QFont(self.font())
        bold.setBold(True)
        extra = QFontMetrics(bold).horizontalAdvance(self.text()) - QFontMetrics(
            self.font()
        ).horizontalAdvance(self.text())
        return QSize(size.width() + max(0, extra), size.height())


class WorkflowStepper(QWidget):
    """Shows where a patient is in the workflow: a tick on the steps done, the current
    step's name in bold (and coloured); each step, and the whole, are named for screen
    readers."""

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
            label = _StepLabel(name)
            label.setObjectName("stepLabel")
            layout.addWidget(dot)
            layout.addWidget(label)
            self._dots.append(dot)
            self._labels.append(label)
        self.step = 0
        self.set_step(1)

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
        total = len(STEP_NAMES)
        if step >= total:
            self.setAccessibleDescription(f"All {total} steps complete")
        else:
            self.setAccessibleDescription(f"Step {step} of {total}: {self.current_name()}")

    def current_name(self) -> str:
        return STEP_NAMES.get(self.step, "")
