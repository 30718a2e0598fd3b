"""The image routes' PNG renditions (``?format=png``, ``?max_side=N``) for browsers,
which show neither a TIFF nor a 16-bit OCT export's values."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.responses import FileResponse
from fastapi.testclient import TestClient
from PIL import Image

from ophthai_desktop.api import renditions as api_renditions
from ophthai_desktop.core.inference.preprocess import prepare_image
from ophthai_desktop.core.settings import Settings
from tests.support.images import clinic_image_files


def tiff16(size: tuple[int, int] = (300, 200), low: int = 1000, high: int = 3000) -> bytes:
    """A 16-bit grayscale TIFF whose values use a small part of the range, as OCT
    devices export B-scans (shown as they are: nearly black)."""
    width, height = size
    ramp = np.linspace(low, high, width * height).reshape(height, width).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, "TIFF")
    return buffer.getvalue()


def upload(client: TestClient, data: bytes, name: str = "scan.tif") -> dict[str, Any]:
    """A new patient with ``data`` as its scan; the scan as the API lists it."""
    patient = client.post("/api/patients", json={"name": "Ada Lovelace"}).json()
    response = client.post(f"/api/patients/{patient['id']}/scans", files={"file": (name, data)})
    assert response.status_code == 201, response.text
    scan: dict[str, Any] = response.json()
    return scan


def decoded(response: Any) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG"
    return image


def stored_path(settings: Settings, scan: dict[str, Any]) -> Path:
    sha = scan["sha256"]
    return settings.images_dir / sha[:2] / sha


def test_a_16_bit_tiff_comes_back_as_a_stretched_8_bit_png(client: TestClient) -> None:
    scan = upload(client, tiff16((300, 200)))

    image = decoded(client.get(scan["imageUrl"], params={"format": "png"}))

    assert image.size == (300, 200)
    assert image.mode == "L"  # gray stays one channel: a third of the bytes of RGB
    assert image.getextrema() == (0, 255)  # lowest value black, highest white
    assert np.asarray(image)[100].tolist() == sorted(np.asarray(image)[100].tolist())


@pytest.mark.parametrize("name", list(clinic_image_files()))
def test_every_kind_of_clinic_image_comes_back_as_the_png_the_model_sees(
    client: TestClient, name: str
) -> None:
    data = clinic_image_files()[name]
    scan = upload(client, data, name="scan")

    image = decoded(client.get(scan["imageUrl"], params={"format": "png"}))

    with Image.open(io.BytesIO(data)) as original:
        model_sees = prepare_image(original)
    assert image.mode in ("L", "RGB")
    assert image.size == model_sees.size
    assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(model_sees))
    assert image.convert("L").getextrema()[1] > 0  # never all black


def test_the_renditions_are_upright_and_stretched(client: TestClient) -> None:
    files = clinic_image_files()
    looks = {}
    for name in ("EXIF JPEG", "16-bit PNG", "float TIFF", "palette PNG", "CMYK JPEG"):
        scan = upload(client, files[name], name="scan")
        looks[name] = decoded(client.get(scan["imageUrl"], params={"format": "png"}))

    assert looks["EXIF JPEG"].size == (32, 96)  # stored 96x32, rotated by its EXIF tag
    assert looks["16-bit PNG"].getextrema() == (0, 255)
    float_map = np.asarray(looks["float TIFF"])
    assert float_map[:4].max() == 0 and float_map.max() == 255  # NaN (no data) black
    assert looks["palette PNG"].mode == "RGB"
    assert looks["palette PNG"].getpixel((0, 0)) == (255, 0, 0)
    assert looks["CMYK JPEG"].mode == "RGB"


def test_max_side_scales_down_keeping_the_aspect_ratio_and_never_up(
    client: TestClient,
) -> None:
    scan = upload(client, tiff16((300, 200)))
    url = scan["imageUrl"]

    small = decoded(client.get(url, params={"format": "png", "max_side": 60}))
    alone = decoded(client.get(url, params={"max_side": 60}))  # implies format=png
    camel = decoded(client.get(url, params={"maxSide": 30}))
    larger = decoded(client.get(url, params={"max_side": 4096}))
    patient = client.get(f"/api/patients/{scan['patientId']}").json()
    newest = decoded(client.get(patient["imageUrl"] + "&max_side=150"))

    assert small.size == alone.size == (60, 40)
    assert camel.size == (30, 20)
    assert larger.size == (300, 200)
    assert newest.size == (150, 100)
    low, high = small.getextrema()
    assert low <= 5 and high >= 250  # still stretched (resampling averages the ends)


def test_a_jpeg_thumbnail_is_upright_and_its_size(client: TestClient) -> None:
    scan = upload(client, clinic_image_files()["EXIF JPEG"], name="scan.jpg")

    image = decoded(client.get(scan["imageUrl"], params={"max_side": 48}))

    assert image.size == (16, 48)


def test_the_rendition_has_its_own_etag_and_revalidates_as_304(client: TestClient) -> None:
    scan = upload(client, tiff16())
    url = scan["imageUrl"]
    original = client.get(url)
    png = client.get(url, params={"format": "png"})
    thumb = client.get(url, params={"format": "png", "max_side": 64})
    etag = png.headers["etag"]

    again = client.get(url, params={"format": "png"}, headers={"If-None-Match": etag})
    other_size = client.get(
        url, params={"format": "png", "max_side": 64}, headers={"If-None-Match": etag}
    )
    as_original = client.get(url, headers={"If-None-Match": etag})

    assert len({original.headers["etag"], etag, thumb.headers["etag"]}) == 3
    assert png.headers["cache-control"] == original.headers["cache-control"]
    assert (again.status_code, again.content) == (304, b"")
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == original.headers["cache-control"]
    assert other_size.status_code == 200 and other_size.content == thumb.content
    assert as_original.status_code == 200 and as_original.content == original.content


def test_the_newest_scans_rendition_follows_the_original_caching(client: TestClient) -> None:
    scan = upload(client, tiff16())
    patient = client.get(f"/api/patients/{scan['patientId']}").json()
    bare = f"/api/patients/{patient['id']}/image"

    versioned = client.get(patient["imageUrl"] + "&format=png")
    unversioned = client.get(bare, params={"format": "png"})
    revalidated = client.get(
        bare, params={"format": "png"}, headers={"If-None-Match": unversioned.headers["etag"]}
    )
    client.post(f"/api/patients/{patient['id']}/scans", files={"file": ("b.tif", tiff16((40, 30)))})
    after_a_new_scan = client.get(
        bare, params={"format": "png"}, headers={"If-None-Match": unversioned.headers["etag"]}
    )

    assert versioned.headers["cache-control"] == "private, max-age=86400, immutable"
    assert unversioned.headers["cache-control"] == "private, no-cache"
    assert revalidated.status_code == 304
    assert decoded(after_a_new_scan).size == (40, 30)
    assert after_a_new_scan.headers["etag"] != unversioned.headers["etag"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"format": "gif"}, "format"),
        ({"format": ""}, "format"),
        ({"max_side": 0}, "max_side"),
        ({"max_side": -4}, "max_side"),
        ({"max_side": 4097}, "max_side"),
        ({"max_side": "big"}, "max_side"),
        ({"maxSide": 0}, "maxSide"),
        ({"format": "png", "width": 10}, "width"),
    ],
)
def test_bad_rendition_parameters_are_422s_naming_them(
    client: TestClient, params: dict[str, Any], field: str
) -> None:
    scan = upload(client, tiff16((40, 30)))
    bare = f"/api/patients/{scan['patientId']}/image"

    for url in (scan["imageUrl"], bare):
        response = client.get(url, params=params)

        assert response.status_code == 422, response.text
        assert [error["field"] for error in response.json()["errors"]] == [field]


def test_without_the_parameters_the_stored_file_is_served_as_before(
    client: TestClient, settings: Settings
) -> None:
    data = tiff16((40, 30))
    scan = upload(client, data)
    path = stored_path(settings, scan)
    file_etag = FileResponse(path, stat_result=path.stat()).headers["etag"]
    client.get(scan["imageUrl"], params={"max_side": 20})  # a rendition does not change it

    for url in (scan["imageUrl"], f"/api/patients/{scan['patientId']}/image"):
        response = client.get(url)
        head = client.head(url)

        assert response.status_code == 200
        assert response.content == data
        assert response.headers["content-type"] == "image/tiff"
        assert response.headers["etag"] == head.headers["etag"] == file_etag
        assert head.headers["content-length"] == str(len(data))
        assert client.get(url, headers={"If-None-Match": file_etag}).status_code == 304


def test_a_head_of_a_rendition_gives_its_headers(client: TestClient) -> None:
    scan = upload(client, tiff16())

    got = client.get(scan["imageUrl"], params={"max_side": 50})
    head = client.head(scan["imageUrl"], params={"max_side": 50})

    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(got.content))
    assert head.headers["etag"] == got.headers["etag"]
    assert head.headers["content-type"] == "image/png"


def test_a_head_of_a_rendition_is_its_gets_answer_and_the_get_after_it_renders_nothing(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A HEAD makes the rendition, as only then are its status and Content-Length known:
    a PNG cut short opens (its header is whole) and fails only when decoded. The
    rendition is kept, so the GET that follows a HEAD costs nothing more."""
    renders: list[object] = []
    real_render = api_renditions.render

    def counted(*args: Any, **kwargs: Any) -> Any:
        renders.append(args)
        return real_render(*args, **kwargs)

    monkeypatch.setattr(api_renditions, "render", counted)
    noise = Image.frombytes("L", (120, 90), bytes(range(256)) * 42 + bytes(48))
    png = io.BytesIO()
    noise.save(png, "PNG")
    scan = upload(client, png.getvalue(), "scan.png")

    head = client.head(scan["imageUrl"], params={"max_side": 50})
    got = client.get(scan["imageUrl"], params={"max_side": 50})

    assert len(renders) == 1
    assert head.headers["content-length"] == str(len(got.content))
    path = stored_path(settings, scan)
    path.chmod(0o600)
    path.write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    with Image.open(path) as opened:
        assert opened.size == (120, 90)  # a check of the header alone would answer 200
    for answer in (client.head, client.get):
        assert answer(scan["imageUrl"], params={"max_side": 40}).status_code == 422


