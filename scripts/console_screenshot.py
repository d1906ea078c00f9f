"""Screenshots of the web console for the README: docs/console-security.png (the live access log,
desktop) and docs/console-people.png (people, phone-sized).

It starts the real service on a fresh SQLite database under var/, enrols a person with the
console's own form, sends door frames through the API, and photographs the pages in Debian's
Chromium. The only face is scikit-image's astronaut (Eileen Collins, a NASA photo in the public
domain): pictures of ../shared/faces must never end up in the repository, screenshots included.

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

CHROMIUM = "/usr/bin/chromium"


def _jpeg(bgr: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", bgr)
    if not ok:
        sys.exit("cannot encode a JPEG")
    return data.tobytes()


def _pictures() -> dict[str, bytes]:
    """The astronaut for enrolment, two other views of her for the door, and two faceless frames."""
    from skimage import data

    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    cat = cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2BGR)
    return {
        "enrol": _jpeg(astronaut),
        "door_mirrored": _jpeg(cv2.flip(astronaut, 1)),
        "door_closer": _jpeg(cv2.resize(astronaut[0:400, 60:460], (480, 480), interpolation=cv2.INTER_AREA)),
        "empty": _jpeg(np.full((480, 640, 3), 70, np.uint8)),
        "cat": _jpeg(cat),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--model-dir", type=Path, default=REPO / "var" / "test-models")
    args = parser.parse_args()
    if shutil.which(CHROMIUM) is None:
        sys.exit(f"{CHROMIUM} is absent: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    from models.build import build_models

    build_models(args.model_dir)
    pictures = _pictures()
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
            enrol_photo = Path(tmp) / "eileen-collins.jpg"
            enrol_photo.write_bytes(pictures["enrol"])
            admin_page.goto(f"{svc.url}/console/people")
            if not admin_page.locator("#enrol").is_visible():
                admin_page.click("summary:has-text('Enrol a person')")
            admin_page.fill("#enrol input[name=name]", "Eileen Collins")
            admin_page.set_input_files("#enrol input[name=photo]", str(enrol_photo))
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

            for name in ("empty", "cat", "door_mirrored", "door_closer"):
                door(pictures[name])

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
