"""PatientService: the patient operations every adapter calls."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core import domain
from ophthai_desktop.core import events as ev
from ophthai_desktop.core.errors import Conflict, InvalidInput, NotFound, UnsupportedMedia
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.services.patients import SORTABLE, NewImage, patient_after
from ophthai_desktop.core.storage import models as m
from tests.support.images import png_bytes
from tests.support.races import after_commit, meanwhile


def _collect(app: Application) -> list[ev.Event]:
    seen: list[ev.Event] = []
    app.bus.subscribe(seen.append)
    return seen


def _add_analysis(app: Application, patient_id: str) -> int:
    with app.db.session() as session:
        row = m.Analysis(
            patient_id=patient_id,
            model_id="test-model",
            parse_status="parsed",
            result={"classification": "Normal", "confidence": 90},
        )
        session.add(row)
        session.flush()
        return row.id


def test_create_get_and_defaults(app_services: Application, actor: Actor) -> None:
    events = _collect(app_services)
    created = app_services.patients.create_patient(
        {"name": "  Ada Lovelace ", "age": 71, "symptoms": ["blurred vision", " "]}, actor=actor
    )
    assert created.name == "Ada Lovelace"
    assert created.symptoms == ("blurred vision",)
    assert created.status == "Pending Analysis"
    assert created.workflow_step == 1
    assert created.admission_date.tzinfo is not None
    assert app_services.patients.get_patient(created.id) == created
    assert [type(e) for e in events] == [ev.PatientCreated]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x", "age": -1}, "age"),
        ({"name": "x", "age": 200}, "age"),
        ({"name": "x", "status": "Sleeping"}, "status"),
        ({"name": "x", "admission_date": datetime(2026, 1, 1)}, "admission_date"),
        ({"name": "x", "shoe_size": 44}, "shoe_size"),
        ({"age": 40}, "name"),
    ],
)
def test_invalid_fields_name_the_field(
    app_services: Application, actor: Actor, fields: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        app_services.patients.create_patient(fields, actor=actor)
    assert caught.value.field == field
    assert app_services.patients.list_patients().total == 0


def test_list_search_filter_paging_and_sort(app_services: Application, actor: Actor) -> None:
    service = app_services.patients
    names = ["Alice Moss", "Bob Stone", "Carla Mossberg", "Dan 100% Real", "Eve_underscore"]
    for index, name in enumerate(names):
        service.create_patient(
            {"name": name, "age": 30 + index, "status": "Critical" if index % 2 else "Stable"},
            actor=actor,
        )
    page = service.list_patients(limit=2)
    assert page.total == 5 and len(page.items) == 2
    assert [p.name for p in page.items] == ["Eve_underscore", "Dan 100% Real"]  # newest first
    assert {p.name for p in service.list_patients(search="moss").items} == {
        "Alice Moss",
        "Carla Mossberg",
    }
    assert [p.name for p in service.list_patients(search="100%").items] == ["Dan 100% Real"]
    assert [p.name for p in service.list_patients(search="e_u").items] == ["Eve_underscore"]
    critical = service.list_patients(status="Critical")
    assert critical.total == 2 and {p.status for p in critical.items} == {"Critical"}
    by_age = service.list_patients(order_by="age", descending=False, skip=1, limit=2)
    assert [p.age for p in by_age.items] == [31, 32]
    with pytest.raises(InvalidInput) as caught:
        service.list_patients(order_by="password")
    assert caught.value.field == "order_by"
    with pytest.raises(InvalidInput):
        service.list_patients(limit=501)
    with pytest.raises(InvalidInput):
        service.list_patients(skip=-1)


def test_a_patients_place_in_a_list_is_where_its_pages_put_them(
    app_services: Application, actor: Actor
) -> None:
    """The window loads the pages up to the chosen patient after a new search; their place
    must be the one the pages give, ties and missing values included, and none where the
    query leaves them out."""
    service = app_services.patients
    ages = [40, None, 40, 25, None, 61, 40]  # ties and patients with no age
    for index, age in enumerate(ages):
        fields: dict[str, Any] = {
            "name": f"Place {index}",
            "gender": "Female" if index % 2 else "Male",
        }
        if age is not None:
            fields["age"] = age
        service.create_patient(
            {**fields, "status": "Critical" if index % 3 == 0 else "Stable"}, actor=actor
        )
    queries: list[dict[str, Any]] = [
        {},
        {"order_by": "age", "descending": False},
        {"order_by": "age", "descending": True},
        {"order_by": "name", "descending": False},
        {"order_by": "gender", "descending": True},
        {"status": "Critical", "order_by": "age"},
        {"search": "place", "order_by": "appointment_date"},
    ]
    for query in queries:
        listed = [p.id for p in service.list_patients(limit=100, **query).items]
        for position, patient_id in enumerate(listed):
            assert service.position_of(patient_id, **query) == position, query
    stable = service.list_patients(status="Stable").items[0]
    assert service.position_of(stable.id, status="Critical") is None
    assert service.position_of(stable.id, search="no such name") is None
    assert service.position_of("pt-missing") is None
    with pytest.raises(InvalidInput):
        service.position_of(stable.id, order_by="password")


def test_update_and_delete_cascade(app_services: Application, actor: Actor) -> None:
    service = app_services.patients
    patient = service.create_patient(
        {"name": "To Delete"}, actor=actor, image=NewImage(png_bytes())
    )
    updated = service.update_patient(patient.id, {"status": "Critical", "age": 50}, actor=actor)
    assert (updated.status, updated.age) == ("Critical", 50)
    assert updated.updated_at >= patient.updated_at
    app_services.notifications.create_notification("n", patient_id=patient.id, actor=actor)
    app_services.oculomics.add_measurement(
        patient.id, eye="OD", measured_on=datetime.now(UTC).date(), iop_mmhg=15, actor=actor
    )
    _add_analysis(app_services, patient.id)
    image_path = app_services.images.path_for(patient.latest_scan.sha256)  # type: ignore[union-attr]
    assert image_path.is_file()

    events = _collect(app_services)
    service.delete_patient(patient.id, actor=actor)
    assert [type(e) for e in events] == [ev.NotificationDeleted, ev.PatientDeleted]
    with pytest.raises(NotFound):
        service.get_patient(patient.id)
    with app_services.db.session() as session:
        for model in (m.Scan, m.Notification, m.OculomicsMeasurement, m.Analysis):
            assert session.scalars(select(model)).all() == [], model.__name__
    assert not image_path.exists()
    with pytest.raises(NotFound):
        service.delete_patient(patient.id, actor=actor)


def test_an_update_that_changes_nothing_announces_nothing(
    app_services: Application, actor: Actor
) -> None:
    service = app_services.patients
    patient = service.create_patient(
        {"name": "Same", "age": 50, "symptoms": ["floaters"]}, actor=actor
    )
    events = _collect(app_services)

    same = service.update_patient(
        patient.id, {"name": "Same", "age": 50, "symptoms": ["floaters"]}, actor=actor
    )

    assert events == []
    assert same.updated_at == patient.updated_at
    changed = service.update_patient(patient.id, {"name": "Same", "age": 51}, actor=actor)
    assert [type(e) for e in events] == [ev.PatientUpdated]
    assert changed.age == 51 and changed.updated_at > patient.updated_at


def test_shared_image_survives_deleting_one_patient(
    app_services: Application, actor: Actor
) -> None:
    data = png_bytes((10, 10))
    first = app_services.patients.create_patient({"name": "A"}, actor=actor, image=NewImage(data))
    second = app_services.patients.create_patient({"name": "B"}, actor=actor, image=NewImage(data))
    assert first.latest_scan and second.latest_scan
    assert first.latest_scan.sha256 == second.latest_scan.sha256
    files = [p for p in app_services.settings.images_dir.rglob("*") if p.is_file()]
    assert len(files) == 1  # stored once
    app_services.patients.delete_patient(first.id, actor=actor)
    assert files[0].is_file()
    path, media_type = app_services.patients.latest_image(second.id)
    assert path.read_bytes() == data and media_type == "image/png"


def test_refused_image_creates_nothing(app_services: Application, actor: Actor) -> None:
    with pytest.raises(UnsupportedMedia):
        app_services.patients.create_patient(
            {"name": "X"}, actor=actor, image=NewImage(b"not an image at all")
        )
    assert app_services.patients.list_patients().total == 0
    assert not any(p.is_file() for p in app_services.settings.images_dir.rglob("*"))


def test_attach_image_resets_workflow(app_services: Application, actor: Actor) -> None:
    service = app_services.patients
    patient = service.create_patient({"name": "P"}, actor=actor)
    assert patient.workflow_step == 1
    assert service.update_patient(patient.id, {"workflow_step": 3}, actor=actor).workflow_step == 3
    scan = service.attach_image(
        patient.id,
        NewImage(png_bytes(), source="drop", modality="OCT", laterality="OD", filename="a.png"),
        actor=actor,
    )
    assert (scan.modality, scan.laterality, scan.source) == ("OCT", "OD", "drop")
    after = service.get_patient(patient.id)
    assert after.workflow_step == 1 and after.scan_count == 1 and after.latest_scan == scan
    with pytest.raises(InvalidInput) as caught:
        service.attach_image(patient.id, NewImage(png_bytes(), modality="MRI"), actor=actor)
    assert caught.value.field == "modality"


def test_validate_and_schedule_workflow(app_services: Application, actor: Actor) -> None:
    service = app_services.patients
    patient = service.create_patient({"name": "W"}, actor=actor)
    with pytest.raises(Conflict, match="no analysis"):
        service.validate_analysis(patient.id, approved=True, clinician="Dr A", actor=actor)
    analysis_id = _add_analysis(app_services, patient.id)
    with pytest.raises(InvalidInput):
        service.validate_analysis(patient.id, approved=True, clinician=" ", actor=actor)
    validated = service.validate_analysis(
        patient.id, approved=False, clinician="Dr A", notes="disagree: drusen", actor=actor
    )
    assert validated.validation_status == "rejected"
    assert validated.workflow_step == 3
    assert validated.latest_analysis is not None
    assert validated.latest_analysis.id == analysis_id
    assert validated.latest_analysis.status == "rejected"
    assert validated.latest_analysis.validated_by == "Dr A"

    with pytest.raises(InvalidInput):
        service.schedule_appointment(patient.id, datetime(2030, 1, 1, 9), actor=actor)
    with pytest.raises(InvalidInput, match="past"):
        service.schedule_appointment(patient.id, datetime.now(UTC) - timedelta(days=2), actor=actor)
    when = datetime.now(UTC) + timedelta(days=14)
    scheduled = service.schedule_appointment(patient.id, when, actor=actor)
    assert scheduled.appointment_date == when
    assert scheduled.workflow_step == 4


def test_cancelling_the_appointment_leaves_complete_for_scheduling(
    app_services: Application, actor: Actor
) -> None:
    service = app_services.patients
    patient = service.create_patient({"name": "Cancel"}, actor=actor)
    _add_analysis(app_services, patient.id)
    service.validate_analysis(patient.id, approved=True, clinician="Dr A", actor=actor)
    when = datetime.now(UTC) + timedelta(days=7)
    assert service.schedule_appointment(patient.id, when, actor=actor).workflow_step == 4
    cancelled = service.update_patient(patient.id, {"appointment_date": None}, actor=actor)
    assert cancelled.appointment_date is None and cancelled.workflow_step == 3


def test_an_appointment_given_by_an_update_completes_as_scheduling_does(
    app_services: Application, actor: Actor
) -> None:
    """PATCH appointmentDate at the scheduling step left the workflow there, where
    POST .../schedule with the same date completes it; before a verdict it only books."""
    service = app_services.patients
    early = service.create_patient({"name": "Early"}, actor=actor)
    ready = service.create_patient({"name": "Ready"}, actor=actor)
    _add_analysis(app_services, ready.id)
    service.validate_analysis(ready.id, approved=True, clinician="Dr A", actor=actor)
    when = datetime.now(UTC) + timedelta(days=7)

    booked = service.update_patient(early.id, {"appointment_date": when}, actor=actor)
    completed = service.update_patient(ready.id, {"appointment_date": when}, actor=actor)

    assert booked.appointment_date == when and booked.workflow_step == 1
    assert completed.appointment_date == when and completed.workflow_step == 4


def test_a_birth_date_is_held_to_the_oldest_age(app_services: Application, actor: Actor) -> None:
    with pytest.raises(InvalidInput) as caught:
        app_services.patients.create_patient(
            {"name": "Old", "birth_date": date(1800, 1, 1)}, actor=actor
        )
    assert caught.value.field == "birth_date" and "over 130" in caught.value.message


def _unreadable_analysis_of(app: Application, patient_id: str) -> int:
    """An analysis of the patient whose answer could not be read (its id)."""
    with app.db.session() as session:
        row = m.Analysis(
            patient_id=patient_id, model_id="m", parse_status="parse_failed", result=None
        )
        session.add(row)
        session.flush()
        return int(row.id)


def test_the_newest_analysis_sent_back_unparsed_is_no_new_result(
    app_services: Application, actor: Actor
) -> None:
    """A client PATCHing back the patient it read, whose newest analysis could not be
    parsed, was refused: 'The answer has no classification'."""
    service = app_services.patients
    patient = service.create_patient({"name": "Unparsed"}, actor=actor)
    analysis_id = _unreadable_analysis_of(app_services, patient.id)
    echoed = {"analysis_id": analysis_id, "classification": None, "confidence": None}
    same = service.update_patient(patient.id, {"history": "x"}, actor=actor, ai_result=echoed)
    assert same.history == "x" and same.latest_analysis is not None
    assert same.latest_analysis.id == analysis_id


def test_scheduling_before_a_verdict_books_without_completing(
    app_services: Application, actor: Actor
) -> None:
    """Complete means a verdict and an appointment: booking a patient never analysed
    keeps the appointment and the step; the verdict then completes the workflow."""
    service = app_services.patients
    patient = service.create_patient({"name": "Early booking"}, actor=actor)
    when = datetime.now(UTC) + timedelta(days=7)

    booked = service.schedule_appointment(patient.id, when, actor=actor)

    assert booked.appointment_date == when
    assert booked.workflow_step == 1 and booked.validation_status is None
    _add_analysis(app_services, patient.id)
    validated = service.validate_analysis(patient.id, approved=True, clinician="Dr A", actor=actor)
    assert validated.workflow_step == 4 and validated.appointment_date == when


def test_a_verdict_with_only_a_past_appointment_goes_to_scheduling(
    app_services: Application, actor: Actor
) -> None:
    service = app_services.patients
    patient = service.create_patient(
        {"name": "Seen before", "appointment_date": datetime(2020, 5, 1, 9, tzinfo=UTC)},
        actor=actor,
    )
    _add_analysis(app_services, patient.id)

    validated = service.validate_analysis(patient.id, approved=True, clinician="Dr A", actor=actor)

    assert validated.workflow_step == 3


@pytest.mark.parametrize("approved", [True, False])
@pytest.mark.parametrize("scheduled", [False, True])
def test_withdrawing_a_verdict_goes_back_to_validation_keeping_the_appointment(
    app_services: Application, actor: Actor, approved: bool, scheduled: bool
) -> None:
    service = app_services.patients
    patient = service.create_patient({"name": "Withdrawn"}, actor=actor)
    _add_analysis(app_services, patient.id)
    service.validate_analysis(patient.id, approved=approved, clinician="Dr A", actor=actor)
    when = datetime.now(UTC) + timedelta(days=7)
    if scheduled:
        assert service.schedule_appointment(patient.id, when, actor=actor).workflow_step == 4

    withdrawn = service.update_patient(patient.id, {"validation_status": None}, actor=actor)

    assert withdrawn.validation_status is None
    assert withdrawn.latest_analysis is not None
    assert withdrawn.latest_analysis.status == "preliminary"
    assert withdrawn.workflow_step == 2
    assert withdrawn.appointment_date == (when if scheduled else None)


def test_withdrawing_a_verdict_after_a_new_scan_stays_at_analysis(
    app_services: Application, actor: Actor
) -> None:
    service = app_services.patients
    patient = service.create_patient({"name": "Rescanned"}, actor=actor)
    _add_analysis(app_services, patient.id)
    service.validate_analysis(patient.id, approved=True, clinician="Dr A", actor=actor)
    service.attach_image(patient.id, NewImage(png_bytes(), modality="OCT"), actor=actor)

    withdrawn = service.update_patient(patient.id, {"validation_status": None}, actor=actor)

    assert withdrawn.workflow_step == 1


@pytest.mark.parametrize("booking", ["schedule", "patch"])
def test_rejecting_an_unreadable_answer_goes_back_to_analysis_and_a_booking_completes_nothing(
    app_services: Application, actor: Actor, booking: str
) -> None:
    """The rejected answer holds no result (the patient stays "Pending Analysis"): the
    rejection moved the workflow on to scheduling, and a follow-up booked then showed the
    patient Complete. It goes back to analysis; the booking is kept, and the verdict on
    the next analysis completes the workflow."""
    service = app_services.patients
    patient = service.create_patient({"name": "Unreadable"}, actor=actor)
    analysis_id = _unreadable_analysis_of(app_services, patient.id)
    when = datetime.now(UTC) + timedelta(days=7)

    rejected = service.validate_analysis(
        patient.id, approved=False, clinician="Dr A", analysis_id=analysis_id, actor=actor
    )
    if booking == "schedule":
        booked = service.schedule_appointment(patient.id, when, actor=actor)
    else:
        booked = service.update_patient(patient.id, {"appointment_date": when}, actor=actor)

    assert rejected.workflow_step == 1 and rejected.status == "Pending Analysis"
    assert booked.appointment_date == when
    assert booked.workflow_step == 1 and booked.validation_status == "rejected"
    _add_analysis(app_services, patient.id)  # analysed again, and read
    validated = service.validate_analysis(patient.id, approved=True, clinician="Dr A", actor=actor)
    assert validated.workflow_step == 4 and validated.appointment_date == when


def test_withdrawing_the_rejection_of_an_unreadable_answer_goes_back_to_validation(
    app_services: Application, actor: Actor
) -> None:
    """As any verdict withdrawn (the answer awaits a verdict again), unless a scan came
    since: then it stays at analysis."""
    service = app_services.patients
    patient = service.create_patient({"name": "Unreadable"}, actor=actor)
    _unreadable_analysis_of(app_services, patient.id)
    service.validate_analysis(patient.id, approved=False, clinician="Dr A", actor=actor)

    withdrawn = service.update_patient(patient.id, {"validation_status": None}, actor=actor)

    assert withdrawn.workflow_step == 2 and withdrawn.validation_status is None
    service.validate_analysis(patient.id, approved=False, clinician="Dr A", actor=actor)
    service.attach_image(patient.id, NewImage(png_bytes(), modality="OCT"), actor=actor)
    rescanned = service.update_patient(patient.id, {"validation_status": None}, actor=actor)
    assert rescanned.workflow_step == 1


def _years_ago(years: int, *, days: int = 0) -> date:
    today = date.today()
    try:
        then = today.replace(year=today.year - years)
    except ValueError:  # 29 February
        then = today.replace(year=today.year - years, day=28)
    return then + timedelta(days=days)


def test_the_age_follows_the_birth_date(app_services: Application, actor: Actor) -> None:
    service = app_services.patients
    born = _years_ago(70, days=1)  # 70 tomorrow: 69 today

    created = service.create_patient({"name": "Born", "birth_date": born}, actor=actor)
    agreeing = service.create_patient({"name": "Both", "birth_date": born, "age": 69}, actor=actor)

    assert created.age == 69 and agreeing.age == 69
    with pytest.raises(InvalidInput) as caught:
        service.create_patient({"name": "Both", "birth_date": born, "age": 50}, actor=actor)
    assert caught.value.field == "age" and caught.value.also == ("birth_date",)
    assert "does not match the birth date" in caught.value.message
    with pytest.raises(InvalidInput):
        service.update_patient(created.id, {"age": 50}, actor=actor)
    moved = service.update_patient(created.id, {"birth_date": _years_ago(40)}, actor=actor)
    assert moved.age == 40
    forgotten = service.update_patient(created.id, {"birth_date": None}, actor=actor)
    assert forgotten.birth_date is None and forgotten.age == 40
    assert service.update_patient(created.id, {"age": 41}, actor=actor).age == 41


def test_the_age_is_current_on_read_after_a_birthday(
    app_services: Application, actor: Actor
) -> None:
    """The stored age is as of the last change; a birth date gives today's."""
    service = app_services.patients
    patient = service.create_patient(
        {"name": "Birthday", "birth_date": _years_ago(60)}, actor=actor
    )
    with app_services.db.session() as session:
        row = session.get(m.Patient, patient.id)
        assert row is not None and row.age == 60
        row.age = 59  # as stored the day before the birthday
    events = _collect(app_services)

    read = service.get_patient(patient.id)
    assert read.age == 60
    echoed = service.update_patient(
        patient.id, {"age": 60, "birth_date": patient.birth_date}, actor=actor
    )
    assert echoed.updated_at == read.updated_at and events == []  # sent back: no change


