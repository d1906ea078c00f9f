"""Face verification (1:1) through HTTP on the real service and real photos: POST /v1/verify,
POST /v1/people/{id}/verify, claim-mode doors, the verifier role. Needs ../shared/faces (skipped
without it)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from app.evaluation.pairs import encode_images, pair_distances
from app.settings import Settings
from app.vision.pipeline import FacePipeline
from tests.conftest import shared_faces
from tests.http_server import ServiceProcess, bearer

pytestmark = [pytest.mark.shared, pytest.mark.slow]


def _photos() -> dict[str, list[Path]]:
    faces = shared_faces()
    people: dict[str, list[Path]] = {}
    with (faces / "examples" / "labels.csv").open() as fh:
        for row in csv.DictReader(fh):
            people.setdefault(row["identity"], []).append(faces / "examples" / row["file"])
    return {name: sorted(files) for name, files in people.items()}


def _file(path: Path) -> tuple[str, bytes, str]:
    return (path.name, path.read_bytes(), "image/jpeg")


@pytest.fixture(scope="module")
def env(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One server (default profile) with obama and biden enrolled, badges B-OBAMA and B-BIDEN."""
    photos = _photos()
    folder = tmp_path_factory.mktemp("verification")
    svc = ServiceProcess(folder, model_dir)
    assert svc.cli("db", "upgrade").returncode == 0
    admin = svc.cli("keys", "create", "--role", "admin", "--name", "ops").stdout.strip().splitlines()[-1]
    created = svc.cli("keys", "create", "--role", "verifier", "--name", "kiosk")
    assert created.returncode == 0, created.stderr
    verifier = created.stdout.strip().splitlines()[-1]
    with svc:
        c = httpx.Client(base_url=svc.url, timeout=120)
        ids = {}
        for name, badge in (("obama", "B-OBAMA"), ("biden", "B-BIDEN")):
            pid = c.post(
                "/v1/people", json={"name": name, "external_id": badge}, headers=bearer(admin)
            ).json()["id"]
            r = c.post(
                f"/v1/people/{pid}/faces",
                files={"image": _file(photos[name][0])},
                headers=bearer(admin),
            )
            assert r.status_code == 201, r.text
            ids[name] = pid
        auditor = c.post("/v1/keys", json={"role": "auditor", "name": "sec"}, headers=bearer(admin)).json()[
            "key"
        ]
        yield {
            "svc": svc,
            "c": c,
            "admin": admin,
            "verifier": verifier,
            "auditor": auditor,
            "photos": photos,
            "ids": ids,
            "folder": folder,
        }


def _verify(env: dict[str, Any], source: Path, target: Path, **form: str) -> httpx.Response:
    client: httpx.Client = env["c"]
    return client.post(
        "/v1/verify",
        files={"source": _file(source), "target": _file(target)},
        data=form,
        headers=bearer(env["verifier"]),
    )


def test_same_and_different_person(env: dict[str, Any]) -> None:
    obama, biden = env["photos"]["obama"], env["photos"]["biden"]
    same = _verify(env, obama[0], obama[1])
    assert same.status_code == 200, same.text
    body = same.json()
    assert body["same_person"] is True and body["distance"] < body["tau"]
    assert body["match_probability"] is None and body["profile"] == "fusion" and body["target_fmr"] == 1e-5
    assert body["source"]["face"]["index"] == 0 and body["source"]["unmatched_faces"] == []
    different = _verify(env, obama[0], biden[0]).json()
    assert different["same_person"] is False and different["distance"] >= different["tau"]
    assert different["tau"] == body["tau"]  # one 1:1 τ, whoever is compared


def test_two_faces_in_one_image_choose_by_index(env: dict[str, Any]) -> None:
    scene = (
        shared_faces()
        / "examples"
        / "multi_face_scenes"
        / "examples__knn_examples__test__obama_and_biden.jpg"
    )
    biden = env["photos"]["biden"][1]
    answers = []
    default = _verify(env, scene, biden).json()
    faces = 1 + len(default["source"]["unmatched_faces"])
    assert faces >= 2 and default["source"]["face"]["index"] == 0
    for i in range(faces):
        r = _verify(env, scene, biden, source_face=str(i))
        assert r.status_code == 200, r.text
        body = r.json()
        chosen = body["source"]["face"]
        others = body["source"]["unmatched_faces"]
        assert chosen["index"] == i and sorted(o["index"] for o in others) == [
            j for j in range(faces) if j != i
        ]
        assert chosen["box"] not in [o["box"] for o in others]
        answers.append(body["same_person"])
    # Exactly one face of the scene is Biden's.
    assert answers.count(True) == 1
    # Faces are ordered largest first.
    widths = [
        b["box"][2] - b["box"][0] for b in [default["source"]["face"], *default["source"]["unmatched_faces"]]
    ]
    assert widths[0] == max(widths)
    out_of_range = _verify(env, scene, biden, source_face=str(faces))
    assert out_of_range.status_code == 422
    err = out_of_range.json()["error"]
    assert err["code"] == "face_index_out_of_range" and err["details"] == {"image": "source", "faces": faces}


