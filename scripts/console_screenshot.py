"""Screenshots of the web console for the README: docs/console-security.png (the live access log,
desktop) and docs/console-people.png (people, phone-sized).

It starts the real service on a fresh SQLite database under var/, enrols the example people of
../shared/faces/examples with the console's own form, sends door frames (known people,
strangers, an empty frame) through the API, and photographs the pages in Debian's Chromium.

    .venv/bin/python scripts/console_screenshot.py [--out docs]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.http_server import ServiceProcess, bearer  # noqa: E402

if TYPE_CHECKING:
    from playwright.sync_api import Page

FACES = REPO.parent / "shared" / "faces"
CHROMIUM = "/usr/bin/chromium"
# (person, enrolment photo, a later door photo or None)
PEOPLE = [
    ("Barack Obama", "obama/examples__knn_examples__train__obama__obama.jpg",
     "obama/examples__knn_examples__test__obama1.jpg"),
    ("Kit Harington", "kit_harington/examples__knn_examples__train__kit_harington__john1.jpeg",
     "kit_harington/examples__knn_examples__test__johnsnow_test1.jpg"),
    ("Alex Lacamoire", "alex_lacamoire/examples__knn_examples__train__alex_lacamoire__img1.jpg",
     "alex_lacamoire/examples__knn_examples__test__alex_lacamoire1.jpg"),
    ("Rose Leslie", "rose_leslie/examples__knn_examples__train__rose_leslie__img1.jpg",
     "rose_leslie/examples__knn_examples__train__rose_leslie__img2.jpg"),
    ("Lin-Manuel Miranda", "lin_manuel_miranda/examples__lin-manuel-miranda.png", None),
]  # fmt: skip
STRANGER = "biden/examples__knn_examples__train__biden__biden.jpg"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--model-dir", type=Path, default=REPO / "var" / "test-models")
    args = parser.parse_args()
    if not FACES.is_dir():
        sys.exit("../shared/faces is absent: the screenshots need its example photos")
    if shutil.which(CHROMIUM) is None:
        sys.exit(f"{CHROMIUM} is absent: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    from models.build import build_models

    build_models(args.model_dir)
    images = FACES / "examples" / "images"
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=REPO / "var") as tmp:
        svc = ServiceProcess(Path(tmp), args.model_dir)
        if svc.cli("db", "upgrade").returncode != 0:
            sys.exit("db upgrade failed")
        admin = (
            svc.cli("keys", "create", "--role", "admin", "--name", "alice (admin)")
            .stdout.strip()
            .splitlines()[-1]
        )
        with svc, sync_playwright() as p:
            api = httpx.Client(base_url=svc.url, timeout=60, headers=bearer(admin))
            front = api.post("/v1/doors", json={"name": "Front door", "liveness_required": False}).json()
            api.post("/v1/doors", json={"name": "Loading bay"})
            door_key = api.post(
                "/v1/keys", json={"role": "door", "name": "front-cam", "door_id": front["id"]}
            ).json()
            auditor = api.post("/v1/keys", json={"role": "auditor", "name": "security desk"}).json()["key"]

            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            admin_page = browser.new_context(
                viewport={"width": 390, "height": 780}, is_mobile=True
            ).new_page()
            sign_in(admin_page, svc.url, admin)
            for name, photo, _ in PEOPLE:
                admin_page.goto(f"{svc.url}/console/people")
                if not admin_page.locator("#enrol").is_visible():
                    admin_page.click("summary:has-text('Enrol a person')")
                admin_page.fill("#enrol input[name=name]", name)
                admin_page.set_input_files("#enrol input[name=photo]", str(images / photo))
                admin_page.click("#enrol button[type=submit]")
                admin_page.wait_for_selector("#faces img")

            def door(photo: bytes) -> None:
                files = [("frames", ("f.jpg", photo, "image/jpeg"))]
                r = httpx.post(
                    f"{svc.url}/v1/doors/{front['id']}/frames",
                    files=files,
                    headers=bearer(door_key["key"]),
                    timeout=60,
                )
                r.raise_for_status()

            ok, blank = cv2.imencode(".jpg", np.full((480, 640, 3), 70, np.uint8))
            if not ok:
                sys.exit("cannot encode a JPEG")
            door(blank.tobytes())
            door((images / STRANGER).read_bytes())
            for _, _, later in PEOPLE:
                if later is not None:
                    door((images / later).read_bytes())

            security = browser.new_context(viewport={"width": 1000, "height": 560}).new_page()
            sign_in(security, svc.url, auditor)
            security.wait_for_function("() => [...document.images].every(i => i.complete)")
            security.screenshot(path=str(args.out / "console-security.png"))
            admin_page.goto(f"{svc.url}/console/people")
            admin_page.wait_for_function("() => [...document.images].every(i => i.complete)")
            admin_page.screenshot(path=str(args.out / "console-people.png"))
            browser.close()
            api.close()
    for name in ("console-security.png", "console-people.png"):
        path = args.out / name
        print(f"{path}: {path.stat().st_size // 1024} KiB")
    return 0


def sign_in(page: Page, url: str, key: str) -> None:
    page.goto(f"{url}/console/login")
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/console/events")


if __name__ == "__main__":
    raise SystemExit(main())