def test_a_file_missing_from_the_store_is_the_originals_404(
    client: TestClient, settings: Settings
) -> None:
    scan = upload(client, tiff16((40, 30)))
    stored_path(settings, scan).unlink()

    original = client.get(scan["imageUrl"])
    rendition = client.get(scan["imageUrl"], params={"format": "png"})

    assert original.status_code == rendition.status_code == 404
    assert rendition.json()["message"] == original.json()["message"]
    assert "missing from the store" in rendition.json()["message"]


def test_a_damaged_stored_file_is_a_clear_error_and_the_file_is_still_served(
    client: TestClient, settings: Settings
) -> None:
    data = tiff16((64, 48))
    scan = upload(client, data)
    path = stored_path(settings, scan)
    path.chmod(0o600)
    path.write_bytes(data[: len(data) // 2])  # damaged on disk after it was taken in

    rendition = client.get(scan["imageUrl"], params={"format": "png"})
    original = client.get(scan["imageUrl"])

    assert rendition.status_code == 422, rendition.text
    message = rendition.json()["message"]
    assert "stored image file is damaged" in message and "add the image" in message
    assert str(settings.data_dir) not in message
    assert original.status_code == 200 and original.content == data[: len(data) // 2]


def test_a_stored_image_over_the_pixel_limit_is_not_decoded(client: TestClient) -> None:
    scan = upload(client, tiff16((300, 200)))
    client.app.state.renditions.max_pixels = 10_000  # type: ignore[attr-defined]

    response = client.get(scan["imageUrl"], params={"format": "png"})

    assert response.status_code == 413, response.text
    assert "300x200 pixels" in response.json()["message"]
    assert client.get(scan["imageUrl"]).status_code == 200  # the file as stored


def test_renditions_run_off_the_event_loop_a_bounded_number_at_once(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While renditions are being made, other requests are answered; more than
    RENDITIONS_AT_ONCE requests wait for a place rather than decode at the same time."""
    scan = upload(client, tiff16())
    release = threading.Event()
    lock = threading.Lock()
    busy = [0, 0]  # in progress, most at once
    real_render = api_renditions.render

    def held_render(*args: Any, **kwargs: Any) -> Any:
        with lock:
            busy[0] += 1
            busy[1] = max(busy)
        try:
            release.wait(10)
            return real_render(*args, **kwargs)
        finally:
            with lock:
                busy[0] -= 1

    monkeypatch.setattr(api_renditions, "render", held_render)
    sides = [40, 50, 60, 70]  # four different renditions: none comes from the cache
    with ThreadPoolExecutor(len(sides)) as pool:
        futures = [
            pool.submit(client.get, scan["imageUrl"], params={"max_side": side}) for side in sides
        ]
        deadline = time.monotonic() + 10
        while busy[1] < api_renditions.RENDITIONS_AT_ONCE and time.monotonic() < deadline:
            release.wait(0.01)
        # Two renditions hold their places: the API still answers.
        health = client.get("/api/patients", params={"limit": 1})
        listed = client.get(f"/api/patients/{scan['patientId']}/scans")
        release.set()
        sizes = [decoded(future.result(timeout=30)).size for future in futures]

    assert health.status_code == 200 and listed.status_code == 200
    assert busy[1] == api_renditions.RENDITIONS_AT_ONCE
    assert sizes == [(40, 27), (50, 33), (60, 40), (70, 47)]
