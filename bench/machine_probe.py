"""What the machine itself costs, so that figures from different days can be compared.

The benchmarks run on virtual machines whose speed drifts from one session to the next,
and much of that drift is in the memory system rather than the processor: the cost of
a page the process (or the page cache) touches for the first time, and a proactive
reclaimer (Linux's DAMON ``pageout`` scheme) that evicts cold page-cache pages, the
mapped code of shared libraries included, so they fault in again. A watch-folder burst
writes ~200 MB of new page cache and a GUI phase runs code it has not run for seconds,
so both depend on these. This module measures them in the same run; the benchmark
scripts import it (``python bench/<script>.py`` puts ``bench/`` on the path).
"""

from __future__ import annotations

import mmap
import os
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Any

PAGE = mmap.PAGESIZE
_DAMON = Path("/sys/kernel/mm/damon/admin/kdamonds")


def fresh_page_us(megabytes: int = 64, rounds: int = 3) -> float:
    """Median microseconds to fault in one new anonymous page (first write).

    About 0.1-0.5 us on bare metal; several us on a virtual machine whose guest memory
    the host hands out lazily.
    """
    results = []
    size = megabytes << 20
    for _ in range(rounds):
        area = mmap.mmap(-1, size)
        started = time.perf_counter()
        for offset in range(0, size, PAGE):
            area[offset] = 1
        results.append((time.perf_counter() - started) / (size // PAGE) * 1e6)
        area.close()
    return round(statistics.median(results), 2)


def damon_schemes() -> list[str]:
    """The actions of the DAMON schemes of running kdamonds (``pageout``: proactive
    reclaim); empty where there is none or it cannot be read."""
    actions: list[str] = []
    try:
        kdamonds = sorted(p for p in _DAMON.iterdir() if p.name.isdigit())
    except OSError:
        return actions
    for kdamond in kdamonds:
        try:
            if (kdamond / "state").read_text().strip() != "on":
                continue
            for action in sorted(kdamond.glob("contexts/*/schemes/*/action")):
                actions.append(action.read_text().strip())
        except OSError:
            continue
    return actions


def file_refaults() -> int | None:
    """Pages of files evicted and read back since boot (``workingset_refault_file``)."""
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "workingset_refault_file":
                return int(value)
    except (OSError, ValueError):
        pass
    return None


class Faults:
    """Page faults of this process and file refaults of the machine over a span."""

    def __init__(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self._minor, self._major = usage.ru_minflt, usage.ru_majflt
        self._refaults = file_refaults()

    def since(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        refaults = file_refaults()
        return {
            "minor": usage.ru_minflt - self._minor,
            "major": usage.ru_majflt - self._major,
            "machine_file_refaults": None
            if refaults is None or self._refaults is None
            else refaults - self._refaults,
        }


def machine() -> dict[str, Any]:
    """The processor, the memory system's costs measured now, and the software."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": model or platform.processor(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "fresh_page_us": fresh_page_us(),
        "damon_schemes": damon_schemes(),
    }
