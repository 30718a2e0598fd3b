"""The migrations that fill a column from the rows already stored (0003 the oculomics
summary, 0004 and 0006 the name's sort key, 0011 the failed job a notification tells and
the app's warnings)
store what the application computes today,
and no migration imports the application: a migration must keep doing what it did when
it was written, whatever the services, models or helpers become later."""

from __future__ import annotations

import ast
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from ophthai_desktop.core.domain import text_sort_key
from ophthai_desktop.core.services.oculomics import OculomicsService, summary_to_json
from ophthai_desktop.core.storage import Database
from ophthai_desktop.core.storage.database import MIGRATIONS_DIR
from tests.support.old_tables import NOTIFICATIONS

T0 = datetime(2026, 1, 1, tzinfo=UTC)

# The tables as the tests write and read them (the columns every revision here has).
PATIENTS = sa.table(
    "patients",
    sa.column("id", sa.String()),
    sa.column("name", sa.String()),
    sa.column("symptoms", sa.JSON()),
    sa.column("history", sa.Text()),
    sa.column("status", sa.String()),
    sa.column("workflow_step", sa.Integer()),
    sa.column("admission_date", sa.DateTime(timezone=True)),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
MEASUREMENTS = sa.table(
    "oculomics_measurements",
    sa.column("patient_id", sa.String()),
    sa.column("eye", sa.String()),
    sa.column("measured_on", sa.Date()),
    sa.column("iop_mmhg", sa.Float()),
    sa.column("cup_to_disc_ratio", sa.Float()),
    sa.column("rnfl_thickness_um", sa.Float()),
    sa.column("vessel_density_pct", sa.Float()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def _patient(pid: str, name: str) -> dict[str, Any]:
    return {
        "id": pid,
        "name": name,
        "symptoms": [],
        "history": "",
        "status": "Stable",
        "workflow_step": 1,
        "admission_date": T0,
        "created_at": T0,
        "updated_at": T0,
    }


def _measurement(
    pid: str,
    eye: str,
    day: date,
    iop: float | None = None,
    cdr: float | None = None,
    rnfl: float | None = None,
    density: float | None = None,
) -> dict[str, Any]:
    return {
        "patient_id": pid,
        "eye": eye,
        "measured_on": day,
        "iop_mmhg": iop,
        "cup_to_disc_ratio": cdr,
        "rnfl_thickness_um": rnfl,
        "vessel_density_pct": density,
        "created_at": T0,
    }


def _measurements() -> list[dict[str, Any]]:
    """Series of several shapes: more dates than the summary's history keeps, both
    eyes on one date (the worse one counts: the higher pressure and cup-to-disc ratio,
    the thinner RNFL, the lower density), metrics last measured on different dates,
    a row with no value (stored before the service refused those), rows inserted out
    of date order, and enough patients for more than one of the migration's batches."""
    rows: list[dict[str, Any]] = []
    for month in range(14):
        day = date(2024, 1, 1) + timedelta(days=30 * month)
        rows.append(_measurement("pt-long", "OD", day, 14.0 + month / 2, 0.4, 95.0 - month))
        rows.append(
            _measurement(
                "pt-long",
                "OS",
                day,
                None if month % 3 == 0 else 16.5 + month / 3,
                None,
                None,
                None if month == 13 else 50.0 - month * 0.7,
            )
        )
    rows += [
        _measurement("pt-both", "OD", date(2025, 6, 1), 14.0, 0.3, 85.0, 45.5),
        _measurement("pt-both", "OS", date(2025, 6, 1), 25.0, 0.7, 72.0, 38.25),
        # Newest first: each metric's latest value is on another date.
        _measurement("pt-sparse", "OS", date(2025, 9, 1), rnfl=77.5),
        _measurement("pt-sparse", "OD", date(2025, 3, 1), cdr=0.55),
        _measurement("pt-sparse", "OD", date(2025, 5, 1), iop=5.5, density=41.0),
        _measurement("pt-sparse", "OS", date(2025, 5, 1), iop=8.0),
        _measurement("pt-empty-row", "OD", date(2025, 1, 1)),
    ]
    rows += [
        _measurement(f"pt-batch-{i:04d}", "OD" if i % 2 else "OS", date(2025, 1, 1 + i % 28))
        | {"iop_mmhg": 10.0 + i % 17, "vessel_density_pct": 30.0 + i % 23}
        for i in range(520)
    ]
    return rows


def test_0003_stores_the_summary_the_service_computes(db_url: str) -> None:
    """A database at 0002 with measurements comes out of 0003 with each measured
    patient's summary equal to the current service's, and none for the others. (If the
    service's summary ever changes, with a migration of its own, this compares with the
    summary as 0003 computed it, not with the service.)"""
    measurements = _measurements()
    measured = sorted({row["patient_id"] for row in measurements})
    db = Database(db_url)
    db.upgrade("0002")
    with db.engine.begin() as conn:
        conn.execute(
            PATIENTS.insert(),
            [_patient(pid, "n") for pid in [*measured, "pt-unmeasured"]],
        )
        conn.execute(MEASUREMENTS.insert(), measurements)

    db.upgrade("0003")
    stored_table = sa.table(
        "patients", sa.column("id", sa.String()), sa.column("oculomics_summary", sa.JSON())
    )
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(stored_table.c.id, stored_table.c.oculomics_summary))
        stored = {pid: summary for pid, summary in rows}
    db.upgrade()
    with db.session() as session:
        expected = {
            pid: summary_to_json(summary)
            for pid, summary in OculomicsService.summaries_in(session, measured).items()
        }
    db.dispose()

    assert stored == {**expected, "pt-unmeasured": None}
    assert len(stored["pt-long"]["history"]) == 12  # the test covers the history's cut


NAMES = (
    "Émile Zola",
    "Łukasz Ærøe",
    "Øyvind Þórsson",
    "Đorđe Dvořák",
    "ŒUVRE Straße",
    "İsmail Ünal",
    "ǅemal \u0131ld\u0131z",  # dotless i
    "ﬁona \uff2d\uff21\uff23",  # the fi ligature, full-width MAC
    "Σωκράτης ΟΔΥΣΣΕΑΣ",
    "Nguyễn Thị Minh",
    "山田 太郎",
    "O'Brien-Smith",
    "",
)


@pytest.mark.parametrize("before, revision", [("0003", "0004"), ("0005", "0006")])
def test_the_name_key_migrations_store_the_current_key(
    db_url: str, before: str, revision: str
) -> None:
    """A database at the revision before 0004 (no key yet) or 0006 (keys that kept æ, ø,
    ł as they are) comes out of it with every patient's key equal to
    ``text_sort_key`` of their name, over more than one batch."""
    names = [*NAMES, *(f"Ærø Ünal {i}" for i in range(1005))]
    db = Database(db_url)
    db.upgrade(before)
    with db.engine.begin() as conn:
        conn.execute(
            PATIENTS.insert(), [_patient(f"pt-{i:05d}", name) for i, name in enumerate(names)]
        )
        if before >= "0004":
            conn.execute(sa.text("UPDATE patients SET name_key = lower(name)"))

    db.upgrade(revision)
    keyed = sa.table(
        "patients", sa.column("id"), sa.column("name", sa.String()), sa.column("name_key")
    )
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(keyed.c.name, keyed.c.name_key).order_by(keyed.c.id)).all()
    db.dispose()

    assert [key for _name, key in rows] == [text_sort_key(name) for name in names]
    assert [name for name, _key in rows] == names  # the names themselves are untouched


JOBS = sa.table(
    "jobs",
    sa.column("id", sa.Integer()),
    sa.column("kind", sa.String()),
    sa.column("state", sa.String()),
    sa.column("patient_id", sa.String()),
    sa.column("image_sha256", sa.String()),
    sa.column("attempts", sa.Integer()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
ANALYSES = sa.table(
    "analyses",
    sa.column("id", sa.Integer()),
    sa.column("patient_id", sa.String()),
    sa.column("model_id", sa.String()),
    sa.column("generation_settings", sa.JSON()),
    sa.column("reasoning_text", sa.Text()),
    sa.column("answer_text", sa.Text()),
    sa.column("parse_status", sa.String()),
    sa.column("status", sa.String()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def test_0011_links_the_stored_failures_to_their_jobs_and_marks_the_app_s_warnings(
    db_url: str,
) -> None:
    """Failure notifications stored before 0011 named their job only in their words:
    each is linked to the one failed job of its patient those words name, whatever the
    patient's name holds; none is guessed for a job of another patient, one that did not
    fail, or a notification that is not a failure's. The warnings the app stored as
    info (a failure so linked, an answer not read naming its analysis, a file the watch
    folder did not take in) are marked; nothing else is, a client's in the same words
    neither."""
    db = Database(db_url)
    db.upgrade("0010")
    ann, bob = "pt-aaaaaaaaaaaa", "pt-bbbbbbbbbbbb"
    jobs = [(1, ann, "failed"), (2, ann, "done"), (3, bob, "failed"), (4, ann, "failed")]
    opening = "The analysis for patient "
    refused = "notes.png from the watch folder was not taken in: not an image."
    # (patient, analysis, type, words), then the job linked and whether a warning.
    notes = [
        (ann, None, "info", f"{opening}Ann Lee failed (job #1): CUDA out of memory.", 1, True),
        # The name holds the words too: only job 4 is a failed job of Ann's.
        (ann, None, "info", f"{opening}Ann failed (job #2): Lee failed (job #4): x.", 4, True),
        (bob, None, "info", f"{opening}Bob Roe failed (job #1): not Bob's job.", None, False),
        (ann, None, "critical", f"{opening}Ann Lee failed (job #1): critical.", None, False),
        (ann, None, "info", f"{opening}Ann Lee could not be read: no analysis.", None, False),
        (ann, 1, "info", f"{opening}Ann Lee could not be read: cut off. Read it.", None, True),
        (None, None, "info", f"{opening}Ann Lee failed (job #1): no patient.", None, False),
        (ann, None, "info", f"{opening}Ann Lee failed (job #9): a job not stored.", None, False),
        # Numbers the app never wrote (a leading zero, other scripts' digits) name none.
        (
            ann,
            None,
            "info",
            f"{opening}Al failed (job #04): x failed (job #\u0664): y.",
            None,
            False,
        ),
        (None, None, "info", refused, None, True),
        (ann, None, "info", refused, None, False),  # a client's: it names a patient
        (None, None, "success", refused, None, False),
    ]
    with db.engine.begin() as conn:
        conn.execute(PATIENTS.insert(), [_patient(ann, "Ann Lee"), _patient(bob, "Bob Roe")])
        conn.execute(
            JOBS.insert(),
            [
                {
                    "id": job_id,
                    "kind": "analysis",
                    "state": state,
                    "patient_id": patient_id,
                    "image_sha256": "a" * 64,
                    "attempts": 1,
                    "created_at": T0,
                }
                for job_id, patient_id, state in jobs
            ],
        )
        conn.execute(
            ANALYSES.insert(),
            {
                "id": 1,
                "patient_id": ann,
                "model_id": "OctoMed/OctoMed-7B",
                "generation_settings": {},
                "reasoning_text": "",
                "answer_text": "Diagnosis: DME or",
                "parse_status": "failed",
                "status": "preliminary",
                "created_at": T0,
            },
        )
        conn.execute(
            NOTIFICATIONS.insert(),
            [
                {
                    "patient_id": pid,
                    "analysis_id": analysis,
                    "message": text,
                    "type": kind,
                    "read": False,
                    "timestamp": T0,
                }
                for pid, analysis, kind, text, _job, _warning in notes
            ],
        )

    db.upgrade("0011")
    with db.engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT message, job_id, warning FROM notifications ORDER BY id")
        ).all()
    db.dispose()

    assert [message for message, _job, _warning in stored] == [note[3] for note in notes]
    assert [job for _message, job, _warning in stored] == [note[4] for note in notes]
    assert [bool(warning) for _m, _j, warning in stored] == [note[5] for note in notes]


def test_0011_takes_a_job_number_in_a_failure_s_words_beyond_any_job_id(db_url: str) -> None:
    """A patient's name is what a person typed: "failed (job #N): " in it with an N past
    the largest integer the jobs' id column holds (SQLite's 64 bits, PostgreSQL's 32)
    named no job, and the upgrade stopped on it (an overflow binding it), so the app
    could not start. Such a number names no job; the real one still links."""
    db = Database(db_url)
    db.upgrade("0010")
    ann = "pt-aaaaaaaaaaaa"
    name = "Ann failed (job #99999999999999999999999): x failed (job #4294967296): y"
    with db.engine.begin() as conn:
        conn.execute(PATIENTS.insert(), [_patient(ann, "Ann")])
        conn.execute(
            JOBS.insert(),
            {
                "id": 3,
                "kind": "analysis",
                "state": "failed",
                "patient_id": ann,
                "image_sha256": "a" * 64,
                "attempts": 1,
                "created_at": T0,
            },
        )
        conn.execute(
            NOTIFICATIONS.insert(),
            {
                "patient_id": ann,
                "analysis_id": None,
                "message": f"The analysis for patient {name} failed (job #3): CUDA error.",
                "type": "info",
                "read": False,
                "timestamp": T0,
            },
        )

    db.upgrade("0011")
    with db.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT job_id, warning FROM notifications")).all()
    db.dispose()

    assert [(job, bool(warning)) for job, warning in stored] == [(3, True)]


def _imports(tree: ast.AST) -> list[str]:
    """Every module an ``import`` in the tree names, at any depth ("." for relative)."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append("." * node.level + (node.module or ""))
    return found


def test_no_migration_imports_the_application() -> None:
    """A migration that imports a service, a model or a helper computes with whatever
    that code has become, against the schema as it was at its revision: it must carry
    its own frozen copy of what it needs."""
    files = sorted((MIGRATIONS_DIR / "versions").glob("*.py"))
    assert len(files) >= 8
    offending = {
        path.name: bad
        for path in files
        if (
            bad := [
                name
                for name in _imports(ast.parse(path.read_text(encoding="utf-8")))
                if name.split(".")[0] in {"ophthai_desktop", ""}
            ]
        )
    }
    assert offending == {}