def test_image_errors_name_the_image(env: dict[str, Any]) -> None:
    obama = env["photos"]["obama"][0]
    # A real image without a face: a smooth gradient.
    gradient = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    ok, png = cv2.imencode(".png", cv2.merge([gradient, gradient[:, ::-1], gradient]))
    assert ok
    blank = env["folder"] / "gradient.png"
    blank.write_bytes(png.tobytes())
    r = _verify(env, obama, blank)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "no_face" and r.json()["error"]["details"]["image"] == "target"
    r = env["c"].post(
        "/v1/verify",
        files={"source": ("x.jpg", b"not an image", "image/jpeg"), "target": _file(obama)},
        headers=bearer(env["verifier"]),
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "not_an_image"
    assert r.json()["error"]["details"]["image"] == "source"
    schema = env["c"].get("/openapi.json").json()["paths"]["/v1/verify"]["post"]["responses"]
    assert {"200", "403", "413", "422"} <= set(schema)


def test_agrees_with_eval_verify_distances(env: dict[str, Any], model_dir: Path) -> None:
    """The service's distances are `facegate eval verify`'s, so its decisions at the same τ are too."""
    lfw = shared_faces() / "lfw-dev"
    with (lfw / "pairs.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    picked = [r for r in rows if r["same"] == "1"][:4] + [r for r in rows if r["same"] == "0"][:4]
    pairs = [(int(r["fold"]), lfw / r["img1"], lfw / r["img2"], r["same"] == "1") for r in picked]
    settings = Settings(
        data_dir=env["folder"],
        model_dir=model_dir,
        onnx_providers=("CPUExecutionProvider",),
        onnx_intra_op_threads=2,
    )
    pipeline = FacePipeline.load(settings)
    try:
        embeddings = encode_images(pipeline, sorted({p for _, a, b, _ in pairs for p in (a, b)}))
        offline = pair_distances(pairs, embeddings, pipeline.profile.metric)
    finally:
        pipeline.close()
    compared = 0
    for (_, a, b, _same), d in zip(pairs, offline, strict=True):
        body = _verify(env, a, b).json()
        if body["source"]["unmatched_faces"] or body["target"]["unmatched_faces"]:
            continue  # eval takes the central face, the service the largest: compare single-face pairs
        compared += 1
        assert body["distance"] == pytest.approx(d, abs=1e-4)
        assert body["same_person"] == bool(d < body["tau"])
    assert compared >= 6


def test_verify_against_an_enrolled_person(env: dict[str, Any]) -> None:
    c, photos, ids = env["c"], env["photos"], env["ids"]
    key = bearer(env["verifier"])
    r = c.post(f"/v1/people/{ids['obama']}/verify", files={"image": _file(photos["obama"][2])}, headers=key)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["same_person"] is True and body["person"]["id"] == ids["obama"] and body["templates"] == 1
    r = c.post(f"/v1/people/{ids['obama']}/verify", files={"image": _file(photos["biden"][1])}, headers=key)
    assert r.json()["same_person"] is False
    r = c.post("/v1/people/99999/verify", files={"image": _file(photos["obama"][2])}, headers=key)
    assert r.status_code == 404 and r.json()["error"]["code"] == "person_not_found"
    empty = c.post("/v1/people", json={"name": "nobody yet"}, headers=bearer(env["admin"])).json()["id"]
    r = c.post(f"/v1/people/{empty}/verify", files={"image": _file(photos["obama"][2])}, headers=key)
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_templates"


def _door(env: dict[str, Any], mode: str, name: str | None = None) -> tuple[int, str]:
    c, admin = env["c"], bearer(env["admin"])
    door = c.post(
        "/v1/doors",
        json={"name": name or f"{mode} door", "liveness_required": False, "mode": mode},
        headers=admin,
    )
    assert door.status_code == 201 and door.json()["mode"] == mode, door.text
    door_id = door.json()["id"]
    key = c.post("/v1/keys", json={"role": "door", "name": f"{mode} cam", "door_id": door_id}, headers=admin)
    return door_id, key.json()["key"]


def _frames(env: dict[str, Any], door: tuple[int, str], photo: Path, claim: str | None) -> dict[str, Any]:
    r = env["c"].post(
        f"/v1/doors/{door[0]}/frames",
        files=[("frames", _file(photo))],
        data={} if claim is None else {"claim": claim},
        headers=bearer(door[1]),
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_claim_mode_door(env: dict[str, Any]) -> None:
    photos = env["photos"]
    door = _door(env, "claim")
    holder = _frames(env, door, photos["obama"][2], "B-OBAMA")
    assert holder["decision"] == "granted" and holder["person"]["id"] == env["ids"]["obama"], holder
    assert holder["mode"] == "claim" and holder["claim"] == "B-OBAMA"
    verify_tau = _verify(env, photos["obama"][0], photos["obama"][1]).json()["tau"]
    assert holder["tau"] == pytest.approx(verify_tau)
    by_id = _frames(env, door, photos["obama"][2], f"id:{env['ids']['obama']}")
    assert by_id["decision"] == "granted"
    colleague = _frames(env, door, photos["biden"][1], "B-OBAMA")
    assert (colleague["decision"], colleague["reason"]) == ("denied", "not_claimed_person")
    stranger = _frames(env, door, photos["kit_harington"][0], "B-OBAMA")
    assert (stranger["decision"], stranger["reason"]) == ("denied", "not_claimed_person")
    unknown = _frames(env, door, photos["obama"][2], "B-NOBODY")
    assert (unknown["decision"], unknown["reason"]) == ("denied", "unknown_claim")
    missing = _frames(env, door, photos["obama"][2], None)
    assert (missing["decision"], missing["reason"]) == ("denied", "claim_required")
    event = env["c"].get(f"/v1/events/{colleague['event_id']}", headers=bearer(env["auditor"])).json()
    assert (
        event["mode"] == "claim" and event["claim"] == "B-OBAMA" and event["tau"] == pytest.approx(verify_tau)
    )


def test_claim_denied_when_another_enrolled_person_is_nearer(env: dict[str, Any]) -> None:
    """A face nearer another enrolled person than the claimed one is that person's, even when it
    is under the 1:1 tau of the claimed one: "twin" is enrolled with a second photo of Obama, and
    Obama's own enrolment photo claiming the twin's badge is denied."""
    photos, c, admin = env["photos"], env["c"], bearer(env["admin"])
    door = _door(env, "claim", name="twin claim door")
    twin = c.post("/v1/people", json={"name": "twin", "external_id": "B-TWIN"}, headers=admin).json()["id"]
    try:
        # The service refuses a second person with an enrolled face unless forced (a real twin).
        r = c.post(
            f"/v1/people/{twin}/faces?force=true", files={"image": _file(photos["obama"][1])}, headers=admin
        )
        assert r.status_code == 201, r.text
        claimed = _frames(env, door, photos["obama"][0], "B-TWIN")
        assert (claimed["decision"], claimed["reason"]) == ("denied", "not_claimed_person"), claimed
        # Under tau as the twin, but Obama's own template is nearer (it is this very photo).
        assert claimed["distance"] < claimed["tau"]
        assert claimed["second_distance"] is not None and claimed["second_distance"] < claimed["distance"]
        own = _frames(env, door, photos["obama"][0], "B-OBAMA")
        assert own["decision"] == "granted" and own["person"]["id"] == env["ids"]["obama"], own
    finally:
        assert c.delete(f"/v1/people/{twin}", headers=admin).status_code == 204


def test_both_mode_and_identify_default(env: dict[str, Any]) -> None:
    photos = env["photos"]
    both = _door(env, "both")
    identified = _frames(env, both, photos["biden"][1], None)
    assert identified["decision"] == "granted" and identified["mode"] == "identify"
    claimed = _frames(env, both, photos["biden"][1], "B-OBAMA")
    assert (claimed["mode"], claimed["reason"]) == ("claim", "not_claimed_person")
    c, admin = env["c"], bearer(env["admin"])
    plain = c.post("/v1/doors", json={"name": "plain", "liveness_required": False}, headers=admin).json()
    assert plain["mode"] == "identify"
    patched = c.patch(f"/v1/doors/{plain['id']}", json={"mode": "claim"}, headers=admin)
    assert patched.status_code == 200 and patched.json()["mode"] == "claim"
    assert c.patch(f"/v1/doors/{plain['id']}", json={"mode": "badge"}, headers=admin).status_code == 422


def test_verifier_role_cannot_enrol_read_the_log_or_open_doors(env: dict[str, Any]) -> None:
    c, photos, ids = env["c"], env["photos"], env["ids"]
    v = bearer(env["verifier"])
    assert c.post("/v1/people", json={"name": "x"}, headers=v).status_code == 403
    r = c.post(f"/v1/people/{ids['obama']}/faces", files={"image": _file(photos["obama"][1])}, headers=v)
    assert r.status_code == 403
    assert c.get("/v1/events", headers=v).status_code == 403
    assert c.get("/v1/people", headers=v).status_code == 403
    assert c.post("/v1/keys", json={"role": "admin", "name": "x"}, headers=v).status_code == 403
    r = c.post("/v1/doors/1/frames", files=[("frames", _file(photos["obama"][1]))], headers=v)
    assert r.status_code == 403
    # Admins may verify; door and auditor keys may not.
    admin_verify = c.post(
        "/v1/verify",
        files={"source": _file(photos["obama"][0]), "target": _file(photos["obama"][1])},
        headers=bearer(env["admin"]),
    )
    assert admin_verify.status_code == 200
    r = c.post(
        "/v1/verify",
        files={"source": _file(photos["obama"][0]), "target": _file(photos["obama"][1])},
        headers=bearer(env["auditor"]),
    )
    assert r.status_code == 403
    made = c.post("/v1/keys", json={"role": "verifier", "name": "helpdesk"}, headers=bearer(env["admin"]))
    assert made.status_code == 201 and made.json()["role"] == "verifier"


def test_revoked_badge_refused_at_claim_doors(env: dict[str, Any]) -> None:
    photos, c = env["photos"], env["c"]
    admin = bearer(env["admin"])
    door = _door(env, "both", "badge reader door")
    revoked = c.post("/v1/badges/revoked", json={"badge": "B-BIDEN", "note": "lost"}, headers=admin)
    assert revoked.status_code == 201, revoked.text
    assert revoked.json()["person_id"] == env["ids"]["biden"] and revoked.json()["note"] == "lost"
    again = c.post("/v1/badges/revoked", json={"badge": "B-BIDEN"}, headers=admin)
    assert again.status_code == 201 and again.json()["revoked_at"] == revoked.json()["revoked_at"]
    try:
        # The holder's own face with the revoked badge: refused before any comparison, with its reason.
        holder = _frames(env, door, photos["biden"][1], "B-BIDEN")
        assert (holder["decision"], holder["reason"], holder["mode"]) == ("denied", "revoked_claim", "claim")
        # Without the badge the holder is still recognised (the badge is revoked, not the person).
        plain = _frames(env, door, photos["biden"][1], None)
        assert plain["decision"] == "granted" and plain["person"]["id"] == env["ids"]["biden"]
        listed = c.get("/v1/badges/revoked", headers=admin).json()
        assert [b["badge"] for b in listed] == ["B-BIDEN"]
        assert c.get("/v1/badges/revoked", headers=bearer(env["auditor"])).status_code == 403
        refused = c.post("/v1/badges/revoked", json={"badge": "id:1"}, headers=admin)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request"
    finally:
        assert c.delete("/v1/badges/revoked/B-BIDEN", headers=admin).status_code == 204
    missing = c.delete("/v1/badges/revoked/B-BIDEN", headers=admin)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "badge_not_revoked"
    restored = _frames(env, door, photos["biden"][1], "B-BIDEN")
    assert restored["decision"] == "granted" and restored["mode"] == "claim"
    actions = [r["action"] for r in _audit_actions(env)]
    assert actions.count("badge.revoke") == 1 and actions.count("badge.restore") == 1


def _audit_actions(env: dict[str, Any]) -> list[dict[str, Any]]:
    """The admin actions in the service's audit chain (its SQLite file), oldest first."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{env['folder'] / 'facegate.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT action, target FROM audit_records WHERE kind = 'admin' ORDER BY seq")
            )
            return [{"action": a, "target": t} for a, t in rows]
    finally:
        engine.dispose()
