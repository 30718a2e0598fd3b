"""A file dropped in the watch folder is analysed by the real engine on the tiny
random-weight checkpoint: watcher → ingest → queue → worker → stored analysis."""

from __future__ import annotations

from pathlib import Path

from ophthai_desktop.bootstrap import build_application
from ophthai_desktop.core import events as ev
from tests.conftest import make_settings
from tests.support.images import png_bytes
from tests.support.watch_folder import EventLog, wait_until


def test_a_dropped_scan_is_analysed(tmp_path: Path, tiny_checkpoint: Path) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()  # a configured watch folder is not made by the watcher
    app = build_application(
        make_settings(
            tmp_path,
            model_path=tiny_checkpoint,
            max_new_tokens=8,
            device="cpu",
            watch_folder_enabled=True,
            watch_folder_path=folder,
            watch_use_polling=True,
            watch_poll_seconds=0.05,
        )
    )
    log = EventLog(app.bus)
    try:
        app.start_worker()
        assert app.start_watcher()
        (folder / "fundus_OD.png").write_bytes(png_bytes((64, 48)))
        result = log.wait_finished("fundus_OD.png")["fundus_OD.png"]
        assert result.outcome == "ingested" and result.job_id is not None
        job_id = result.job_id
        assert wait_until(
            lambda: app.jobs.get_job(job_id).state not in ("queued", "running"), timeout_s=120
        ), "the analysis did not finish"
        outcome = app.jobs.outcome(job_id)
    finally:
        app.close()

    assert outcome.job.state == "done", outcome.job.error
    analysis = outcome.analysis
    assert analysis is not None and analysis.patient_id == result.patient_id
    assert analysis.parse_status == "parse_failed" and analysis.result is None  # random weights
    assert analysis.completion_tokens == 8
    finished = log.of(ev.AnalysisFinished)
    assert [e.job_id for e in finished] == [job_id]
    # Nothing abnormal was claimed from an unparseable answer.
    assert not log.of(ev.AbnormalScanDetected)
