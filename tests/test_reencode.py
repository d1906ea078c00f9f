"""Moving a live gallery to another profile: kept photos, `reencode`, the switch, replicas following.

Each test runs on a fresh SQLite file and on a fresh PostgreSQL schema (skipped when the server at
127.0.0.1:5432, or FACEGATE_TEST_PG_URL, is unreachable). Recognition goes through the real
models and the real HTTP app (in-process), with real photos from ../shared/faces/examples.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from numpy.typing import NDArray
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app.main import create_app
from app.services.container import Services
from app.services.reencode import (
    GalleryVersionError,
    ReencodeRefusedError,
    choose_serving,
    reencode,
)
from app.settings import Settings
from app.store import db as store_db
from app.store import queries as q
from app.store.models import EnrolmentPhoto, FaceTemplate
from app.vision.manifest import Manifest
from app.vision.pipeline import FacePipeline, profile_encoding_version
from tests.conftest import PG_URL, SHARED_FACES, pg_unavailable

SHA = "cd" * 32


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: a new SQLite file, or a new PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        url = f"sqlite:///{(tmp_path / 'facegate.db').as_posix()}"
        store_db.upgrade(url)
        yield url
        return
    reason = pg_unavailable()
    if reason is not None:
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable ({reason})")
    schema = f"fg_reencode_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)
    try:
        store_db.upgrade(url)
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = store_db.make_engine(db_url)
    yield store_db.make_session_factory(engine)
    engine.dispose()


def _settings(model_dir: Path, tmp_path: Path, db_url: str, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "model_dir": model_dir,
        "database_url": db_url,
        "onnx_providers": ("CPUExecutionProvider",),
        "onnx_intra_op_threads": 2,
        "encode_flip_average": False,
        "gallery_sync_interval_s": 0.3,
        "log_json": False,
    }
    fields.update(overrides)
    return Settings(**fields)


@pytest.fixture(scope="module")
def sface_pipeline(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FacePipeline]:
    settings = _settings(model_dir, tmp_path_factory.mktemp("sface"), "sqlite://")
    pipeline = FacePipeline.load(settings, profile="sface")
    yield pipeline
    pipeline.close()


def _jpeg(rgb: NDArray[np.uint8]) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def _vec(seed: int) -> NDArray[np.float32]:
    v = np.random.default_rng(seed).standard_normal(128).astype(np.float32)
    return v / np.linalg.norm(v)


# --- kept photos in the store ------------------------------------------------------------------


def test_kept_photos_go_with_their_person_and_their_face(sessions: sessionmaker[Session]) -> None:
    photo = b"\xff\xd8 not really a jpeg \xff\xd9"
    with sessions() as s:
        ada = q.create_person(s, "Ada")
        kept = q.add_template(
            s, ada.id, _vec(1), model_version="v1", quality={}, image_sha256=SHA, photo=photo
        )
        plain = q.add_template(s, ada.id, _vec(2), model_version="v1", quality={}, image_sha256=SHA)
        bob = q.add_template(
            s,
            q.create_person(s, "Bob").id,
            _vec(3),
            model_version="v1",
            quality={},
            image_sha256=SHA,
            photo=photo,
        )
        s.commit()
        assert plain.photo_id is None and kept.photo_id is not None
        stored = s.get(EnrolmentPhoto, kept.photo_id)
        assert stored is not None and stored.image == photo and stored.person_id == ada.id
        # Another profile's template of the same photo (what reencode writes).
        [made] = q.add_photo_templates(s, "v2", [q.PhotoTemplate(kept.photo_id, _vec(4), {}, None)])
        s.commit()
        assert made == kept.photo_id
        assert q.photos_without_template(s, "v2") == [bob.photo_id]

        # Deleting one face deletes its photo and the photo's other-version templates.
        v2_id = s.scalars(select(FaceTemplate.id).where(FaceTemplate.model_version == "v2")).one()
        assert sorted(q.delete_template(s, kept.id)) == sorted([kept.id, v2_id])
        s.commit()
        assert s.get(EnrolmentPhoto, kept.photo_id) is None
        assert [t.id for t in q.list_templates(s, ada.id)] == [plain.id]

        # Deleting the person deletes the rest (ON DELETE CASCADE, on both backends).
        q.add_template(s, ada.id, _vec(5), model_version="v1", quality={}, image_sha256=SHA, photo=photo)
        s.commit()
        assert q.delete_person(s, ada.id) is not None
        s.commit()
    with sessions() as s:
        left = s.execute(select(EnrolmentPhoto.person_id)).scalars().all()
        assert left == [bob.person_id]
        assert q.count_photos(s) == 1


def test_a_writer_of_another_version_is_refused_after_the_switch(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        pid = q.create_person(s, "Ada").id
        q.add_template(s, pid, _vec(1), model_version="old", quality={}, image_sha256=SHA)
        q.lock_gallery(s)
        version = q.set_active_version(s, "new")
        s.commit()
        assert q.gallery_state(s) == (version, "new")
        before = q.template_versions(s)
        with pytest.raises(q.StaleModelVersionError) as err:
            q.add_template(s, pid, _vec(2), model_version="old", quality={}, image_sha256=SHA, photo=b"x")
        s.rollback()
        assert err.value.active == "new"
        assert q.template_versions(s) == before and q.count_photos(s) == 0
        q.add_template(s, pid, _vec(3), model_version="new", quality={}, image_sha256=SHA)
        s.commit()


@pytest.mark.slow
def test_enrolment_keeps_the_uploaded_photo_unless_told_not_to(
    model_dir: Path, tmp_path: Path, astronaut: NDArray[np.uint8]
) -> None:
    url = f"sqlite:///{(tmp_path / 'facegate.db').as_posix()}"
    store_db.upgrade(url)
    engine = store_db.make_engine(url)
    sessions = store_db.make_session_factory(engine)
    admin, door_key, door_id = _keys(sessions)
    photo = _jpeg(astronaut)
    for keep in (True, False):
        settings = _settings(model_dir, tmp_path / str(keep), url, profile="dlib", keep_enrolment_photos=keep)
        with TestClient(create_app(settings)) as client:
            api = _Api(client, admin, door_key, door_id)
            pid = api.new_person(f"keep={keep}")
            r = api.enrol(pid, photo)
            assert r.status_code == 201, r.text
            with sessions() as s:
                [template] = q.list_templates(s, pid)
                kept = s.scalars(select(EnrolmentPhoto).where(EnrolmentPhoto.person_id == pid)).all()
                if keep:
                    assert [(p.id, p.image, p.image_sha256) for p in kept] == [
                        (template.photo_id, photo, hashlib.sha256(photo).hexdigest())
                    ]
                else:
                    assert kept == [] and template.photo_id is None
            gone = client.delete(f"/v1/people/{pid}", headers={"Authorization": f"Bearer {admin}"})
            assert gone.status_code == 204
            with sessions() as s:
                assert q.count_photos(s) == 0 and q.template_versions(s) == {}
    engine.dispose()


def test_the_enrol_endpoint_documents_the_switching_refusal(tmp_path: Path) -> None:
    schema = create_app(Settings(data_dir=tmp_path)).openapi()
    responses = schema["paths"]["/v1/people/{person_id}/faces"]["post"]["responses"]
    assert "gallery_switching" in responses["503"]["description"]
    assert responses["503"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")


# --- which version a service serves ------------------------------------------------------------


def test_serving_choice(manifest: Manifest, model_dir: Path, tmp_path: Path) -> None:
    settings = _settings(model_dir, tmp_path, "sqlite://", profile="sface")
    sface = profile_encoding_version(manifest, "sface", False)
    dlib = profile_encoding_version(manifest, "dlib", False)
    # A new gallery, or one with the configured profile's templates: the configured profile.
    assert choose_serving(manifest, settings, None, {}).profile == "sface"
    assert choose_serving(manifest, settings, None, {sface: 3, dlib: 3}).version == sface
    # An install from before profiles (dlib templates only): keeps serving dlib, no re-enrolment.
    legacy = choose_serving(manifest, settings, None, {dlib: 5})
    assert (legacy.profile, legacy.version) == ("dlib", dlib)
    # Pinned: the pin wins over the setting; flip averaging is read from the version.
    flipped = choose_serving(manifest, settings, dlib + "+flipavg", {})
    assert (flipped.profile, flipped.flip_average) == ("dlib", True)
    with pytest.raises(GalleryVersionError, match="facegate gallery reencode --profile sface"):
        choose_serving(manifest, settings, "someone-elses-encoder:1", {})
    with pytest.raises(GalleryVersionError, match="facegate gallery reencode"):
        choose_serving(manifest, settings, None, {"a:1": 1, "b:1": 1})


def test_start_refuses_a_version_no_profile_makes(db_url: str, model_dir: Path, tmp_path: Path) -> None:
    engine = store_db.make_engine(db_url)
    with store_db.make_session_factory(engine)() as s:
        q.lock_gallery(s)
        q.set_active_version(s, "retired-encoder:0123")
        s.commit()
    engine.dispose()
    with pytest.raises(GalleryVersionError, match=r"retired-encoder:0123.*facegate gallery reencode"):
        Services.start(_settings(model_dir, tmp_path, db_url))


def test_a_replica_that_cannot_switch_keeps_serving_the_old_version(sessions: sessionmaker[Session]) -> None:
    from app.gallery.index import FaceIndex
    from app.services.gallery_sync import GallerySync

    with sessions() as s:
        pid = q.create_person(s, "Ada").id
        q.add_template(s, pid, _vec(1), model_version="old", quality={}, image_sha256=SHA)
        s.commit()
    tried: list[str] = []

    def cannot(version: str) -> None:
        tried.append(version)
        raise GalleryVersionError(f"no profile makes {version}")

    index = FaceIndex(128, background_maintenance=False)
    sync = GallerySync(sessions, index, "old", on_switch=cannot)
    sync.load()
    with sessions() as s:
        q.lock_gallery(s)
        q.set_active_version(s, "new")
        q.add_template(s, pid, _vec(2), model_version="new", quality={}, image_sha256=SHA)
        s.commit()
    assert sync.catch_up() and tried == ["new"]
    assert (sync.model_version, len(index)) == ("old", 1)  # the "new" template is not mixed in
    # Deletions still arrive; the unservable version is not tried again.
    with sessions() as s:
        q.delete_person(s, pid)
        s.commit()
    assert sync.catch_up() and tried == ["new"] and len(index) == 0
    assert not sync.catch_up()

    # A switch that fails for another reason (models unreadable...) is retried later, not every poll.
    def broken(version: str) -> None:
        tried.append(version)
        raise RuntimeError("model files unreadable")

    sync = GallerySync(sessions, index, "old", on_switch=broken)
    sync.load()
    with pytest.raises(RuntimeError):
        sync.catch_up()
    assert not sync.catch_up() and tried == ["new", "new"] and sync.model_version == "old"
    index.close()


# --- reencode without re-enrolment -------------------------------------------------------------


def test_people_without_an_encodable_photo_block_the_switch_unless_allowed(
    *,
    sessions: sessionmaker[Session],
    model_dir: Path,
    tmp_path: Path,
    manifest: Manifest,
    sface_pipeline: FacePipeline,
    astronaut: NDArray[np.uint8],
) -> None:
    settings = _settings(model_dir, tmp_path, "sqlite://", profile="dlib")
    dlib = profile_encoding_version(manifest, "dlib", False)
    sface = sface_pipeline.model_version
    photo = _jpeg(astronaut)
    blank = _jpeg(np.full((480, 640, 3), 128, np.uint8))
    with sessions() as s:
        ids = {name: q.create_person(s, name).id for name in ("kept", "legacy", "faceless")}
        sha = hashlib.sha256(photo).hexdigest()
        q.add_template(s, ids["kept"], _vec(1), model_version=dlib, quality={}, image_sha256=sha, photo=photo)
        q.add_template(
            s, ids["legacy"], _vec(2), model_version=dlib, quality={}, image_sha256=SHA
        )  # no photo
        q.add_template(
            s, ids["faceless"], _vec(3), model_version=dlib, quality={}, image_sha256=SHA, photo=blank
        )
        s.commit()

    # Refused before any model work: "legacy" has no kept photo at all.
    with pytest.raises(ReencodeRefusedError) as err:
        reencode(sessions, settings, manifest, "sface", pipeline=sface_pipeline)
    assert [p.name for p in err.value.report.uncovered] == ["legacy"]
    assert err.value.report.encoded == 0
    with sessions() as s:
        assert q.gallery_state(s)[1] is None and q.template_versions(s) == {dlib: 3}

    # Delete "legacy": now "faceless" blocks, because the profile finds no face in its only photo.
    with sessions() as s:
        q.delete_person(s, ids["legacy"])
        s.commit()
    with pytest.raises(ReencodeRefusedError) as err:
        reencode(sessions, settings, manifest, "sface", pipeline=sface_pipeline)
    report = err.value.report
    assert [p.name for p in report.uncovered] == ["faceless"] and report.encoded == 1
    assert [(f.person_id, f.code) for f in report.failed] == [(ids["faceless"], "no_face")]
    with sessions() as s:
        assert q.gallery_state(s)[1] is None  # nothing switched; the one template waits for a rerun

    # --allow-missing switches, lists who lost access; a rerun encodes nothing new.
    report = reencode(sessions, settings, manifest, "sface", pipeline=sface_pipeline, allow_missing=True)
    assert report.switched and report.encoded == 0 and report.active_version == sface
    assert [p.name for p in report.uncovered] == ["faceless"]
    with sessions() as s:
        assert q.gallery_state(s)[1] == sface
        assert q.template_versions(s) == {dlib: 2, sface: 1}
        assert [t.person_id for t in q.list_templates(s, ids["kept"], sface)] == [ids["kept"]]
    again = reencode(sessions, settings, manifest, "sface", pipeline=sface_pipeline)
    assert not again.switched and again.encoded == 0 and again.uncovered == []
    assert any("already serving" in line for line in again.lines())


# --- a live gallery, two replicas --------------------------------------------------------------

# identity -> (enrolment photo, probe photo or None), files under ../shared/faces/examples/images
PEOPLE = {
    "obama": ("examples__knn_examples__train__obama__obama2.jpg", "examples__knn_examples__test__obama1.jpg"),
    "alex_lacamoire": (
        "examples__knn_examples__train__alex_lacamoire__img1.jpg",
        "examples__knn_examples__test__alex_lacamoire1.jpg",
    ),
    "rose_leslie": (
        "examples__knn_examples__train__rose_leslie__img2.jpg",
        "examples__knn_examples__train__rose_leslie__img1.jpg",
    ),
    "lin_manuel_miranda": ("examples__lin-manuel-miranda.png", None),
}
# Enrolled while the reencode is about to switch.
RACER = (
    "kit_harington",
    "examples__knn_examples__train__kit_harington__john1.jpeg",
    "examples__knn_examples__test__johnsnow_test1.jpg",
)


def _photo(identity: str, name: str) -> bytes:
    path = SHARED_FACES / "examples" / "images" / identity / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path.read_bytes()


class _Api:
    """One replica's HTTP app (in-process) with an admin and a door key."""

    def __init__(self, client: TestClient, admin: str, door_key: str, door_id: int) -> None:
        self.c, self.admin, self.door_key, self.door_id = client, admin, door_key, door_id

    @property
    def services(self) -> Services:
        services: Services = self.c.app.state.services  # type: ignore[attr-defined]
        return services

    def enrol(self, person_id: int, photo: bytes) -> Any:
        return self.c.post(
            f"/v1/people/{person_id}/faces",
            files={"image": ("p.jpg", photo, "image/jpeg")},
            headers={"Authorization": f"Bearer {self.admin}"},
        )

    def new_person(self, name: str) -> int:
        r = self.c.post("/v1/people", json={"name": name}, headers={"Authorization": f"Bearer {self.admin}"})
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def decide(self, photo: bytes) -> dict[str, Any]:
        r = self.c.post(
            f"/v1/doors/{self.door_id}/frames",
            files=[("frames", ("f.jpg", photo, "image/jpeg"))],
            headers={"Authorization": f"Bearer {self.door_key}"},
        )
        assert r.status_code == 200, r.text
        return dict(r.json())


