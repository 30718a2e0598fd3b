"""Patient images over REST: data URLs, uploads, the image URL and the file store."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from ophthai_desktop.core.settings import Settings
from tests.conftest import jpeg_bytes, png_bytes
from tests.support.images import tiff_volume_bytes


def stored_files(settings: Settings) -> list[Path]:
    """The image files in the content-addressed store (temporary files excluded)."""
    return [
        p
        for p in settings.images_dir.rglob("*")
        if p.is_file() and not p.name.startswith(".incoming")
    ]


def patient_count(client: TestClient) -> int:
    return int(client.get("/api/patients").headers["X-Total-Count"])


def create(client: TestClient, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/patients", json={"name": "Ada Lovelace", **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def bmp_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (90, 60, 30)).save(buffer, "BMP")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.mark.parametrize("prefix", ["data:image/png;base64,", ""], ids=["data-url", "bare"])
def test_a_data_url_becomes_an_absolute_image_url_serving_the_bytes(
    client: TestClient, settings: Settings, prefix: str
) -> None:
    image = png_bytes((40, 30))

    body = create(client, imageUrl=prefix + b64(image))

    assert body["imageUrl"].startswith("http://127.0.0.1/")
    served = client.get(body["imageUrl"])
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/png"
    assert served.content == image
    assert body["scanCount"] == 1
    assert len(stored_files(settings)) == 1
    # Never base64 in the record: the same URL comes back on a plain read.
    assert client.get(f"/api/patients/{body['id']}").json()["imageUrl"] == body["imageUrl"]


@pytest.mark.parametrize("prefix", ["data:image/jpeg;base64,", ""], ids=["data-url", "bare"])
def test_a_jpeg_is_served_as_jpeg(client: TestClient, prefix: str) -> None:
    image = jpeg_bytes()
    assert b64(image).startswith("/")  # bare JPEG base64 looks like a path

    body = create(client, image_url=prefix + b64(image))

    served = client.get(body["imageUrl"])
    assert served.headers["content-type"] == "image/jpeg"
    assert served.content == image


def test_the_same_image_twice_is_stored_once(client: TestClient, settings: Settings) -> None:
    image = png_bytes()

    first = create(client, imageUrl="data:image/png;base64," + b64(image))
    second = create(client, name="Bob", imageUrl=b64(image))

    assert first["id"] != second["id"]
    assert len(stored_files(settings)) == 1
    assert client.get(second["imageUrl"]).content == image


def test_a_data_url_that_is_not_an_image_is_415_and_creates_nothing(
    client: TestClient, settings: Settings
) -> None:
    response = client.post(
        "/api/patients",
        json={"name": "Ada", "imageUrl": "data:text/plain;base64," + b64(b"hello")},
    )

    assert response.status_code == 415
    assert "text/plain" in response.json()["detail"]
    assert patient_count(client) == 0
    assert stored_files(settings) == []


@pytest.mark.parametrize(
    "value", ["data:image/png;base64,!!not base64!!", "%%%garbage%%%", "data:image/png,abc"]
)
def test_garbage_base64_is_refused_and_creates_nothing(
    client: TestClient, settings: Settings, value: str
) -> None:
    response = client.post("/api/patients", json={"name": "Ada", "imageUrl": value})

    assert response.status_code in (400, 422)
    assert "imageUrl" in response.json()["detail"]
    assert patient_count(client) == 0
    assert stored_files(settings) == []


def test_a_truncated_png_is_422_and_creates_nothing(client: TestClient, settings: Settings) -> None:
    image = png_bytes((64, 64))

    response = client.post(
        "/api/patients",
        json={"name": "Ada", "imageUrl": "data:image/png;base64," + b64(image[: len(image) // 2])},
    )

    assert response.status_code == 422
    assert "damaged" in response.json()["detail"] or "truncated" in response.json()["detail"]
    assert patient_count(client) == 0
    assert stored_files(settings) == []


def test_a_png_upload_becomes_a_scan(client: TestClient) -> None:
    pid = create(client)["id"]
    image = png_bytes((20, 10), (1, 2, 3))

    uploaded = client.post(
        f"/api/patients/{pid}/scans",
        files={"file": ("left-eye.png", image, "image/png")},
        data={"modality": "OCT", "laterality": "OS"},
    )

    assert uploaded.status_code == 201, uploaded.text
    scan = uploaded.json()
    assert uploaded.headers["Location"] == f"/api/patients/{pid}/scans/{scan['id']}"
    assert client.get(uploaded.headers["Location"]).json() == scan
    assert (scan["width"], scan["height"], scan["mediaType"]) == (20, 10, "image/png")
    assert (scan["modality"], scan["laterality"]) == ("OCT", "OS")
    assert client.get(scan["imageUrl"]).content == image
    listed = client.get(f"/api/patients/{pid}/scans/")
    assert listed.status_code == 200
    assert [s["id"] for s in listed.json()] == [scan["id"]]
    patient = client.get(f"/api/patients/{pid}").json()
    assert client.get(patient["imageUrl"]).content == image
    assert patient["scanCount"] == 1


def test_a_scan_of_another_patient_or_none_is_404(client: TestClient) -> None:
    pid = create(client)["id"]
    other = create(client, name="Grace Hopper")["id"]
    scan = client.post(
        f"/api/patients/{pid}/scans", files={"file": ("a.png", png_bytes(), "image/png")}
    ).json()

    assert client.get(f"/api/patients/{pid}/scans/{scan['id']}").status_code == 200
    assert client.get(f"/api/patients/{other}/scans/{scan['id']}").status_code == 404
    assert client.get(f"/api/patients/{pid}/scans/{scan['id'] + 1}").status_code == 404
    for path in (f"/api/patients/nobody/scans/{scan['id']}", f"{scan['imageUrl']}"):
        missing = client.get(path.replace(f"/{pid}/", "/nobody/"))
        assert missing.status_code == 404
        assert missing.json()["detail"] == "patient nobody not found", path


def test_an_image_too_elongated_for_the_model_is_422_and_stores_nothing(
    client: TestClient, settings: Settings
) -> None:
    pid = create(client)["id"]

    response = client.post(
        f"/api/patients/{pid}/scans",
        files={"file": ("strip.png", png_bytes((1206, 6)), "image/png")},
    )

    assert response.status_code == 422, response.text
    assert "more than 200 times its short side" in response.json()["detail"]
    assert client.get(f"/api/patients/{pid}/scans").json() == []
    assert stored_files(settings) == []


def test_a_tiff_volume_is_422_and_creates_nothing(client: TestClient, settings: Settings) -> None:
    before = patient_count(client)

    response = client.post(
        "/api/patients",
        json={
            "name": "Ada Lovelace",
            "imageUrl": "data:image/tiff;base64," + b64(tiff_volume_bytes()),
        },
    )

    assert response.status_code == 422, response.text
    assert "holds 3 images" in response.json()["detail"]
    assert patient_count(client) == before
    assert stored_files(settings) == []


def test_a_text_upload_is_415(client: TestClient, settings: Settings) -> None:
    pid = create(client)["id"]

    response = client.post(
        f"/api/patients/{pid}/scans", files={"file": ("notes.txt", b"hello", "text/plain")}
    )

    assert response.status_code == 415
    body = response.json()
    assert "text/plain" in body["detail"]
    assert body["field"] == "file"  # named, as every other refusal of the file is
    assert client.get(f"/api/patients/{pid}/scans").json() == []
    assert stored_files(settings) == []


@pytest.mark.parametrize(
    ("declared", "data"),
    [
        ("image/pjpeg", jpeg_bytes()),  # Windows' registry for .jpg on many machines
        ("image/jpg", jpeg_bytes()),
        ("image/x-png", png_bytes()),
        ("image/x-ms-bmp", bmp_bytes()),  # /etc/mime.types on older Linux systems
    ],
    ids=["pjpeg", "jpg", "x-png", "x-ms-bmp"],
)
def test_an_image_declared_under_another_name_for_its_type_is_taken_by_its_content(
    client: TestClient, declared: str, data: bytes
) -> None:
    """A browser sends the type the operating system names for the file's extension;
    the content decides what it is, as for a data URL (the scan and the synchronous
    analysis share the upload's check). These were a 415 saying "send ... JPEG"."""
    pid = create(client)["id"]

    response = client.post(
        f"/api/patients/{pid}/scans", files={"file": ("scan.img", data, declared)}
    )

    assert response.status_code == 201, response.text
    assert response.json()["mediaType"] in {"image/jpeg", "image/png", "image/bmp"}


def test_an_upload_whose_content_is_not_an_image_is_415(client: TestClient) -> None:
    pid = create(client)["id"]

    response = client.post(
        f"/api/patients/{pid}/scans",
        files={"file": ("eye.png", b"this is not a png", "image/png")},
    )

    assert response.status_code == 415
    # Says what is taken, not only what is wrong.
    assert response.json()["detail"] == (
        "file: the file is not an image that can be read; use PNG, JPEG, WebP, BMP or TIFF"
    )
    assert client.get(f"/api/patients/{pid}/scans").json() == []


def test_patching_with_the_own_image_url_changes_nothing(client: TestClient) -> None:
    created = create(client, imageUrl=b64(png_bytes()))

    response = client.patch(
        f"/api/patients/{created['id']}",
        json={"imageUrl": created["imageUrl"], "name": created["name"]},
    )

    assert response.status_code == 200, response.text
    after = response.json()
    assert after["imageUrl"] == created["imageUrl"]
    assert after["scanCount"] == 1
    assert len(client.get(f"/api/patients/{created['id']}/scans").json()) == 1


def test_patching_back_the_whole_object_applies_only_the_change(client: TestClient) -> None:
    """The seed's frontends PATCH the object they read with one field changed."""
    created = create(client, imageUrl=b64(png_bytes()), age=40)
    read = client.get(f"/api/patients/{created['id']}").json()

    response = client.patch(
        f"/api/patients/{created['id']}", json=read | {"status": "Critical", "scanCount": 99}
    )

    assert response.status_code == 200, response.text
    after = client.get(f"/api/patients/{created['id']}").json()
    assert after["status"] == "Critical"
    assert after["scanCount"] == 1
    assert after["imageUrl"] == created["imageUrl"]
    assert after["createdAt"] == created["createdAt"]
    assert after["age"] == 40


def test_patching_another_id_into_the_body_is_refused(client: TestClient) -> None:
    created = create(client)

    response = client.patch(f"/api/patients/{created['id']}", json={"id": "pt-other"})

    assert response.status_code == 422
    assert response.json()["field"] == "id"
    assert client.get(f"/api/patients/{created['id']}").status_code == 200
    assert client.get("/api/patients/pt-other").status_code == 404


def test_patching_with_a_data_url_adds_a_scan(client: TestClient) -> None:
    created = create(client, imageUrl=b64(png_bytes()))
    newer = png_bytes((8, 8), (250, 0, 0))

    response = client.patch(
        f"/api/patients/{created['id']}", json={"imageUrl": "data:image/png;base64," + b64(newer)}
    )

    assert response.status_code == 200, response.text
    assert response.json()["scanCount"] == 2
    assert response.json()["imageUrl"] != created["imageUrl"]
    assert client.get(response.json()["imageUrl"]).content == newer


@pytest.mark.parametrize("key", ["modality", "laterality"])
def test_image_details_without_an_image_are_refused_not_dropped(
    client: TestClient, key: str
) -> None:
    """They describe the image a data URL brings: without one nothing took them."""
    value = {"modality": "OCTA", "laterality": "OS"}[key]
    created = create(client, imageUrl=b64(png_bytes()), modality="OCT", laterality="OD")

    patched = client.patch(f"/api/patients/{created['id']}", json={key: value})
    posted = client.post("/api/patients", json={"name": "No Image", key: value})

    for response in (patched, posted):
        assert response.status_code == 422, response.text
        assert response.json()["field"] == key
        assert "imageUrl" in response.json()["message"]
    assert patient_count(client) == 1
    [scan] = client.get(f"/api/patients/{created['id']}/scans").json()
    assert (scan["modality"], scan["laterality"]) == ("OCT", "OD")
    # A form that always sends its default says nothing that could be lost.
    default = client.post("/api/patients", json={"name": "Form Default", key: "unknown"})
    assert default.status_code == 201, default.text


@pytest.mark.parametrize(
    "url", ["http://elsewhere/x.png", "https://example.org/eye.jpg"], ids=["http", "https"]
)
def test_patching_with_a_foreign_url_is_422(client: TestClient, url: str) -> None:
    created = create(client, imageUrl=b64(png_bytes()))

    response = client.patch(f"/api/patients/{created['id']}", json={"imageUrl": url})

    assert response.status_code == 422
    assert "imageUrl" in response.json()["detail"]
    assert client.get(f"/api/patients/{created['id']}").json()["scanCount"] == 1


def test_patching_with_another_patients_image_url_is_422(client: TestClient) -> None:
    mine = create(client, imageUrl=b64(png_bytes()))
    theirs = create(client, name="Bob", imageUrl=b64(jpeg_bytes()))

    response = client.patch(f"/api/patients/{mine['id']}", json={"imageUrl": theirs["imageUrl"]})

    assert response.status_code == 422
    assert client.get(f"/api/patients/{mine['id']}").json()["imageUrl"] == mine["imageUrl"]


def test_a_patient_without_an_image_has_no_image_url(client: TestClient) -> None:
    created = create(client)

    assert created["imageUrl"] is None
    assert client.get(f"/api/patients/{created['id']}/image").status_code == 404


def test_deleting_a_patient_removes_an_image_nobody_else_uses(
    client: TestClient, settings: Settings
) -> None:
    shared, own = png_bytes(), png_bytes((9, 9), (0, 0, 255))
    doomed = create(client, imageUrl=b64(shared))
    keeper = create(client, name="Bob", imageUrl=b64(shared))
    uploaded = client.post(
        f"/api/patients/{doomed['id']}/scans", files={"file": ("own.png", own, "image/png")}
    )
    assert uploaded.status_code == 201
    assert len(stored_files(settings)) == 2

    assert client.delete(f"/api/patients/{doomed['id']}").status_code == 200

    remaining = stored_files(settings)
    assert [p.read_bytes() for p in remaining] == [shared]
    assert client.get(keeper["imageUrl"]).content == shared