def test_the_whole_patient_sent_back_with_a_corrected_birth_date_is_served(
    app_services: Application, actor: Actor
) -> None:
    """A client that PATCHes back the patient it read, birth date corrected, sends the
    age it read too: the birth date decides, the echoed age is not a contradiction."""
    service = app_services.patients
    read = service.create_patient({"name": "Typo", "birth_date": _years_ago(70)}, actor=actor)
    assert read.age == 70

    fixed = service.update_patient(
        read.id, {"age": read.age, "birth_date": _years_ago(60)}, actor=actor
    )
    assert fixed.age == 60

    # Read the day before a birthday, sent back on the day: the age it read is a year
    # behind the birth date, and it is the birth date that counts.
    with app_services.db.session() as session:
        row = session.get(m.Patient, read.id)
        assert row is not None
        row.birth_date = _years_ago(61)  # 61 today; read yesterday as 60
    again = service.update_patient(
        read.id, {"age": 60, "birth_date": _years_ago(61), "history": "x"}, actor=actor
    )
    assert again.age == 61 and again.history == "x"
    with pytest.raises(InvalidInput):  # any other disagreeing age is refused as before
        service.update_patient(read.id, {"age": 50}, actor=actor)


NAMES = ["Zoe", "adam", "Émile", "Dan", "zoë", "bob", "Ärne", "de la Cruz", "Ann", "Élodie"]


