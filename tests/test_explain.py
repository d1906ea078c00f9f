"""`facegate explain`: occlusion sensitivity of a probe's distance to a reference (Zeiler & Fergus).

Real models and real photos throughout: LFW pairs from ../shared/faces (skipped when absent) and
skimage's astronaut; the event path on real SQLite and PostgreSQL (skipped when unreachable).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from app.cli import cli
from app.services.explain import ExplainEventError, explain_event
from app.settings import Settings, get_settings
from app.store import db as store_db
from app.store import queries as q
from app.store import snapshot_queries
from app.store.models import AccessEvent
from app.vision.align import extract_chip
from app.vision.align_sface import sface_chip
from app.vision.explain import (
    ExplainError,
    _compose,
    _fill,
    _invert,
    explain_pair,
    figure_size,
    largest_face,
    map_corners,
    occluded_chips,
    occlusion_map,
    polygon_mask,
    render,
)
from app.vision.pipeline import FacePipeline
from tests.conftest import shared_faces


@pytest.fixture(scope="module")
def fusion(settings: Settings) -> FacePipeline:
    return FacePipeline.load(settings, profile="fusion")


def _rgb(path: Path) -> NDArray[np.uint8]:
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def _png(path: Path, rgb: NDArray[np.uint8]) -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _jpeg(rgb: NDArray[np.uint8]) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return bytes(buf.tobytes())


def _another_view(astronaut: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """The astronaut mirrored, smaller, slightly rotated and darker, on a grey canvas."""
    small = cv2.resize(np.ascontiguousarray(astronaut[:, ::-1]), (380, 380))
    canvas = np.full((480, 640, 3), 90, np.uint8)
    canvas[50:430, 130:510] = (small * 0.85).astype(np.uint8)
    rot = cv2.getRotationMatrix2D((320, 240), 6, 1.0)
    return np.ascontiguousarray(cv2.warpAffine(canvas, rot, (640, 480), borderValue=(90, 90, 90)), np.uint8)


# --- the map on real pairs ------------------------------------------------------------------------


SAME_PAIRS = [
    ("Aaron_Sorkin/Aaron_Sorkin_0001.jpg", "Aaron_Sorkin/Aaron_Sorkin_0002.jpg"),
    ("Abdullah_Gul/Abdullah_Gul_0001.jpg", "Abdullah_Gul/Abdullah_Gul_0006.jpg"),
    ("Jelena_Dokic/Jelena_Dokic_0001.jpg", "Jelena_Dokic/Jelena_Dokic_0002.jpg"),
]


@pytest.mark.shared
@pytest.mark.parametrize(("probe", "reference"), SAME_PAIRS)
def test_the_map_of_a_real_pair_lies_on_the_face_not_the_background(
    fusion: FacePipeline, probe: str, reference: str
) -> None:
    images = shared_faces() / "lfw-dev" / "images"
    explanation = explain_pair(fusion, _rgb(images / probe), _rgb(images / reference))
    occ = explanation.occlusion
    # The unoccluded distance is the pipeline's own distance between the two faces.
    a, b = explanation.probe.face.embedding, explanation.reference.face.embedding
    assert occ.base_distance == pytest.approx(0.5 * float(np.sum((a - b) ** 2)), rel=1e-5)
    assert occ.base_distance < 0.7  # the same person, as the fused score sees it
    box = explanation.probe.box_in_frame()
    inside = polygon_mask(box, occ.delta.shape)
    assert 0.4 < inside.mean() < 0.8  # the chip keeps some background around the detector's box
    # Most of what raises the distance when hidden is inside the face box, far more densely than
    # outside it (a map that ignored the face would put ~inside.mean() there at density 1).
    assert occ.mass_inside(box) >= 0.75
    positive = np.maximum(occ.delta, 0.0)
    assert positive[inside].mean() >= 1.5 * positive[~inside].mean()
    # The patch that matters most is on the face.
    r, c = np.unravel_index(int(np.argmax(occ.patch_deltas)), occ.patch_deltas.shape)
    step = occ.delta.shape[0] / occ.grid
    assert inside[int((r + 0.5) * step), int((c + 0.5) * step)]
    assert float(occ.patch_deltas.max()) > 0.02  # hiding part of the face costs the match something


# --- the geometry and the arithmetic -------------------------------------------------------------


def test_each_patch_hides_the_same_place_of_the_face_on_both_chips(
    fusion: FacePipeline, astronaut: NDArray[np.uint8]
) -> None:
    probe = largest_face(fusion, astronaut, "probe")
    assert [c.shape for c in probe.chips] == [(112, 112, 3), (150, 150, 3)]
    grid, patch = 4, 28
    stacks, squares = occluded_chips(probe, grid, patch, 128)
    assert [s.shape for s in stacks] == [(16, 112, 112, 3), (16, 150, 150, 3)]
    frame_to_image = _invert(probe.to_chip[0])
    for i in (5, 6, 9):  # patches well inside the face
        # The SFace chip: exactly the square, grey; nothing else changed.
        changed = np.any(stacks[0][i] != probe.chips[0], axis=2)
        square = polygon_mask(squares[i], (112, 112))
        assert np.all(stacks[0][i][square] == 128)
        assert not np.any(changed & ~square)
        # Both chips: the same square of the photo. Grey the photo itself there and align it again
        # as the pipeline does: on each chip the grey lands on the same pixels.
        photo = astronaut.copy()
        _fill(photo, map_corners(frame_to_image, squares[i]), 128)
        realigned = (
            sface_chip(photo, probe.face.points),
            extract_chip(photo, probe.face.landmarks, size=150, padding=fusion.chip_padding),
        )
        for k in (0, 1):  # only the warp's interpolation at the square's edge differs
            grey_here = np.all(stacks[k][i] == 128, axis=2)
            grey_there = np.all(np.abs(realigned[k].astype(int) - 128) <= 2, axis=2)
            assert (grey_here & grey_there).sum() / (grey_here | grey_there).sum() > 0.9
        centre = map_corners(
            _compose(probe.to_chip[1], frame_to_image), squares[i].mean(axis=0, keepdims=True)
        )[0]
        assert grey_here[int(centre[1]), int(centre[0])]


def test_the_fused_map_is_the_sum_of_its_two_encoders_shares(
    fusion: FacePipeline, astronaut: NDArray[np.uint8]
) -> None:
    probe = largest_face(fusion, astronaut, "probe")
    reference = largest_face(fusion, _another_view(astronaut), "reference")
    occ = occlusion_map(fusion, probe, reference.face.embedding, grid=5, patch_fraction=0.3)
    assert occ.patch_deltas.shape == (5, 5) and occ.encodings == 25 and occ.patch_px == round(112 * 0.3)
    assert set(occ.parts) == {"SFace", "dlib"}
    assert np.allclose(occ.delta, occ.parts["SFace"] + occ.parts["dlib"], atol=1e-5)
    # Each patch's own change is what its occluded copy's distance says: re-encode one by hand.
    stacks, _ = occluded_chips(probe, 5, occ.patch_px, 128)
    one = fusion.encode(stacks[0][12:13], stacks[1][12:13])[0]
    distance = 0.5 * float(np.sum((one - reference.face.embedding) ** 2))
    assert occ.patch_deltas[2, 2] == pytest.approx(distance - occ.base_distance, abs=1e-5)
    with pytest.raises(ValueError, match="grid"):
        occlusion_map(fusion, probe, reference.face.embedding, grid=1)
    with pytest.raises(ValueError, match="patch"):
        occlusion_map(fusion, probe, reference.face.embedding, patch_fraction=0.9)


def test_a_single_encoder_profile_maps_on_its_own_chip(
    settings: Settings, astronaut: NDArray[np.uint8]
) -> None:
    pipeline = FacePipeline.load(settings, profile="dlib")  # dlib's chip is the frame; L2 distance
    explanation = explain_pair(pipeline, astronaut, _another_view(astronaut), grid=4)
    occ = explanation.occlusion
    assert explanation.probe.frame.shape == (150, 150, 3) and occ.parts == {}
    a, b = explanation.probe.face.embedding, explanation.reference.face.embedding
    assert occ.base_distance == pytest.approx(float(np.linalg.norm(a - b)), rel=1e-5)
    figure = render(explanation)
    assert figure.shape == (figure_size(3)[1], figure_size(3)[0], 3)
    with pytest.raises(ExplainError) as err:
        explain_pair(pipeline, astronaut, np.full((200, 200, 3), 128, np.uint8))
    assert err.value.code == "no_face"


# --- the command line ----------------------------------------------------------------------------


def _invoke(
    args: list[str], monkeypatch: pytest.MonkeyPatch, model_dir: Path, data_dir: Path, **env: str
) -> Any:
    monkeypatch.setenv("FACEGATE_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("FACEGATE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("FACEGATE_ONNX_PROVIDERS", '["CPUExecutionProvider"]')
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(cli, args)
    finally:
        get_settings.cache_clear()


def test_explain_cli_writes_the_figure(
    model_dir: Path, tmp_path: Path, astronaut: NDArray[np.uint8], monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = _png(tmp_path / "probe.png", astronaut)
    reference = _png(tmp_path / "reference.png", _another_view(astronaut))
    out = tmp_path / "explain.png"
    args = ["explain", str(probe), str(reference), "--out", str(out), "--grid", "4"]
    result = _invoke(args, monkeypatch, model_dir, tmp_path)
    assert result.exit_code == 0, result.output
    assert "profile fusion, distance" in result.output and "4x4 patches of 28 px" in result.output
    figure = cv2.imread(str(out))
    width, height = figure_size(5)  # probe, reference, the map, and the two encoders' shares
    assert figure is not None and figure.shape == (height, width, 3)
    # A picture with no face, and a wrong call, fail with a message and no figure.
    blank = _png(tmp_path / "blank.png", np.full((240, 320, 3), 128, np.uint8))
    missing = tmp_path / "none.png"
    failed = _invoke(
        ["explain", str(probe), str(blank), "--out", str(missing)], monkeypatch, model_dir, tmp_path
    )
    assert failed.exit_code == 1 and "no face was found in the reference image" in failed.output
    assert not missing.exists()
    wrong = _invoke(["explain", str(probe), "--out", str(missing)], monkeypatch, model_dir, tmp_path)
    assert wrong.exit_code == 2 and not missing.exists()


# --- an access event: its snapshot against the person's kept photo --------------------------------


def _event(session: Session, door_id: int, person_id: int | None, reason: str = "match") -> int:
    event = q.record_event(
        session,
        door_id=door_id,
        decision="granted" if reason == "match" else "denied",
        reason=reason,
        frames=3,
        frames_with_face=3,
        latency_ms=10.0,
        model_version="test",
        request_id="r",
        person_id=person_id,
    )
    return int(event.id)


@pytest.fixture
def events(engine: Engine, fusion: FacePipeline, astronaut: NDArray[np.uint8]) -> dict[str, Any]:
    """A door, Ada (enrolled with a kept photo) and Bob (without one), and events: Ada's match with
    a snapshot, one without a snapshot, a stranger's, and Bob's."""
    factory: sessionmaker[Session] = store_db.make_session_factory(engine)
    photo = _jpeg(_another_view(astronaut))
    snapshot = _jpeg(np.ascontiguousarray(astronaut[20:260, 130:340]))  # a face crop, as kept
    with factory() as s:
        door = q.create_door(s, "lobby")
        ada = q.create_person(s, "Ada")
        bob = q.create_person(s, "Bob")
        embedding = np.zeros(fusion.dim, np.float32)
        digest = hashlib.sha256(photo).hexdigest()
        q.add_template(
            s, ada.id, embedding, model_version="test", quality={}, image_sha256=digest, photo=photo
        )
        q.add_template(s, bob.id, embedding, model_version="test", quality={}, image_sha256=digest)
        ids = {
            "matched": _event(s, door.id, ada.id),
            "no_snapshot": _event(s, door.id, ada.id),
            "stranger": _event(s, door.id, None, "unknown_person"),
            "no_photo": _event(s, door.id, bob.id),
            "faceless": _event(s, door.id, ada.id),
        }
        for name in ("matched", "stranger", "no_photo", "faceless"):
            event = s.get(AccessEvent, ids[name])
            assert event is not None
            picture = _jpeg(np.full((200, 160, 3), 128, np.uint8)) if name == "faceless" else snapshot
            snapshot_queries.add_snapshot(s, event, picture)
        s.commit()
    return {"factory": factory, **ids}


def test_explain_an_event_against_the_matched_persons_kept_photo(
    events: dict[str, Any], fusion: FacePipeline, settings: Settings
) -> None:
    factory = events["factory"]
    explanation = explain_event(factory, fusion, settings, events["matched"], grid=4)
    assert explanation.occlusion.base_distance < 0.7  # the same face, as the fused score sees it
    assert explanation.reference.frame.shape == (112, 112, 3)
    assert explanation.occlusion.patch_deltas.shape == (4, 4)
    for event_id, status, code in (
        (9999, 404, "event_not_found"),
        (events["no_snapshot"], 409, "no_snapshot"),
        (events["stranger"], 409, "no_person"),
        (events["no_photo"], 409, "no_reference_photo"),
        (events["faceless"], 409, "no_face"),  # the kept picture, not the request, is the problem
    ):
        with pytest.raises(ExplainEventError) as err:
            explain_event(factory, fusion, settings, event_id)
        assert (err.value.status, err.value.code) == (status, code)


def test_explain_cli_on_an_event(
    events: dict[str, Any], db_url: str, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "event.png"
    args = ["explain", "--event", str(events["matched"]), "--out", str(out), "--grid", "4"]
    result = _invoke(args, monkeypatch, model_dir, tmp_path, FACEGATE_DATABASE_URL=db_url)
    assert result.exit_code == 0, result.output
    figure = cv2.imread(str(out))
    assert figure is not None and figure.shape[:2] == figure_size(5)[::-1]
    args = ["explain", "--event", str(events["stranger"]), "--out", str(tmp_path / "no.png")]
    refused = _invoke(args, monkeypatch, model_dir, tmp_path, FACEGATE_DATABASE_URL=db_url)
    assert refused.exit_code == 2 and "names no person" in refused.output
    assert not (tmp_path / "no.png").exists()


# --- GET /v1/events/{id}/explain through the real service ------------------------------------------


def test_explain_endpoint_through_the_service(
    model_dir: Path, tmp_path: Path, astronaut: NDArray[np.uint8]
) -> None:
    import httpx

    from tests.http_server import ServiceProcess, bearer

    svc = ServiceProcess(tmp_path, model_dir)
    assert svc.cli("db", "upgrade").returncode == 0
    created = svc.cli("keys", "create", "--role", "admin", "--name", "explain-admin")
    assert created.returncode == 0, created.stderr
    admin = bearer(created.stdout.strip().splitlines()[-1])
    with svc, httpx.Client(base_url=svc.url, timeout=120) as c:
        door = c.post("/v1/doors", json={"name": "Lobby", "liveness_required": False}, headers=admin).json()
        keys = {}
        for role, door_id in (("door", door["id"]), ("auditor", None), ("verifier", None)):
            body = {"role": role, "name": f"{role}-explain", "door_id": door_id}
            keys[role] = bearer(c.post("/v1/keys", json=body, headers=admin).json()["key"])
        ada = c.post("/v1/people", json={"name": "Eileen"}, headers=admin).json()["id"]
        photo = {"image": ("a.jpg", _jpeg(astronaut), "image/jpeg")}
        enrolled = c.post(f"/v1/people/{ada}/faces", files=photo, headers=admin)
        assert enrolled.status_code == 201, enrolled.text

        def post(rgb: NDArray[np.uint8]) -> dict[str, Any]:
            files = [("frames", ("f.jpg", _jpeg(rgb), "image/jpeg"))]
            r = c.post(f"/v1/doors/{door['id']}/frames", files=files, headers=keys["door"])
            assert r.status_code == 200, r.text
            return dict(r.json())

        granted = post(_another_view(astronaut))
        assert (granted["decision"], granted["person"]["id"]) == ("granted", ada)
        nobody = post(np.full((480, 640, 3), 128, np.uint8))
        assert nobody["reason"] == "no_face"

        url = f"/v1/events/{granted['event_id']}/explain"
        r = c.get(url, params={"grid": 4}, headers=keys["auditor"])
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png" and "no-store" in r.headers["cache-control"]
        figure = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        assert figure is not None and figure.shape[:2] == figure_size(5)[::-1]  # the service's fusion

        def error(r: httpx.Response) -> tuple[int, str]:
            return r.status_code, str(r.json()["error"]["code"])

        for key in (keys["door"], keys["verifier"]):
            assert error(c.get(url, headers=key)) == (403, "forbidden")
        assert error(c.get(url, params={"grid": 13}, headers=admin)) == (422, "invalid_request")  # at most 12
        assert error(c.get("/v1/events/999999/explain", headers=admin)) == (404, "event_not_found")
        assert error(c.get(f"/v1/events/{nobody['event_id']}/explain", headers=admin)) == (409, "no_person")
        # The person deleted: their granted events lose the snapshot with the kept photos.
        assert c.delete(f"/v1/people/{ada}", headers=admin).status_code == 204
        assert error(c.get(url, headers=keys["auditor"]))[0] == 409