def _keys(sessions: sessionmaker[Session]) -> tuple[str, str, int]:
    with sessions() as s:
        door = q.create_door(s, "Lobby", liveness_required=False)
        _, admin = q.create_api_key(s, "admin", "ops")
        _, door_key = q.create_api_key(s, "door", "cam", door.id)
        s.commit()
        return admin, door_key, door.id


def _assert_serves_exactly(services: Services, sessions: sessionmaker[Session], version: str) -> None:
    """The index holds every template of ``version`` and nothing else."""
    assert services.gallery.model_version == version == services.pipeline.model_version
    assert services.calibration.model_version == version
    with sessions() as s:
        arrays = q.all_templates(s, version)
    index = services.index
    assert len(index) == len(arrays.ids) > 0
    hits = index.search_people(arrays.vectors, k_people=1)
    for tid, pid, row in zip(arrays.ids, arrays.person_ids, hits, strict=True):
        assert (row[0].template_id, row[0].person_id) == (tid, pid)
        assert row[0].distance < 1e-4


def _until(predicate: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.shared
def test_reencoding_a_live_gallery_loses_no_person_and_mixes_no_versions(
    *,
    sessions: sessionmaker[Session],
    db_url: str,
    model_dir: Path,
    tmp_path: Path,
    manifest: Manifest,
    sface_pipeline: FacePipeline,
    astronaut: NDArray[np.uint8],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    enrol_photos = {who: _photo(who, files[0]) for who, files in PEOPLE.items()}
    probes = {who: _photo(who, files[1]) for who, files in PEOPLE.items() if files[1]}
    racer_photo, racer_probe = _photo(RACER[0], RACER[1]), _photo(RACER[0], RACER[2])
    stranger = _jpeg(astronaut)
    dlib = profile_encoding_version(manifest, "dlib", False)
    sface = sface_pipeline.model_version
    admin, door_key, door_id = _keys(sessions)
    # The deployment runs the dlib profile with a pinned tau (L2: same person 0.36-0.41 on these
    # photos, different people above 0.69); replica B polls rarely, so it is still on dlib after
    # the switch until it catches up. After the switch the pin (in dlib's metric) no longer
    # applies: sface's calibrated tau does (same person 0.20-0.32 in cosine distance).
    pinned = {"profile": "dlib", "tau": 0.5}
    settings_a = _settings(model_dir, tmp_path / "a", db_url, **pinned)
    settings_b = _settings(model_dir, tmp_path / "b", db_url, **pinned, gallery_sync_interval_s=300.0)
    with TestClient(create_app(settings_a)) as ca, TestClient(create_app(settings_b)) as cb:
        a, b = _Api(ca, admin, door_key, door_id), _Api(cb, admin, door_key, door_id)
        assert a.services.pipeline.model_version == b.services.pipeline.model_version == dlib
        people = {who: a.new_person(who) for who in [*PEOPLE, RACER[0]]}
        for who, photo in enrol_photos.items():
            r = a.enrol(people[who], photo)
            assert r.status_code == 201, r.text
            assert r.json()["model_version"] == dlib
        for who, photo in probes.items():
            d = a.decide(photo)
            assert (d["reason"], d["person"]["id"], d["model_version"]) == ("match", people[who], dlib), d

        # The door keeps deciding while the reencode runs and the switch happens.
        seen: list[dict[str, Any]] = []
        done = threading.Event()

        def door() -> None:
            while not done.is_set():
                seen.append(a.decide(probes["obama"]))

        # An enrolment lands just before the switch takes the gallery lock.
        real_lock = q.lock_gallery
        raced: list[Any] = []

        def lock_after_a_racing_enrolment(session: Session) -> tuple[int, str | None]:
            if not raced:
                raced.append(a.enrol(people[RACER[0]], racer_photo))
            return real_lock(session)

        monkeypatch.setattr(q, "lock_gallery", lock_after_a_racing_enrolment)
        watcher = threading.Thread(target=door)
        watcher.start()
        try:
            settings_cli = _settings(model_dir, tmp_path / "cli", db_url, profile="sface")
            report = reencode(
                sessions, settings_cli, manifest, "sface", pipeline=sface_pipeline, batch_size=2
            )
            _until(lambda: a.services.gallery.model_version == sface)
            time.sleep(0.5)
        finally:
            done.set()
            watcher.join()
        monkeypatch.undo()
        assert raced[0].status_code == 201 and raced[0].json()["model_version"] == dlib
        assert report.switched and report.attempts == 2 and report.failed == [] and report.uncovered == []
        assert (report.photos, report.encoded) == (4, 5)  # the racer's photo was encoded at the switch
        assert seen and all(d["reason"] == "match" and d["person"]["id"] == people["obama"] for d in seen)
        assert {d["model_version"] for d in seen} <= {dlib, sface}

        # Replica A followed by itself: sface pipeline, sface index, sface calibration.
        _assert_serves_exactly(a.services, sessions, sface)
        assert a.services.index.metric == "cosine" and a.services.pipeline.profile.name == "sface"
        for who, photo in [*probes.items(), (RACER[0], racer_probe)]:
            d = a.decide(photo)
            assert (d["reason"], d["person"]["id"], d["model_version"]) == ("match", people[who], sface), d
            assert d["tau"] == a.services.calibration.tau
        assert a.services.calibration.pinned_tau is None  # FACEGATE_TAU is in dlib's metric
        assert a.decide(stranger)["reason"] == "unknown_person"
        faces = a.c.get(f"/v1/people/{people['obama']}/faces", headers={"Authorization": f"Bearer {admin}"})
        assert [f["model_version"] for f in faces.json()] == [sface]

        # Replica B has not polled yet: it refuses to store a dlib template, and stores nothing.
        with sessions() as s:
            before = q.template_versions(s)
        late = b.enrol(people["lin_manuel_miranda"], enrol_photos["lin_manuel_miranda"])
        assert late.status_code == 503 and late.json()["error"]["code"] == "gallery_switching", late.text
        with sessions() as s:
            assert q.template_versions(s) == before
        # Then it catches up, and serves exactly what A serves.
        assert b.services.gallery.catch_up()
        _assert_serves_exactly(b.services, sessions, sface)
        for who, photo in probes.items():
            d = b.decide(photo)
            assert (d["reason"], d["person"]["id"], d["model_version"]) == ("match", people[who], sface), d
        r = b.enrol(people["lin_manuel_miranda"], enrol_photos["lin_manuel_miranda"])
        assert r.status_code == 201 and r.json()["model_version"] == sface, r.text

        # A rerun encodes nothing; every kept photo has exactly one sface template.
        again = reencode(sessions, settings_cli, manifest, "sface", pipeline=sface_pipeline)
        assert (again.encoded, again.switched, again.uncovered) == (0, False, [])
        with sessions() as s:
            assert q.photos_without_template(s, sface) == []
            assert q.template_versions(s) == {dlib: 5, sface: 6}
            # Deleting a person deletes their photos and both versions of their templates.
            q.delete_person(s, people["obama"])
            s.commit()
            assert not s.scalars(
                select(EnrolmentPhoto).where(EnrolmentPhoto.person_id == people["obama"])
            ).all()
            assert q.list_templates(s, people["obama"]) == []
        b.services.gallery.catch_up()
        assert b.decide(probes["obama"])["reason"] == "unknown_person"


@pytest.mark.slow
def test_the_command_lists_who_would_lose_access_and_switches_only_when_allowed(
    model_dir: Path, manifest: Manifest, tmp_path: Path
) -> None:
    from tests.http_server import ServiceProcess

    cli = ServiceProcess(tmp_path, model_dir)
    assert cli.cli("db", "upgrade").returncode == 0
    # Each profile's default flip averaging: on for dlib, off for sface.
    dlib = profile_encoding_version(manifest, "dlib", True)
    sface = profile_encoding_version(manifest, "sface", False)
    engine = store_db.make_engine(f"sqlite:///{(tmp_path / 'facegate.db').as_posix()}")
    with store_db.make_session_factory(engine)() as s:
        pid = q.create_person(s, "Enrolled before photos were kept").id
        q.add_template(s, pid, _vec(1), model_version=dlib, quality={}, image_sha256=SHA)
        s.commit()

    refused = cli.cli("gallery", "reencode", "--profile", "sface")
    assert refused.returncode == 1, refused.stderr
    assert (
        f"person {pid} 'Enrolled before photos were kept': 1 template(s), 0 kept photo(s)" in refused.stdout
    )
    assert "--allow-missing" in refused.stderr
    status = cli.cli("gallery", "status")
    assert status.returncode == 0 and "not pinned yet" in status.stdout
    assert f"1 templates  {dlib}  (profile dlib)" in status.stdout

    allowed = cli.cli("gallery", "reencode", "--profile", "sface", "--allow-missing")
    assert allowed.returncode == 0, allowed.stderr
    assert f"switched: the gallery now serves {sface}" in allowed.stdout
    with store_db.make_session_factory(engine)() as s:
        assert q.gallery_state(s)[1] == sface
    engine.dispose()
    assert f"serving {sface}" in cli.cli("gallery", "status").stdout
    assert cli.cli("gallery", "reencode", "--profile", "nope").returncode == 2