def test_names_sort_ignoring_case_and_accents_with_a_stable_tiebreak(
    app_services: Application, actor: Actor
) -> None:
    service = app_services.patients
    for index, name in enumerate(NAMES):
        service.create_patient({"name": name}, actor=actor, patient_id=f"p{index:02d}")
    renamed = service.create_patient({"name": "Zed"}, actor=actor, patient_id="p99")
    service.update_patient(renamed.id, {"name": "carl"}, actor=actor)

    ascending = service.list_patients(order_by="name", descending=False, limit=100).items
    pages = [
        p.name
        for skip in range(0, 11, 3)
        for p in service.list_patients(order_by="name", descending=False, skip=skip, limit=3).items
    ]
    descending = service.list_patients(order_by="name", descending=True, limit=100).items

    expected = [
        "adam", "Ann", "Ärne", "bob", "carl", "Dan", "de la Cruz", "Élodie", "Émile", "Zoe", "zoë"
    ]  # fmt: skip
    assert [p.name for p in ascending] == expected  # Zoe (p00) before zoë (p04): by id
    assert pages == expected
    assert [p.name for p in descending] == expected[::-1]


def test_letters_without_a_separable_accent_sort_with_their_base_letters(
    app_services: Application, actor: Actor
) -> None:
    service = app_services.patients
    for index, name in enumerate(("Zed", "Øyvind", "Ærø", "Łukasz", "Oscar", "Lars")):
        service.create_patient({"name": name}, actor=actor, patient_id=f"n{index}")
    listed = service.list_patients(order_by="name", descending=False).items
    assert [p.name for p in listed] == ["Ærø", "Lars", "Łukasz", "Oscar", "Øyvind", "Zed"]


