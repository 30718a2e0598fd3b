"""Awaiting a queued job from an ``async def`` route without blocking the event loop.

The worker's events arrive on its thread; a bus subscriber resolves an asyncio future
with ``call_soon_threadsafe``. The job's stored state is checked once after
subscribing, so a job that ended before the subscription is not missed.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.concurrency import run_in_threadpool

from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core.domain import JobState
from ophthai_desktop.core.errors import NotFound
from ophthai_desktop.core.events import AnalysisCancelled, AnalysisFailed, AnalysisFinished, Event
from ophthai_desktop.core.services.jobs import JobOutcome

ENDED = {JobState.DONE.value, JobState.FAILED.value, JobState.CANCELLED.value}


class JobTimeout(Exception):
    """The job did not end in time; it goes on in the queue."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} is still running")
        self.job_id = job_id


async def wait_for_job(application: Application, job_id: int, timeout_s: float) -> JobOutcome:
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def resolve() -> None:
        if not ended.done():
            ended.set_result(None)

    def on_event(event: Event) -> None:  # worker thread
        if (
            isinstance(event, AnalysisFinished | AnalysisFailed | AnalysisCancelled)
            and event.job_id == job_id
        ):
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(resolve)

    unsubscribe = application.bus.subscribe(on_event)
    try:
        outcome = await run_in_threadpool(application.jobs.outcome, job_id)
        if outcome.job.state not in ENDED:
            try:
                await asyncio.wait_for(ended, timeout_s)
            except TimeoutError as exc:
                raise JobTimeout(job_id) from exc
            try:
                outcome = await run_in_threadpool(application.jobs.outcome, job_id)
            except NotFound as exc:
                raise NotFound(
                    f"the analysis (job {job_id}) ended: its patient was deleted meanwhile"
                ) from exc
        return outcome
    finally:
        unsubscribe()
