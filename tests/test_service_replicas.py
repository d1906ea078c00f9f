"""Two service processes on one PostgreSQL: what one enrols, the other recognises within seconds."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import httpx
import numpy as np

from tests.http_server import ServiceProcess, bearer


def _frame(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def _until(predicate, timeout: float = 15.0) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"not true within {timeout} s")


def test_enrolment_through_one_replica_is_recognised_by_the_other(
    pg_database: str, model_dir: Path, tmp_path: Path
) -> None:
    from skimage import data

    astronaut = np.ascontiguousarray(data.astronaut())
    a = ServiceProcess(tmp_path / "a", model_dir, pg_database)
    b = ServiceProcess(tmp_path / "b", model_dir, pg_database)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert a.cli("db", "upgrade").returncode == 0
    admin = a.cli("keys", "create", "--role", "admin", "--name", "ops").stdout.strip().splitlines()[-1]
    with a, b:
        ca, cb = httpx.Client(base_url=a.url, timeout=60), httpx.Client(base_url=b.url, timeout=60)
        door = ca.post(
            "/v1/doors", json={"name": "Lobby", "liveness_required": False}, headers=bearer(admin)
        ).json()["id"]
        door_key = ca.post(
            "/v1/keys", json={"role": "door", "name": "cam", "door_id": door}, headers=bearer(admin)
        ).json()["key"]
        pid = ca.post("/v1/people", json={"name": "Eileen"}, headers=bearer(admin)).json()["id"]

        def decision_at_b() -> dict[str, object]:
            files = [("frames", ("f.jpg", _frame(astronaut[:, ::-1].copy()), "image/jpeg"))]
            r = cb.post(f"/v1/doors/{door}/frames", files=files, headers=bearer(door_key))
            assert r.status_code == 200, r.text
            return dict(r.json())

        assert decision_at_b()["reason"] == "unknown_person"
        r = ca.post(
            f"/v1/people/{pid}/faces",
            files={"image": ("p.jpg", _frame(astronaut), "image/jpeg")},
            headers=bearer(admin),
        )
        assert r.status_code == 201, r.text
        seen_after = _until(lambda: decision_at_b()["reason"] == "match")
        assert seen_after < 10
        assert cb.get("/readyz").json()["checks"]["index"]["templates"] == 1
        # B's gauges follow changes that reached it through the feed, not only its own writes.
        assert "facegate_gallery_templates 1.0" in cb.get("/metrics").text

        assert ca.delete(f"/v1/people/{pid}", headers=bearer(admin)).status_code == 204
        # B refuses at once (a match is re-checked against SQL before the door opens), and its
        # index drops the template within a poll interval.
        assert decision_at_b()["decision"] == "denied"
        _until(lambda: cb.get("/readyz").json()["checks"]["index"]["templates"] == 0)
        assert decision_at_b()["reason"] == "unknown_person"