def test_sex_sorts_ignoring_case(app_services: Application, actor: Actor) -> None:
    service = app_services.patients
    for index, gender in enumerate(("male", "Other", "Female", "female", "Male")):
        service.create_patient({"name": "G", "gender": gender}, actor=actor, patient_id=f"g{index}")

    listed = service.list_patients(order_by="gender", descending=False).items

    assert [p.gender for p in listed] == ["Female", "female", "male", "Male", "Other"]


def test_sex_folds_ascii_case_alone_on_both_databases(
    app_services: Application, actor: Actor
) -> None:
    """PostgreSQL's lower() folded É to é, which SQLite's NOCASE does not: the same
    patients came in another order there. Both now fold ASCII letters alone, then
    compare bytes."""
    service = app_services.patients
    for index, gender in enumerate(("été", "Été", "ÉTÉ", "Féminin", "FÉMININ")):
        service.create_patient({"name": "G", "gender": gender}, actor=actor, patient_id=f"g{index}")

    listed = service.list_patients(order_by="gender", descending=False).items
    first = service.list_patients(order_by="gender", descending=False, limit=2).items
    rest = service.list_patients(
        order_by="gender", descending=False, after=patient_after(first[-1], "gender")
    ).items

    expected = ["FÉMININ", "Féminin", "ÉTÉ", "Été", "été"]
    assert [p.gender for p in listed] == expected
    assert [p.gender for p in first + rest] == expected


def _sort_text_as_a_locale_does(app_services: Application) -> None:
    """On PostgreSQL, give the patients' id and status the collation a database made
    with an ``en_US`` locale gives its text columns (``p2`` between ``P1`` and ``P3``);
    the test database's own locale is C."""
    if app_services.db.engine.dialect.name != "postgresql":
        return
    from sqlalchemy import text

    with app_services.db.engine.begin() as conn:
        if not conn.scalar(text("SELECT 1 FROM pg_collation WHERE collname = 'en-US-x-icu'")):
            pytest.skip("this PostgreSQL server has no ICU collations")
        for column, kind in (("id", "varchar(64)"), ("status", "varchar(32)")):
            conn.execute(
                text(
                    f'ALTER TABLE patients ALTER COLUMN {column} TYPE {kind} COLLATE "en-US-x-icu"'
                )
            )


