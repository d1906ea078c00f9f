"""Calibration through the real service: `facegate serve`, real models, real LFW faces enrolled.

The service runs dlib's profile with a pinned τ = 0.6 and the old 1-in-10,000 target, the
configuration whose warnings these tests exercise (with τ unset the service applies the
calibrated τ instead: tests/test_service_realfaces.py), and plain (not mirror-averaged)
encodings so that `facegate embed --profile dlib` gives the very vectors that enrolment stored
and the test can recompute the distances on its own.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import shared_faces
from tests.http_server import ServiceProcess, bearer

PEOPLE = 16  # 16 x 15 = 240 impostor comparisons: enough for the tail model (>= 120)


@pytest.fixture(scope="module")
def service(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("calibration")
    svc = ServiceProcess(
        data_dir,
        model_dir,
        FACEGATE_ENCODE_FLIP_AVERAGE="false",
        FACEGATE_PROFILE="dlib",
        FACEGATE_TAU="0.6",
        FACEGATE_TARGET_STRANGER_FAR="1e-4",
    )
    assert svc.cli("db", "upgrade").returncode == 0
    created = svc.cli("keys", "create", "--role", "admin", "--name", "admin")
    assert created.returncode == 0, created.stderr
    admin = created.stdout.strip().splitlines()[-1]
    with svc:
        c = httpx.Client(base_url=svc.url, timeout=120)
        auditor = c.post("/v1/keys", json={"role": "auditor", "name": "desk"}, headers=bearer(admin)).json()
        yield {"svc": svc, "c": c, "admin": admin, "auditor": auditor["key"]}


def get_calibration(s: dict[str, Any], **params: Any) -> httpx.Response:
    return s["c"].get("/v1/gallery/calibration", params=params, headers=bearer(s["admin"]))


def test_calibration_needs_an_admin_key(service: dict[str, Any]) -> None:
    c = service["c"]
    r = c.get("/v1/gallery/calibration")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert r.json()["error"]["message"] == "send an API key as 'Authorization: Bearer <key>'"
    r = c.get("/v1/gallery/calibration", headers=bearer("fg_not-a-key"))
    assert (r.status_code, r.json()["error"]["message"]) == (401, "the API key is unknown or revoked")
    r = c.get("/v1/gallery/calibration", headers=bearer(service["auditor"]))
    assert r.status_code == 403
    assert r.json()["error"] == {
        "code": "forbidden",
        "message": "this needs a key with role admin; this key is auditor",
        "request_id": r.headers["x-request-id"],
    }
    r = get_calibration(service, target_far=0.5)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    assert "target_far" in r.json()["error"]["message"]


def test_empty_gallery_gives_no_advice_and_stays_ready(service: dict[str, Any]) -> None:
    r = get_calibration(service)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["people"], body["comparisons"], body["model"], body["recommended_tau"]) == (0, 0, None, None)
    assert body["look_alikes"] == [] and body["warning"] is None and body["target_far"] == 1e-4
    ready = service["c"].get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["calibration"]["ok"] is True


@pytest.fixture(scope="module")
def enrolled(service: dict[str, Any]) -> dict[str, Any]:
    lfw = shared_faces() / "lfw-dev"
    with (lfw / "openset_gallery.csv").open(newline="") as fh:
        first = [row for row in csv.DictReader(fh) if row["min_shots"] == "1"]
    c, admin = service["c"], service["admin"]
    ids: dict[int, Path] = {}
    names: dict[int, str] = {}
    for row in first:
        if len(ids) == PEOPLE:
            break
        person = c.post("/v1/people", json={"name": row["identity"]}, headers=bearer(admin)).json()
        path = lfw / row["file"]
        r = c.post(
            f"/v1/people/{person['id']}/faces",
            params={"force": "true"},
            files={"image": (path.name, path.read_bytes(), "image/jpeg")},
            headers=bearer(admin),
        )
        if r.status_code == 422:  # some LFW photos show a second face as large: not enrollable
            assert r.json()["error"]["code"] in {"multiple_faces", "face_too_small", "low_quality"}, r.text
            c.delete(f"/v1/people/{person['id']}", headers=bearer(admin))
            continue
        assert r.status_code == 201, r.text
        ids[person["id"]] = path
        names[person["id"]] = row["identity"]
    assert len(ids) == PEOPLE
    return {"paths": ids, "names": names}


def test_calibration_of_real_faces(service: dict[str, Any], enrolled: dict[str, Any]) -> None:
    svc: ServiceProcess = service["svc"]
    paths: dict[int, Path] = enrolled["paths"]
    r = get_calibration(service)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["people"], body["templates"]) == (PEOPLE, PEOPLE)
    assert (body["comparisons"], body["complete"]) == (PEOPLE * (PEOPLE - 1), True)
    assert body["model"] is not None and body["model"]["kind"] == "normal_lower_tail"

    # The closest pair, recomputed from `facegate embed` (the same encodings enrolment stored).
    out = svc.cli("embed", "--json", "--profile", "dlib", *[str(p) for p in paths.values()])
    assert out.returncode == 0, out.stderr
    vectors = {}
    for pid, line in zip(paths, out.stdout.splitlines(), strict=True):
        faces = json.loads(line)["faces"]
        widest = max(faces, key=lambda f: f["box"][2] - f["box"][0])
        vectors[pid] = np.array(widest["embedding"])
    pids = sorted(vectors)
    nearest = min(
        (float(np.linalg.norm(vectors[a] - vectors[b])), a, b)
        for i, a in enumerate(pids)
        for b in pids[i + 1 :]
    )
    top = body["look_alikes"][0]
    assert top["distance"] == pytest.approx(nearest[0], abs=1e-4)
    assert (top["person_a"]["id"], top["person_b"]["id"]) == nearest[1:]
    assert top["person_a"]["name"] == enrolled["names"][nearest[1]]
    assert top["below_tau"] is (nearest[0] < 0.6)
    distances = sorted(p["distance"] for p in body["look_alikes"])
    assert distances == [p["distance"] for p in body["look_alikes"]]

    # The predictions hang together: FAR = 1 - (1 - FMR)^K, and the recommended tau meets it.
    at_tau = next(p for p in body["curve"] if p["tau"] == body["tau"])
    assert at_tau["far_attempt"] == pytest.approx(1 - (1 - at_tau["fmr"]) ** PEOPLE, rel=1e-9)
    assert body["fmr_at_tau"] == at_tau["fmr"]
    rec = body["recommended_tau"]
    assert rec is not None and rec < body["tau"]
    assert all(p["far_attempt"] <= 1e-4 * (1 + 1e-9) for p in body["curve"] if p["tau"] < rec)
    # At dlib's tau=0.6, one stranger in a hundred matches some given person: 16 people are too many.
    assert body["supported"] is False and body["max_people_at_tau"] < PEOPLE
    assert f"{PEOPLE} people enrolled" in body["warning"]

    # A looser target moves tau up; the cache (same gallery version) makes the second call cheap.
    looser = get_calibration(service, target_far=0.01).json()
    assert looser["recommended_tau"] > rec and looser["compute_ms"] == 0.0
    assert looser["gallery_version"] == body["gallery_version"]


def test_readyz_warns_but_stays_ready_and_the_log_says_so(
    service: dict[str, Any], enrolled: dict[str, Any]
) -> None:
    svc: ServiceProcess = service["svc"]
    deadline = time.monotonic() + 60
    while True:
        ready = service["c"].get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        check = ready.json()["checks"]["calibration"]
        if check.get("current") and check.get("people") == PEOPLE:
            break
        assert time.monotonic() < deadline, check
        time.sleep(0.3)
    assert check["ok"] is True and check["status"] == "warning"
    assert check["max_people_at_tau"] < PEOPLE and f"{PEOPLE} people enrolled" in check["warning"]
    log = svc.log.read_text()
    assert '"level": "warning"' in log and f"calibration: {PEOPLE} people enrolled" in log

    # Deleting a person changes the gallery version: the next answer is recomputed.
    victim = next(iter(enrolled["paths"]))
    before = get_calibration(service).json()
    assert service["c"].delete(f"/v1/people/{victim}", headers=bearer(service["admin"])).status_code == 204
    after = get_calibration(service).json()
    assert after["people"] == PEOPLE - 1 and after["gallery_version"] > before["gallery_version"]
    assert all(victim not in (p["person_a"]["id"], p["person_b"]["id"]) for p in after["look_alikes"])


def test_cli_calibrate_with_strangers(
    service: dict[str, Any], enrolled: dict[str, Any], tmp_path: Path
) -> None:
    lfw = shared_faces() / "lfw-dev"
    with (lfw / "openset_probes.csv").open(newline="") as fh:
        strangers = [row["file"] for row in csv.DictReader(fh) if row["is_enrolled"] == "0"][:12]
    listing = tmp_path / "strangers.csv"
    listing.write_text("file\n" + "".join(f"{lfw / f}\n" for f in strangers))
    svc: ServiceProcess = service["svc"]
    out = svc.cli("calibrate", "--strangers", str(listing), "--json")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    api = get_calibration(service).json()
    assert body["people"] == api["people"] and body["recommended_tau"] <= api["recommended_tau"]
    assert body["strangers"]["strangers"] == 12
    assert body["strangers"]["predicted_far_at_tau"] == pytest.approx(api["far_at_tau"])
    text = svc.cli("calibrate", "--strangers", str(listing))
    assert text.returncode == 0, text.stderr
    assert "reference strangers: 12;" in text.stdout and "WARNING:" in text.stdout
    missing = svc.cli("calibrate", "--strangers", str(tmp_path / "nope.csv"))
    assert missing.returncode == 2 and "nope.csv" in missing.stderr
    # Without strangers the command reads the gallery's encodings only (no pipeline), and must
    # pick exactly the service's encoding version, else it would find nobody enrolled.
    alone = svc.cli("calibrate", "--json")
    assert alone.returncode == 0, alone.stderr
    body = json.loads(alone.stdout)
    assert (body["model_version"], body["people"]) == (api["model_version"], api["people"])
    assert body["recommended_tau"] == pytest.approx(api["recommended_tau"]) and body["strangers"] is None
