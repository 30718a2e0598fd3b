"""The OpenAPI document says which requests the API takes: a value it declares valid is
not refused as malformed (422), and one the API refuses as malformed the document
declares invalid, so a client generated from it (or a fuzzer driven by it) sends what
the API takes. Found by fuzzing the API with schemathesis."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator

from ophthai_desktop.api.params import DB_INT_MAX
from tests.support.images import png_bytes

PNG_BASE64 = base64.b64encode(png_bytes((16, 16))).decode()


class Document:
    """The served document, asked whether it declares a value valid."""

    def __init__(self, client: TestClient) -> None:
        self.document: dict[str, Any] = client.get("/openapi.json").json()

    def parameter(self, method: str, path: str, name: str) -> dict[str, Any]:
        operation = self.document["paths"][path][method]
        schema: dict[str, Any] = next(
            p["schema"] for p in operation["parameters"] if p["name"] == name
        )
        return schema

    def body(self, method: str, path: str) -> dict[str, Any]:
        operation = self.document["paths"][path][method]
        schema: dict[str, Any] = operation["requestBody"]["content"]["application/json"]["schema"]
        return schema

    def declares_valid(self, schema: dict[str, Any], value: Any) -> bool:
        validator = Draft202012Validator({**schema, "components": self.document["components"]})
        return validator.is_valid(value)


@pytest.fixture
def document(client: TestClient) -> Document:
    return Document(client)


def test_the_job_list_declares_the_states_it_filters_by(
    client: TestClient, document: Document
) -> None:
    """``state`` was any string in the document, so ``?state=not_installed`` (a model
    state) was a valid request that the API refused with a 422."""
    state = document.parameter("get", "/api/jobs", "state")

    for value in ("queued", "running", "done", "failed", "cancelled", "not_installed", "Done"):
        answer = client.get("/api/jobs", params={"state": value})
        assert document.declares_valid(state, value) == (answer.status_code == 200), (
            value,
            answer.status_code,
        )
        assert answer.status_code in (200, 422)


def test_an_empty_job_state_still_lists_every_job(ai_client: TestClient) -> None:
    """Declaring the states changed what the document says, not what the API takes:
    ``?state=`` (a client's "all" filter) listed every job before and still does."""
    queued = ai_client.post("/api/ai/analyze", json={"image_base64": PNG_BASE64})
    assert queued.status_code == 200, queued.text  # analysed: its job is done

    answer = ai_client.get("/api/jobs", params={"state": ""})

    assert answer.status_code == 200, answer.text
    assert [job["id"] for job in answer.json()] == [queued.json()["job_id"]]
    document = Document(ai_client)  # still naming the five states
    assert document.parameter("get", "/api/jobs", "state")["anyOf"][0]["enum"] == [
        "queued",
        "running",
        "done",
        "failed",
        "cancelled",
    ]


def test_the_patient_list_declares_the_keys_it_sorts_by(
    client: TestClient, document: Document
) -> None:
    """``order_by`` was any string in the document; the API sorts by the patient keys
    only, in camelCase or snake_case, and refuses the rest with a 422."""
    order_by = document.parameter("get", "/api/patients", "order_by")

    assert {"birthDate", "birth_date", "name", "createdAt"} <= set(order_by["enum"])
    for value in (*order_by["enum"], "shoeSize", ""):
        answer = client.get("/api/patients", params={"order_by": value})
        assert document.declares_valid(order_by, value) == (answer.status_code == 200), (
            value,
            answer.status_code,
        )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/notifications", {"message": "Call the patient", "patientId": ""}),
        ("/api/ai/analyze", {"imageBase64": PNG_BASE64, "patientId": ""}),
    ],
)
def test_an_empty_patient_id_in_a_body_is_declared_invalid(
    client: TestClient, document: Document, path: str, body: dict[str, Any]
) -> None:
    """An empty ``patientId`` is a 422 (no patient has it; leave the field out for
    none), and the document says so instead of allowing any string."""
    answer = client.post(path, json=body)

    assert answer.status_code == 422
    assert answer.json()["field"] == "patientId"
    assert not document.declares_valid(document.body("post", path), body)
    assert document.declares_valid(document.body("post", path), {**body, "patientId": "P1"})