def test_ids_and_statuses_sort_as_on_sqlite_whatever_the_locale(
    app_services: Application, actor: Actor
) -> None:
    """A clinic's PostgreSQL made with an en_US locale sorted ids (and so every tie)
    ignoring case, where SQLite compares bytes: pages came in another order."""
    _sort_text_as_a_locale_does(app_services)
    service = app_services.patients
    for patient_id in ("p2", "P1", "P3", "a1", "B1"):
        service.create_patient(
            {"name": "Same", "status": "Stable"}, actor=actor, patient_id=patient_id
        )
    expected = ["B1", "P1", "P3", "a1", "p2"]

    by_id = service.list_patients(order_by="id", descending=False).items
    by_name = service.list_patients(order_by="name", descending=False).items
    by_status = service.list_patients(order_by="status", descending=True).items
    first = service.list_patients(order_by="name", descending=False, limit=2).items
    rest = service.list_patients(
        order_by="name", descending=False, after=patient_after(first[-1], "name")
    ).items

    assert [p.id for p in by_id] == expected
    assert [p.id for p in by_name] == expected
    assert [p.id for p in by_status] == expected[::-1]
    assert [p.id for p in first + rest] == expected
    assert service.position_of("a1", order_by="name", descending=False) == 3


def test_age_sorts_by_the_age_shown(app_services: Application, actor: Actor) -> None:
    """A birth date gives today's age; the stored one lags behind a birthday since."""
    service = app_services.patients
    service.create_patient({"name": "A", "age": 59}, actor=actor, patient_id="a59")
    service.create_patient({"name": "B", "age": 61}, actor=actor, patient_id="b61")
    service.create_patient({"name": "C", "age": 30}, actor=actor, patient_id="c30")
    born = service.create_patient(
        {"name": "D", "birth_date": _years_ago(60)}, actor=actor, patient_id="d60"
    )
    young = service.create_patient(
        {"name": "E", "birth_date": _years_ago(45, days=1)}, actor=actor, patient_id="e44"
    )
    service.create_patient({"name": "F"}, actor=actor, patient_id="fnone")
    with app_services.db.session() as session:
        for pid, stale in ((born.id, 58), (young.id, 50)):
            row = session.get(m.Patient, pid)
            assert row is not None
            row.age = stale  # as stored before the birthdays since

    ascending = service.list_patients(order_by="age", descending=False).items

    assert [p.id for p in ascending if p.age is not None] == ["c30", "e44", "a59", "d60", "b61"]
    assert [p.age for p in ascending if p.age is not None] == [30, 44, 59, 60, 61]


