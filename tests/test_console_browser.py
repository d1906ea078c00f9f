"""The web console in a real browser: Debian's Chromium (/usr/bin/chromium) driven by Playwright
through ``executable_path``; nothing downloads a browser. Skips when Chromium or Playwright is
absent (`make test` installs Chromium with apt-get where it can). The service is the real one
(`facegate serve`, real models, SQLite); photos come from ../shared/faces (tests that enrol skip
without it)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from tests.conftest import shared_faces
from tests.http_server import ServiceProcess, bearer

CHROMIUM = Path("/usr/bin/chromium")
playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)
if not CHROMIUM.is_file():
    pytest.skip(
        "Chromium is absent at /usr/bin/chromium: browser tests skip (install it: apt-get install chromium)",
        allow_module_level=True,
    )

Page = playwright_api.Page
expect = playwright_api.expect


def _photo(person: str, name: str) -> bytes:
    return (shared_faces() / "examples" / "images" / person / name).read_bytes()


@pytest.fixture(scope="module")
def service(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("console-browser")
    svc = ServiceProcess(data_dir, model_dir)
    assert svc.cli("db", "upgrade").returncode == 0
    created = svc.cli("keys", "create", "--role", "admin", "--name", "browser-admin")
    assert created.returncode == 0, created.stderr
    admin = created.stdout.strip().splitlines()[-1]
    with svc:
        api = httpx.Client(base_url=svc.url, timeout=60, headers=bearer(admin))
        # Still photos can never pass liveness: this door does not require it.
        door = api.post("/v1/doors", json={"name": "Front door", "liveness_required": False}).json()
        door_key = api.post(
            "/v1/keys", json={"role": "door", "name": "front-cam", "door_id": door["id"]}
        ).json()
        auditor = api.post("/v1/keys", json={"role": "auditor", "name": "security desk"}).json()
        yield {
            "url": svc.url,
            "admin": admin,
            "auditor": auditor["key"],
            "door": door,
            "door_key": door_key["key"],
            "api": api,
        }
        api.close()


@pytest.fixture(scope="module")
def pw() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(pw: Any) -> Iterator[Any]:
    b = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
    yield b
    b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    yield pg
    context.close()


def sign_in(page: Page, service: dict[str, Any], key: str) -> None:
    page.goto(f"{service['url']}/console/")
    expect(page).to_have_url(f"{service['url']}/console/login")
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{service['url']}/console/events")


def post_frame(service: dict[str, Any], photo: bytes) -> dict[str, Any]:
    r = httpx.post(
        f"{service['url']}/v1/doors/{service['door']['id']}/frames",
        files=[("frames", ("f.jpg", photo, "image/jpeg"))],
        headers=bearer(service["door_key"]),
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def enrol_by_api(service: dict[str, Any], name: str, photo: bytes) -> int:
    api = service["api"]
    person_id = int(api.post("/v1/people", json={"name": name}).json()["id"])
    r = api.post(f"/v1/people/{person_id}/faces", files={"image": ("p.jpg", photo, "image/jpeg")})
    assert r.status_code == 201, r.text
    return person_id


def image_loaded(page: Page, selector: str) -> bool:
    """Waits until the image has loaded and has pixels (raises on timeout)."""
    image = page.locator(selector).first.element_handle()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image)
    return True


def test_admin_signs_in_enrols_a_real_photo_and_sees_it_in_people(
    page: Page, service: dict[str, Any]
) -> None:
    photo = (
        shared_faces()
        / "examples"
        / "images"
        / "rose_leslie"
        / "examples__knn_examples__train__rose_leslie__img1.jpg"
    )
    sign_in(page, service, service["admin"])
    page.click("nav >> text=People")
    if not page.locator("#enrol").is_visible():
        page.click("summary:has-text('Enrol a person')")
    page.fill("#enrol input[name=name]", "Rose Leslie")
    page.fill("#enrol input[name=external_id]", "B-2001")
    page.set_input_files("#enrol input[name=photo]", str(photo))
    page.click("#enrol button[type=submit]")
    expect(page.locator("h1")).to_have_text("Rose Leslie")
    expect(page.locator("[role=status]")).to_have_text("Enrolled.")
    expect(page.locator("#faces li")).to_have_count(1)
    assert image_loaded(page, "#faces img")
    page.click("text=← People")
    card = page.locator("#people li", has_text="Rose Leslie")
    expect(card).to_contain_text("1 face")
    assert image_loaded(page, "#people li:has-text('Rose Leslie') img")


def test_a_refused_photo_shows_its_reason(page: Page, service: dict[str, Any]) -> None:
    ok, blank = cv2.imencode(".jpg", np.full((480, 640, 3), 128, np.uint8))
    assert ok
    sign_in(page, service, service["admin"])
    page.goto(f"{service['url']}/console/people")
    if not page.locator("#enrol").is_visible():
        page.click("summary:has-text('Enrol a person')")
    page.fill("#enrol input[name=name]", "Blank Wall")
    page.set_input_files(
        "#enrol input[name=photo]",
        files=[{"name": "wall.jpg", "mimeType": "image/jpeg", "buffer": blank.tobytes()}],
    )
    page.click("#enrol button[type=submit]")
    expect(page.locator("#refused")).to_contain_text("no_face")
    expect(page.locator("#faces")).to_contain_text("No face enrolled yet")


def test_auditor_sees_new_events_live_filters_opens_detail_exports_csv_and_signs_out(
    page: Page, service: dict[str, Any]
) -> None:
    enrol_by_api(service, "Barack Obama", _photo("obama", "examples__knn_examples__train__obama__obama.jpg"))
    sign_in(page, service, service["auditor"])
    expect(page.locator("#live")).to_be_visible()
    # A door camera sends a new photo of him, then a stranger comes: both appear without a reload.
    granted = post_frame(service, _photo("obama", "examples__knn_examples__test__obama1.jpg"))
    denied = post_frame(service, _photo("biden", "examples__knn_examples__train__biden__biden.jpg"))
    assert (granted["decision"], denied["decision"]) == ("granted", "denied")
    row = page.locator(f"#events tr[data-id='{granted['event_id']}']")
    expect(row).to_be_visible(timeout=15_000)
    expect(row).to_contain_text("Barack Obama")
    expect(row.locator(".badge")).to_have_text("granted")
    expect(page.locator(f"#events tr[data-id='{denied['event_id']}']")).to_contain_text("denied")
    # The snapshot is in the feed.
    thumb = row.locator("img.thumb")
    expect(thumb).to_be_visible()
    page.wait_for_function(
        "id => { const i = document.querySelector(`#events tr[data-id='${id}'] img.thumb`);"
        " return i && i.complete && i.naturalWidth > 0; }",
        arg=granted["event_id"],
    )

    # Filter: denied only.
    if not page.locator("#filters").is_visible():
        page.click("details.filters > summary")
    page.select_option("#filters select[name=decision]", "denied")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**/console/events?*decision=denied*")
    badges = page.locator("#events tbody .badge").all_inner_texts()
    assert badges and set(badges) == {"denied"}
    expect(page.locator(f"#events tr[data-id='{denied['event_id']}']")).to_be_visible()
    expect(page.locator(f"#events tr[data-id='{granted['event_id']}']")).to_have_count(0)

    # Event detail: decision, reason, distance, τ, liveness, the snapshot beside the enrolled photo.
    page.goto(f"{service['url']}/console/events/{granted['event_id']}")
    facts = page.locator("#facts")
    expect(facts).to_contain_text(granted["reason"])
    expect(facts).to_contain_text(f"{granted['tau']:.4f}")
    expect(facts).to_contain_text(f"{granted['distance']:.4f}")
    expect(facts).to_contain_text("Liveness")
    expect(page.locator("#snapshot")).to_be_visible()
    assert image_loaded(page, "#snapshot")
    assert image_loaded(page, "img[alt^='enrolled photo']")

    # CSV export of the filtered log.
    page.goto(f"{service['url']}/console/events?decision=denied")
    with page.expect_download() as info:
        page.click("text=Export CSV")
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text())))
    assert rows and {r["decision"] for r in rows} == {"denied"}
    assert str(denied["event_id"]) in {r["id"] for r in rows}

    # Sign out: the session is gone, the pages ask for a key again.
    page.click("text=Sign out")
    expect(page).to_have_url(f"{service['url']}/console/login")
    page.goto(f"{service['url']}/console/events")
    expect(page).to_have_url(f"{service['url']}/console/login?next=%2Fconsole%2Fevents")


def test_an_event_without_a_snapshot_says_so(page: Page, service: dict[str, Any]) -> None:
    ok, blank = cv2.imencode(".jpg", np.full((480, 640, 3), 90, np.uint8))
    assert ok
    event = post_frame(service, blank.tobytes())  # no face: nothing to keep
    sign_in(page, service, service["auditor"])
    page.goto(f"{service['url']}/console/events/{event['event_id']}")
    expect(page.locator("#no-snapshot")).to_have_text("No snapshot")
    expect(page.locator("#facts")).to_contain_text(event["reason"])


def test_an_auditor_cannot_reach_admin_pages(page: Page, service: dict[str, Any]) -> None:
    sign_in(page, service, service["auditor"])
    expect(page.locator("nav")).to_contain_text("Events")
    expect(page.locator("nav >> text=People")).to_have_count(0)
    for path in ("people", "doors", "keys", "calibration"):
        response = page.goto(f"{service['url']}/console/{path}")
        assert response is not None and response.status == 403
        expect(page.locator("h1")).to_have_text("Not for this key")


def test_a_post_without_the_csrf_token_is_refused(page: Page, service: dict[str, Any]) -> None:
    sign_in(page, service, service["admin"])
    page.goto(f"{service['url']}/console/doors")
    # The browser's own cookie, but no token: refused, and nothing is created.
    refused = page.request.post(f"{service['url']}/console/doors", form={"name": "Sneaky door"})
    assert refused.status == 403
    # The same request from the page's script with the page's token goes through.
    status = page.evaluate(
        """async () => {
            const token = document.querySelector('input[name=csrf]').value;
            const body = new URLSearchParams({name: 'Scripted door', liveness_required: 'false'});
            const r = await fetch('/console/doors', {method: 'POST', body, headers: {'X-CSRF-Token': token}});
            return r.status;
        }"""
    )
    assert status == 200  # fetch followed the 303 to the new door's page
    names = {d["name"] for d in service["api"].get("/v1/doors").json()}
    assert "Scripted door" in names and "Sneaky door" not in names


def test_enrolment_from_the_browser_camera(pw: Any, service: dict[str, Any], tmp_path: Path) -> None:
    # Chromium's fake camera plays an MJPEG file: a real photo stands in front of the webcam.
    photo = cv2.imread(
        str(
            shared_faces()
            / "examples"
            / "images"
            / "alex_lacamoire"
            / "examples__knn_examples__train__alex_lacamoire__img1.jpg"
        )
    )
    assert photo is not None
    scale = max(480 / photo.shape[0], 640 / photo.shape[1])
    big = cv2.resize(photo, (round(photo.shape[1] * scale), round(photo.shape[0] * scale)))
    y, x = (big.shape[0] - 480) // 2, (big.shape[1] - 640) // 2
    frame = np.ascontiguousarray(big[y : y + 480, x : x + 640])
    ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    video = tmp_path / "camera.mjpeg"
    video.write_bytes(jpeg.tobytes() * 30)
    person_id = int(service["api"].post("/v1/people", json={"name": "Alex Lacamoire"}).json()["id"])
    browser = pw.chromium.launch(
        executable_path=str(CHROMIUM),
        args=[
            "--no-sandbox",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={video}",
        ],
    )
    try:
        context = browser.new_context(permissions=["camera"])
        page = context.new_page()
        page.set_default_timeout(20_000)
        sign_in(page, service, service["admin"])
        page.goto(f"{service['url']}/console/people/{person_id}")
        expect(page.locator("#faces")).to_contain_text("No face enrolled yet")
        page.click("#camera-start")
        page.wait_for_function("() => document.getElementById('camera-video').videoWidth > 0")
        page.click("#camera-shot")
        expect(page.locator("#faces img")).to_have_count(1)
        expect(page.locator("#refused")).to_have_count(0)
    finally:
        browser.close()
    faces = service["api"].get(f"/v1/people/{person_id}/faces").json()
    assert len(faces) == 1


def test_the_console_fits_a_phone(browser: Any, service: dict[str, Any]) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        sign_in(page, service, service["admin"])
        for path in ("events", "attempts", "people", "doors", "keys", "calibration"):
            page.goto(f"{service['url']}/console/{path}")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, (path, width)
            expect(page.locator("nav >> text=Events")).to_be_visible()
        # On a phone, each event is a card: no table header row, the decision still readable.
        page.goto(f"{service['url']}/console/events")
        if page.locator("#events tr.event").count():
            expect(page.locator("#events thead")).to_be_hidden()
            expect(page.locator("#events tr.event").first.locator(".badge")).to_be_visible()
    finally:
        context.close()


def test_calibration_shows_tau_the_curve_and_look_alikes_side_by_side(
    page: Page, service: dict[str, Any]
) -> None:
    enrol_by_api(
        service,
        "Kit Harington",
        _photo("kit_harington", "examples__knn_examples__train__kit_harington__john2.jpeg"),
    )
    enrol_by_api(
        service, "Lin-Manuel Miranda", _photo("lin_manuel_miranda", "examples__lin-manuel-miranda.png")
    )
    api_view = service["api"].get("/v1/gallery/calibration").json()
    sign_in(page, service, service["admin"])
    page.goto(f"{service['url']}/console/calibration")
    facts = page.locator("#calibration")
    expect(facts).to_contain_text(f"{api_view['people']} ({api_view['templates']} faces)")
    expect(page.locator("svg.chart path.curve")).to_have_count(1)
    pairs = page.locator("#look-alikes li")
    expect(pairs).to_have_count(len(api_view["look_alikes"]))
    closest = api_view["look_alikes"][0]
    first = pairs.first
    expect(first).to_contain_text(closest["person_a"]["name"])
    expect(first).to_contain_text(closest["person_b"]["name"])
    expect(first).to_contain_text(f"{closest['distance']:.3f}")
    assert first.locator("img.face").count() == 2


def test_a_reviewer_labels_an_event_and_opens_its_occlusion_map(page: Page, service: dict[str, Any]) -> None:
    kit = "kit_harington"
    # The calibration test may have enrolled him already (module order): reuse him then.
    known = {p["name"]: p["id"] for p in service["api"].get("/v1/people").json()}
    person = known.get("Kit Harington") or enrol_by_api(
        service, "Kit Harington", _photo(kit, "examples__knn_examples__train__kit_harington__john1.jpeg")
    )
    granted = post_frame(service, _photo(kit, "examples__knn_examples__test__johnsnow_test1.jpg"))
    assert granted["decision"] == "granted" and granted["person"]["id"] == person, granted
    sign_in(page, service, service["auditor"])
    page.goto(f"{service['url']}/console/events/{granted['event_id']}")

    # The map is drawn only when asked, then shows as a real PNG.
    explain = page.locator("#explain img")
    assert explain.get_attribute("src") is None
    page.click("#explain > summary")
    page.wait_for_function(
        "() => { const i = document.querySelector('#explain img');"
        " return i && i.complete && i.naturalWidth > 0; }",
        timeout=60_000,
    )

    # A wrong_person label needs the person who really stood there: the API's own rule, shown.
    page.select_option("#label-form select[name=label]", "wrong_person")
    page.click("#label-form button[type=submit]")
    expect(page.locator("body")).to_contain_text("true_person_id")
    page.goto(f"{service['url']}/console/events/{granted['event_id']}")
    page.select_option("#label-form select[name=label]", "correct")
    page.click("#label-form button[type=submit]")
    expect(page.locator("#labelled")).to_have_text("Label saved.")
    expect(page.locator("#label-form select[name=label]")).to_have_value("correct")
    label = httpx.get(
        f"{service['url']}/v1/events/{granted['event_id']}/label",
        headers=bearer(service["auditor"]),
        timeout=30,
    )
    assert label.status_code == 200 and label.json()["label"] == "correct", label.text
