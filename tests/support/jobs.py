"""Waiting for an analysis job through the real queue and worker."""

from __future__ import annotations

import time

from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core.services.jobs import JobOutcome


def wait_for_outcome(app: Application, job_id: int, timeout_s: float = 120.0) -> JobOutcome:
    """Poll until the job leaves the queue (done, failed or cancelled); its outcome."""
    deadline = time.monotonic() + timeout_s
    while app.jobs.get_job(job_id).state in ("queued", "running"):
        assert time.monotonic() < deadline, f"job {job_id} did not finish in {timeout_s:.0f} s"
        time.sleep(0.02)
    return app.jobs.outcome(job_id)