def test_age_sorts_and_pages_by_the_day_the_ages_shown_are_counted_to(
    app_services: Application, actor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Just past midnight on a birthday (the local day ahead of the one the sort
    counted to): the list showed 60 before 59, and the next page after the 60-year-old
    skipped the 59-year-old."""
    service = app_services.patients
    tomorrow = date.today() + timedelta(days=1)
    monkeypatch.setattr(domain, "local_today", lambda: tomorrow)
    service.create_patient(
        {"name": "D", "birth_date": _years_ago(60, days=1)}, actor=actor, patient_id="d60"
    )
    service.create_patient({"name": "Z", "age": 59}, actor=actor, patient_id="z59")

    listed = service.list_patients(order_by="age", descending=False).items
    first = service.list_patients(order_by="age", descending=False, limit=1).items
    rest = service.list_patients(
        order_by="age", descending=False, after=patient_after(first[0], "age")
    ).items

    assert [(p.id, p.age) for p in listed] == [("z59", 59), ("d60", 60)]
    assert [p.id for p in [*first, *rest]] == ["z59", "d60"]


def test_a_birth_date_on_the_local_day_is_today_not_the_future(
    app_services: Application, actor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refusal of a future birth date counted to the same day as the ages shown."""
    tomorrow = date.today() + timedelta(days=1)
    monkeypatch.setattr(domain, "local_today", lambda: tomorrow)

    born = app_services.patients.create_patient({"name": "N", "birth_date": tomorrow}, actor=actor)

    assert born.age == 0
    with pytest.raises(InvalidInput, match="in the future"):
        app_services.patients.create_patient(
            {"name": "N", "birth_date": tomorrow + timedelta(days=1)}, actor=actor
        )


def test_birth_date_sorts_oldest_first_with_patients_without_one_last(
    app_services: Application, actor: Actor
) -> None:
    service = app_services.patients
    for patient_id, born in (
        ("b1990", date(1990, 5, 1)),
        ("n1", None),
        ("b1950", date(1950, 12, 31)),
        ("b2001", date(2001, 1, 2)),
        ("n2", None),
    ):
        service.create_patient(
            {"name": "P", "birth_date": born}, actor=actor, patient_id=patient_id
        )

    def ids(descending: bool, skip: int = 0, limit: int = 100) -> list[str]:
        page = service.list_patients(
            order_by="birth_date", descending=descending, skip=skip, limit=limit
        )
        return [p.id for p in page.items]

    assert ids(descending=False) == ["b1950", "b1990", "b2001", "n1", "n2"]
    assert ids(descending=True) == ["b2001", "b1990", "b1950", "n2", "n1"]
    assert ids(descending=False, skip=2, limit=2) == ["b2001", "n1"]  # pages walk the same


@pytest.mark.parametrize(
    ("order_by", "values"),
    [
        ("age", ({"age": 40}, {"age": 50})),
        ("birth_date", ({"birth_date": date(1960, 1, 1)}, {"birth_date": date(1970, 1, 1)})),
        ("gender", ({"gender": "female"}, {"gender": "male"})),
        ("appointment_date", ("2099-01-01", "2099-06-01")),
    ],
)
def test_patients_without_a_value_come_last_whichever_the_direction(
    app_services: Application, actor: Actor, order_by: str, values: tuple[Any, Any]
) -> None:
    """The same on SQLite (NULL first ascending) and PostgreSQL (NULL first descending)."""
    service = app_services.patients
    service.create_patient({"name": "Blank"}, actor=actor, patient_id="blank")
    for patient_id, value in zip(("low", "high"), values, strict=True):
        if order_by == "appointment_date":
            service.create_patient({"name": "P"}, actor=actor, patient_id=patient_id)
            when = datetime.fromisoformat(f"{value}T09:00:00+00:00")
            service.schedule_appointment(patient_id, when, actor=actor)
        else:
            service.create_patient({"name": "P", **value}, actor=actor, patient_id=patient_id)

    ascending = service.list_patients(order_by=order_by, descending=False).items
    descending = service.list_patients(order_by=order_by, descending=True).items

    assert [p.id for p in ascending] == ["low", "high", "blank"]
    assert [p.id for p in descending] == ["high", "low", "blank"]


def test_an_update_to_an_appointment_in_the_past_is_refused_as_scheduling_is(
    app_services: Application, actor: Actor
) -> None:
    service = app_services.patients
    patient = service.create_patient({"name": "P"}, actor=actor)
    past = datetime(2001, 1, 1, 10, 0, tzinfo=UTC)

    with pytest.raises(InvalidInput) as by_update:
        service.update_patient(patient.id, {"appointment_date": past}, actor=actor)
    with pytest.raises(InvalidInput) as by_schedule:
        service.schedule_appointment(patient.id, past, actor=actor)

    assert (by_update.value.field, by_update.value.message) == (
        by_schedule.value.field,
        by_schedule.value.message,
    )
    assert by_update.value.field == "appointment_date"
    assert service.get_patient(patient.id).appointment_date is None


def test_duplicate_client_id_conflicts(app_services: Application, actor: Actor) -> None:
    app_services.patients.create_patient({"name": "A"}, actor=actor, patient_id="MRN-1")
    with pytest.raises(Conflict):
        app_services.patients.create_patient({"name": "B"}, actor=actor, patient_id="MRN-1")
    with pytest.raises(InvalidInput):
        app_services.patients.create_patient({"name": "C"}, actor=actor, patient_id="bad id/..")


def test_an_id_ending_in_a_newline_is_refused(app_services: Application, actor: Actor) -> None:
    # The id's pattern ends in ``$``, which ``re.match`` lets match before a final newline.
    with pytest.raises(InvalidInput):
        app_services.patients.create_patient({"name": "C"}, actor=actor, patient_id="MRN-2\n")
    assert not app_services.patients.list_patients(limit=10).items


def test_audit_trail_names_who_and_never_the_patient(
    app_services: Application, actor: Actor
) -> None:
    service = app_services.patients
    patient = service.create_patient({"name": "Secret Name"}, actor=actor)
    service.update_patient(patient.id, {"name": "Other Secret"}, actor=Actor("10.0.0.7", "api"))
    _add_analysis(app_services, patient.id)
    service.validate_analysis(patient.id, approved=True, clinician="Dr B", actor=actor)
    service.schedule_appointment(patient.id, datetime.now(UTC) + timedelta(days=1), actor=actor)
    service.delete_patient(patient.id, actor=actor)
    events = app_services.audit.list_events(entity_type="patient", entity_id=patient.id)
    assert [e.action for e in reversed(events.items)] == [
        "create",
        "update",
        "validate",
        "schedule",
        "delete",
    ]
    update = next(e for e in events.items if e.action == "update")
    assert (update.actor, update.origin) == ("10.0.0.7", "api")
    assert update.details == {"fields": ["name"]}
    assert "Secret" not in repr(events)


def test_an_update_that_changes_nothing_is_not_audited_announced_or_dated(
    app_services: Application, actor: Actor
) -> None:
    service = app_services.patients
    patient = service.create_patient({"name": "Same", "age": 40, "history": "h"}, actor=actor)
    seen = _collect(app_services)

    for fields in ({}, {"name": "Same", "age": 40}, {"history": "h", "validation_status": None}):
        unchanged = service.update_patient(patient.id, fields, actor=actor)
        assert unchanged == patient

    assert seen == []
    events = app_services.audit.list_events(entity_type="patient", entity_id=patient.id)
    assert [e.action for e in events.items] == ["create"]


def test_concurrent_creates_from_threads(app_services: Application, actor: Actor) -> None:
    errors: list[BaseException] = []

    def create(index: int) -> None:
        try:
            for j in range(10):
                app_services.patients.create_patient({"name": f"T{index}-{j}"}, actor=actor)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert app_services.patients.list_patients().total == 40


def test_client_supplied_analysis(app_services: Application, actor: Actor) -> None:
    service = app_services.patients
    patient = service.create_patient({"name": "Client"}, actor=actor)
    result = {
        "classification": "AMD",
        "confidence": "82%",
        "findings": "drusen",
        "recommendation": "OCT in 6 months",
        "explanation": "Soft drusen.",
        "model": "seed-frontend",
    }
    updated = service.record_client_analysis(patient.id, result, actor=actor)
    analysis = updated.latest_analysis
    assert analysis is not None
    assert analysis.parse_status == "client_supplied"
    assert analysis.result == {
        "classification": "AMD",
        "confidence": 82.0,
        "findings": ["drusen"],
        "recommendation": "OCT in 6 months",
        "explanation": "Soft drusen.",
    }
    assert analysis.model_id == "seed-frontend"
    assert updated.workflow_step == 2
    # Echoed back unchanged (with its analysis_id): nothing new is stored.
    again = service.record_client_analysis(
        patient.id, {**result, "analysis_id": analysis.id}, actor=actor
    )
    assert again.latest_analysis == analysis
    assert len(service.list_analyses(patient.id)) == 1
    with pytest.raises(InvalidInput) as caught:
        service.record_client_analysis(patient.id, {"findings": []}, actor=actor)
    assert caught.value.field == "aiAnalysis"


def test_a_client_result_giving_two_classifications_is_refused_not_one_taken(
    app_services: Application, actor: Actor
) -> None:
    """Keys are read in any case, so two spellings of one key are two answers."""
    service = app_services.patients
    patient = service.create_patient({"name": "Client"}, actor=actor)
    result = {"classification": "DME", "Classification": "Normal", "confidence": 80}
    with pytest.raises(InvalidInput, match="DME and Normal") as caught:
        service.record_client_analysis(patient.id, result, actor=actor)
    assert caught.value.field == "aiAnalysis"
    assert service.list_analyses(patient.id) == ()


def test_an_unreadable_answer_can_be_rejected_not_approved(
    app_services: Application, actor: Actor
) -> None:
    """An answer that could not be read has no classification: approving it recorded an
    approval of nothing (the patient stayed "Pending Analysis" while their workflow went
    on to Complete). It is refused, changing nothing; rejecting it is recorded."""
    service = app_services.patients
    patient = service.create_patient({"name": "Unreadable"}, actor=actor)
    analysis_id = _unreadable_analysis_of(app_services, patient.id)

    for approve in (
        lambda: service.validate_analysis(
            patient.id, approved=True, clinician="Dr A", analysis_id=analysis_id, actor=actor
        ),
        lambda: service.update_patient(patient.id, {"validation_status": "approved"}, actor=actor),
    ):
        with pytest.raises(Conflict, match="nothing to approve; reject it, or analyse"):
            approve()
    unchanged = service.get_patient(patient.id)
    assert unchanged.validation_status is None and unchanged.validated_by is None
    assert unchanged.latest_analysis is not None
    assert unchanged.latest_analysis.status == "preliminary"

    rejected = service.validate_analysis(
        patient.id, approved=False, clinician="Dr A", analysis_id=analysis_id, actor=actor
    )
    assert rejected.validation_status == "rejected"
    assert rejected.latest_analysis is not None and rejected.latest_analysis.status == "rejected"


def test_validating_an_analysis_that_is_no_longer_the_newest_conflicts(
    app_services: Application, actor: Actor
) -> None:
    patient = app_services.patients.create_patient({"name": "Two Analyses"}, actor=actor)
    read = _add_analysis(app_services, patient.id)
    _add_analysis(app_services, patient.id)  # arrived while the clinician was reading
    with pytest.raises(Conflict, match="newer analysis"):
        app_services.patients.validate_analysis(
            patient.id, approved=True, clinician="Dr A", analysis_id=read, actor=actor
        )


def test_an_older_analysis_sent_back_is_a_stale_copy_not_a_new_result(
    app_services: Application, actor: Actor
) -> None:
    """Sent back as read after a newer analysis arrived (the whole patient PATCHed
    back): not stored, and with a verdict a Conflict that changes nothing, whether the
    older one was parsed or not."""
    service = app_services.patients
    patient = service.create_patient({"name": "Stale"}, actor=actor)
    parsed = _add_analysis(app_services, patient.id)
    with app_services.db.session() as session:
        unparsed = m.Analysis(
            patient_id=patient.id, model_id="test-model", parse_status="parse_failed"
        )
        session.add(unparsed)
        session.flush()
        unparsed_id = unparsed.id
    newer = _add_analysis(app_services, patient.id)
    copies = [
        {"classification": "Normal", "confidence": 90, "analysis_id": parsed},
        {"classification": None, "confidence": None, "analysis_id": unparsed_id},
    ]
    for copy in copies:
        kept = service.record_client_analysis(patient.id, copy, actor=actor)
        assert kept.latest_analysis is not None and kept.latest_analysis.id == newer
        with pytest.raises(Conflict, match="newer analysis") as caught:
            service.update_patient(
                patient.id,
                {"name": "Renamed", "validation_status": "approved"},
                ai_result=copy,
                actor=actor,
            )
        assert caught.value.field == "aiAnalysis"
    after = service.get_patient(patient.id)
    assert (after.name, after.validation_status) == ("Stale", None)
    assert len(service.list_analyses(patient.id)) == 3


def test_search_ignores_case_in_every_script(app_services: Application, actor: Actor) -> None:
    service = app_services.patients
    for name in ("Zoë Ångström", "Ömer Çelik", "Ελένη Παπαδοπούλου", "Plain Ascii"):
        service.create_patient({"name": name}, actor=actor)

    def found(search: str) -> list[str]:
        return [p.name for p in service.list_patients(search=search).items]

    assert found("ångström") == found("ZOË") == ["Zoë Ångström"]
    assert found("öMER çELIK") == ["Ömer Çelik"]
    assert found("ΕΛΈΝΗ") == ["Ελένη Παπαδοπούλου"]
    assert found("plain") == ["Plain Ascii"]


def test_search_ignores_accents(app_services: Application, actor: Actor) -> None:
    """A clinician at a keyboard without accents finds José, Müller and Øyvind."""
    service = app_services.patients
    names = ("José García", "Jürgen Müller", "Øyvind Straße", "Łukasz Nowak", "Rene\u0301e Roy")
    for name in names:
        service.create_patient({"name": name}, actor=actor)
    service.create_patient({"name": "Jose Plain"}, actor=actor, patient_id="pt-JoseID")

    def found(search: str) -> set[str]:
        return {p.name for p in service.list_patients(search=search).items}

    assert found("jose") == found("JOSÉ") == {"José García", "Jose Plain"}
    assert found("jose garcia") == {"José García"}
    assert found("muller") == found("MÜLLER") == found("Müller") == {"Jürgen Müller"}
    assert found("oyvind strasse") == found("Straße") == {"Øyvind Straße"}
    assert found("lukasz") == {"Łukasz Nowak"}
    assert found("renée") == found("renee") == {"Rene\u0301e Roy"}  # stored decomposed
    assert found("josei") == {"Jose Plain"}  # the id, case ignored
    assert service.list_patients(search="muller").total == 1
    assert found("mueller") == set()  # no spelling rules, only accents and case


def test_a_patient_created_with_an_image_was_not_updated_before_it_was_created(
    app_services: Application, actor: Actor
) -> None:
    created = app_services.patients.create_patient(
        {"name": "Imaged"}, actor=actor, image=NewImage(png_bytes((20, 10)), modality="OCT")
    )

    assert created.updated_at == created.created_at
    assert created.latest_scan is not None and created.latest_scan.created_at == created.created_at


def test_booking_the_same_appointment_again_changes_and_announces_nothing(
    sqlite_services: Application, actor: Actor
) -> None:
    patients = sqlite_services.patients
    patient = patients.create_patient({"name": "Booked"}, actor=actor)
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    booked = patients.schedule_appointment(patient.id, when, actor=actor)
    seen: list[ev.Event] = []
    sqlite_services.bus.subscribe(seen.append)

    again = patients.schedule_appointment(patient.id, when.astimezone(), actor=actor)
    moved = patients.schedule_appointment(patient.id, when + timedelta(hours=1), actor=actor)

    assert again.updated_at == booked.updated_at and again.appointment_date == when
    assert [type(e) for e in seen] == [ev.PatientUpdated]  # the move only
    assert moved.appointment_date == when + timedelta(hours=1)
    events = sqlite_services.audit.list_events(entity_type="patient", entity_id=patient.id)
    assert [e.action for e in events.items].count("schedule") == 2  # the first and the move


def test_an_image_stored_again_while_its_last_patient_is_deleted_is_kept(
    app_services: Application, actor: Actor
) -> None:
    """A deleted patient's image file goes when nothing refers to it; another patient
    gets a scan of the same bytes while the deletion looks. Before, the file was
    deleted under the new scan, which then had no image."""
    app = app_services
    data = png_bytes((41, 29))
    leaving = app.patients.create_patient({"name": "L"}, actor=actor, image=NewImage(data))
    staying = app.patients.create_patient({"name": "S"}, actor=actor).id
    scans: list[Any] = []

    def attach() -> None:
        scans.append(app.patients.attach_image(staying, NewImage(data), actor=actor))

    with meanwhile(app, "scans.sha256 IN", attach):
        app.patients.delete_patient(leaving.id, actor=actor)
    path, _media_type = app.patients.scan_image(scans[0].id)
    assert path.read_bytes() == data


@pytest.mark.parametrize("change", ["create", "update", "image", "verdict"])
def test_a_change_announced_after_the_patients_deletion_brings_nothing_back(
    app_services: Application, actor: Actor, change: str
) -> None:
    """The change commits, then the patient is deleted and announced gone, and only
    then is the change announced. Before, its events went out after patient_deleted and
    a client showed the deleted patient again. Ids are never given twice, except by a
    client that chooses them: a patient created again under the id is announced."""
    service = app_services.patients
    patient_id = "P-RACE-1"
    if change != "create":
        service.create_patient({"name": "Racing"}, actor=actor, patient_id=patient_id)
        _add_analysis(app_services, patient_id)
    seen = _collect(app_services)
    with after_commit(lambda: service.delete_patient(patient_id, actor=actor)):
        if change == "create":
            service.create_patient(
                {"name": "Racing"}, actor=actor, patient_id=patient_id, image=NewImage(png_bytes())
            )
        elif change == "update":
            service.update_patient(patient_id, {"status": "Critical"}, actor=actor)
        elif change == "image":
            service.attach_image(patient_id, NewImage(png_bytes()), actor=actor)
        else:
            service.validate_analysis(patient_id, approved=True, clinician="Dr A", actor=actor)
    assert not service.exists(patient_id)
    assert [e.name for e in seen][-1] == "patient_deleted"

    again = service.create_patient({"name": "Again"}, actor=actor, patient_id=patient_id)
    assert isinstance(seen[-1], ev.PatientCreated) and seen[-1].patient == again


def test_two_creations_under_one_chosen_id_at_once_make_one_patient(
    app_services: Application, actor: Actor
) -> None:
    """A client choosing the id (the API) and another creating it at the same moment,
    between the first's look for the id and its insert: one patient, with the first
    creator's image and nothing of the second's, and a Conflict for the second, on
    PostgreSQL too (whose insert waits for the other's commit, then fails on the key)."""
    app = app_services
    created: list[Any] = []

    def other() -> None:
        created.append(
            app.patients.create_patient({"name": "First"}, actor=actor, patient_id="pt-x")
        )

    with meanwhile(app, "FROM patients", other), pytest.raises(Conflict, match="already exists"):
        app.patients.create_patient(
            {"name": "Second"}, actor=actor, patient_id="pt-x", image=NewImage(png_bytes((9, 9)))
        )
    assert [p.name for p in created] == ["First"]
    assert app.patients.get_patient("pt-x").name == "First"
    assert app.patients.list_scans("pt-x") == ()


def _walk(service: Any, query: dict[str, Any], limit: int, first: Any = None) -> list[str]:
    """Every patient of ``query`` after ``first`` (from the top where None), a page
    after the last one read at a time."""
    ids: list[str] = []
    last = first
    while True:
        after = None if last is None else patient_after(last, query["order_by"])
        page = service.list_patients(limit=limit, after=after, **query)
        ids.extend(p.id for p in page.items)
        if len(page.items) < limit:
            return ids
        last = page.items[-1]


@pytest.mark.parametrize("descending", [False, True], ids=["ascending", "descending"])
@pytest.mark.parametrize("order_by", sorted(SORTABLE))
def test_the_next_page_after_the_last_patient_held_skips_and_repeats_none(
    app_services: Application, actor: Actor, order_by: str, descending: bool
) -> None:
    """Pages read after the last patient held list each patient once, in the order of
    one read, through ties (the id breaks them) and patients without a value (last
    either way, on SQLite and PostgreSQL alike); and a patient deleted or created
    between two reads makes the next skip or repeat no one (by position it did)."""
    service = app_services.patients
    born = date(1980, 3, 1)
    for patient_id, fields in (
        ("k5", {"name": "Zoe", "age": 40, "gender": "Female"}),
        ("k2", {"name": "zoë", "gender": "female", "birth_date": born}),
        ("k8", {"name": "Adam", "age": 40, "status": "Critical"}),
        ("k1", {"name": "adam", "gender": "Male", "birth_date": born}),
        ("k7", {"name": "Émile"}),
        ("k3", {"name": "Eve", "age": 61, "gender": "male", "status": "Critical"}),
        ("k6", {"name": "Bob"}),
        ("k4", {"name": "bob", "age": 40, "gender": "Female"}),
    ):
        service.create_patient(fields, actor=actor, patient_id=patient_id)
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    for patient_id, days in (("k2", 0), ("k7", 0), ("k6", 1)):
        service.schedule_appointment(patient_id, when + timedelta(days=days), actor=actor)
    query = {"order_by": order_by, "descending": descending}
    whole = [p.id for p in service.list_patients(limit=100, **query).items]
    assert _walk(service, query, limit=2) == whole

    first = service.list_patients(limit=3, **query).items
    service.delete_patient(first[1].id, actor=actor)  # by another window, say
    service.create_patient({"name": "Newcomer", "age": 40}, actor=actor, patient_id="k0")
    rest = _walk(service, query, limit=3, first=first[-1])

    assert [i for i in rest if i != "k0"] == whole[3:]
    assert rest.count("k0") <= 1


@pytest.mark.parametrize("order_by", ["id", "name", "status"])
@pytest.mark.parametrize("descending", [False, True])
def test_a_page_sorted_in_byte_order_walks_an_index_on_postgresql(
    app_services: Application, order_by: str, descending: bool
) -> None:
    """PostgreSQL's list sorted by id, or by name or status with the id breaking ties,
    compares ids (and statuses) as ``COLLATE "C"``, which no index in the database's own
    collation serves: every page read and sorted the whole table (9 to 14 ms a page at
    10,000 patients). The plan of the page the service asks for walks an index, sorting nothing."""
    db = app_services.db
    if db.is_sqlite:
        pytest.skip("SQLite's default order is byte order: its own indexes serve")
    from sqlalchemy import event, text

    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO patients (id, name, name_key, symptoms, history, status,"
                " workflow_step, admission_date, created_at, updated_at)"
                " SELECT 'pt-' || md5(i::text), 'Same ' || i, 'same ' || i, '[]', '',"
                " (ARRAY['Critical', 'Stable', 'Discharged'])[1 + mod(i, 3)], 1,"
                " now(), now(), now() FROM generate_series(1, 10000) AS i"
            )
        )
        conn.execute(text("ANALYZE patients"))
    pages: list[tuple[str, Any]] = []

    def keep_the_page(_conn: Any, _cursor: Any, sql: str, params: Any, *_: Any) -> None:
        if "ORDER BY" in sql and "LIMIT" in sql and "FROM patients" in sql:
            pages.append((sql, params))

    event.listen(db.engine, "before_cursor_execute", keep_the_page)
    try:
        page = app_services.patients.list_patients(order_by=order_by, descending=descending)
    finally:
        event.remove(db.engine, "before_cursor_execute", keep_the_page)
    assert len(page.items) == 100 and len(pages) == 1
    with db.engine.connect() as conn:
        plan = conn.exec_driver_sql("EXPLAIN " + pages[0][0], pages[0][1]).scalars().all()
    nodes = [line.strip(" ->").split("  (cost=")[0] for line in plan]
    assert not [n for n in nodes if "Sort" in n], plan
    assert any(n.startswith("Index Scan") and "_bytes on patients" in n for n in nodes), plan