def test_integer_bounds_in_bodies_are_integers_and_the_ones_enforced(
    client: TestClient, document: Document
) -> None:
    """FastAPI wrote a body's integer bounds as floats (``maximum: 130.0``), and the
    largest scan id as 2**63 (``9.223372036854776e+18``), one the API refuses."""
    patient = client.post("/api/patients", json={"name": "Ada"}).json()["id"]
    analyze = f"/api/patients/{patient}/analyze"
    schemas = document.document["components"]["schemas"]
    scan_id = schemas["AnalyzePatientRequest"]["properties"]["scanId"]["anyOf"][0]
    age = schemas["PatientCreate"]["properties"]["age"]["anyOf"][0]

    assert (type(scan_id["minimum"]), type(scan_id["maximum"])) == (int, int)
    assert (type(age["minimum"]), type(age["maximum"])) == (int, int)
    body = document.body("post", "/api/patients/{patient_id}/analyze")
    for value in (DB_INT_MAX, DB_INT_MAX + 1):
        answer = client.post(analyze, json={"scanId": value})
        assert document.declares_valid(body, {"scanId": value}) == (answer.status_code != 422), (
            value,
            answer.text,
        )


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/api/patients/{patient_id}/scans", {"modality": "OCT"}),
        ("/api/ai/analyze-upload", {"question": "Is there fluid?"}),
    ],
)
def test_an_upload_form_declares_the_fields_it_takes(
    client: TestClient, document: Document, path: str, fields: dict[str, str]
) -> None:
    """A form field an upload does not take is a 422 naming it, as an unknown key of a
    JSON body is; the form's schema allowed any other field."""
    patient = client.post("/api/patients", json={"name": "Ada"}).json()["id"]
    url = path.replace("{patient_id}", patient)
    schema = document.document["paths"][path]["post"]["requestBody"]["content"][
        "multipart/form-data"
    ]["schema"]
    image = {"file": ("scan.png", png_bytes((16, 16)), "image/png")}

    answer = client.post(url, files=image, data={**fields, "colour": "red"})

    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["colour"]
    assert not document.declares_valid(schema, {"file": "scan", **fields, "colour": "red"})
    assert document.declares_valid(schema, {"file": "scan", **fields})


def test_an_ai_analysis_is_declared_with_the_keys_it_takes(
    client: TestClient, document: Document
) -> None:
    """A PATCHed ``aiAnalysis`` refuses a key the API neither reads nor writes; the
    document says which it takes (the result's own in any case, as they are read)."""
    path = "/api/patients/{patient_id}"
    url = f"/api/patients/{client.post('/api/patients', json={'name': 'Ada'}).json()['id']}"
    result = {"classification": "Glaucoma suspect", "confidence": 71, "findings": []}
    for sent in (result, {**result, "model": "mine", "status": "preliminary"}):
        assert document.declares_valid(document.body("patch", path), {"aiAnalysis": sent})
        assert client.patch(url, json={"aiAnalysis": sent}).status_code == 200
    for sent in ({**result, "severity": "high"}, {**result, "Grade": 2}):
        assert not document.declares_valid(document.body("patch", path), {"aiAnalysis": sent})
        assert client.patch(url, json={"aiAnalysis": sent}).status_code == 422
    assert document.declares_valid(document.body("patch", path), {"aiAnalysis": {"Findings": []}})


def test_a_new_patients_id_is_declared_as_the_api_takes_it(
    client: TestClient, document: Document
) -> None:
    """The document allowed any id up to 64 characters; the API takes letters, digits,
    dots and dashes (an id goes into URLs and file names), or none for one it makes."""
    body = document.body("post", "/api/patients")

    for index, patient_id in enumerate(["", "P-1.2", "a b", "a/b", "..", "x" * 64, "é1"]):
        answer = client.post("/api/patients", json={"name": f"Pat {index}", "id": patient_id})
        declared = document.declares_valid(body, {"name": "Pat", "id": patient_id})
        assert declared == (answer.status_code == 201), (patient_id, answer.text)


def test_a_patient_field_is_declared_nullable_only_where_null_is_taken(
    client: TestClient, document: Document
) -> None:
    """``null`` clears what can be cleared (a birth date, an appointment, a verdict);
    a name, status, admission date or workflow step is never null (a 422), but the
    document offered null for each, so a generated client typed them nullable."""
    create = document.body("post", "/api/patients")
    update = document.body("patch", "/api/patients/{patient_id}")
    patient = f"/api/patients/{client.post('/api/patients', json={'name': 'Ada'}).json()['id']}"
    fields = document.document["components"]["schemas"]["PatientUpdate"]["properties"]
    writable = [
        f for f, schema in fields.items() if "Read-only" not in schema.get("description", "")
    ]

    assert {"name", "status", "admissionDate", "workflowStep", "birthDate"} <= set(writable)
    for field in writable:
        answer = client.patch(patient, json={field: None})
        assert document.declares_valid(update, {field: None}) == (answer.status_code == 200), (
            field,
            answer.text,
        )
    for field in ("status", "admissionDate", "age", "gender"):
        body = {"name": "Bea", field: None}
        answer = client.post("/api/patients", json=body)
        assert document.declares_valid(create, body) == (answer.status_code == 201), (
            field,
            answer.text,
        )
