"""The core stays framework-free: importing it pulls in no GUI or web framework."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("PySide6", "fastapi", "starlette", "uvicorn", "torch", "transformers")


def test_core_imports_no_framework() -> None:
    code = (
        "import sys, importlib, pkgutil\n"
        "import ophthai_desktop.core as core\n"
        "for info in pkgutil.walk_packages(core.__path__, 'ophthai_desktop.core.'):\n"
        "    if '.migrations' in info.name:\n"
        "        continue\n"
        "    importlib.import_module(info.name)\n"
        "import ophthai_desktop.bootstrap\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "", f"core imported: {result.stdout.strip()}"
