"""The door loop: read the source, wait for a still face, send one burst, act on the answer."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import httpx

from app.door.claims import ClaimFeed
from app.door.config import DoorConfig
from app.door.outputs import DoorOutput, make_outputs, public_payload
from app.door.pin_entry import PinEntry
from app.door.trigger import Image, StillFaceTrigger, TriggerSettings, make_finder

log = logging.getLogger(__name__)

HINTS = {"turn_head": "please turn your head slowly left and right, then look at the camera"}
RETRYABLE = {429, 502, 503, 504}
SIGNING_SCHEME = "FG1-HMAC-SHA256"  # the service's app/services/signing.py checks the same string


def sign_request(request: httpx.Request, secret: str) -> None:
    """Add X-FaceGate-Timestamp, -Nonce and -Signature: HMAC-SHA256 with the door's signing secret
    over the scheme, method, path, timestamp, nonce and the SHA-256 of the exact body bytes sent."""
    body = request.read()
    timestamp, nonce = str(int(time.time())), secrets.token_urlsafe(18)
    digest = hashlib.sha256(body).hexdigest()
    message = "\n".join((SIGNING_SCHEME, request.method.upper(), request.url.path, timestamp, nonce, digest))
    mac = hmac.new(secret.encode("utf-8"), message.encode("utf-8"), "sha256").hexdigest()
    request.headers["X-FaceGate-Timestamp"] = timestamp
    request.headers["X-FaceGate-Nonce"] = nonce
    request.headers["X-FaceGate-Signature"] = "v1=" + mac


class SourceError(RuntimeError):
    """The camera, stream or file cannot be opened."""


@dataclass
class RunStats:
    frames_read: int = 0
    bursts_sent: int = 0
    frames_sent: int = 0
    answers: list[dict[str, Any]] = field(default_factory=list)
    source_ended: bool = False  # a live source stopped (a file always ends)


def open_source(source: str) -> tuple[cv2.VideoCapture, bool]:
    """A camera index, a stream URL or a video file; True when it is a file (time from its frame rate)."""
    is_file = Path(source).is_file()
    cap = cv2.VideoCapture(int(source)) if source.isdigit() else cv2.VideoCapture(source)
    if not cap.isOpened():
        raise SourceError(f"cannot open video source {source!r}")
    return cap, is_file


class DoorClient:
    def __init__(
        self,
        server: str,
        door_id: int,
        key: str,
        config: DoorConfig,
        *,
        echo: Callable[[str], None] = log.info,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        claims: ClaimFeed | None = None,
        pin_entry: PinEntry | None = None,
        signing_secret: str | None = None,
    ) -> None:
        self.url = f"{server.rstrip('/')}/v1/doors/{door_id}/frames"
        self.door_id = door_id
        self.config = config
        self.echo = echo
        self.sleep = sleep
        self.http = httpx.Client(
            headers={"Authorization": f"Bearer {key}"}, timeout=config.request_timeout_s, transport=transport
        )
        self.claims = claims  # badge swipes for claim doors (--claim-from)
        self.outputs: list[DoorOutput] = make_outputs(config.outputs, door_id)
        self.trigger = StillFaceTrigger(
            TriggerSettings(
                config.min_face_px,
                config.still_s,
                config.still_diff,
                config.still_shift,
                config.analysis_width,
            ),
            make_finder(config.detector),
        )
        self._last_grant: dict[int, float] = {}
        self.signing_secret = signing_secret  # every burst is signed when set (see sign_request)
        # Read when the service answers pin_required (config pin_from / --pin-from): a keypad.
        self.pin_entry = pin_entry or (PinEntry(config.pin_from, echo=echo) if config.pin_from else None)
        self._status = ""

    def close(self) -> None:
        self.http.close()
        for output in self.outputs:
            output.close()

    def run(self, source: str) -> RunStats:
        cap, is_file = open_source(source)
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        stats = RunStats()
        burst: list[tuple[Image, float]] = []
        collecting = False
        next_allowed = float("-inf")
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    stats.source_ended = not is_file
                    break
                # A file's own clock, so a file gives the same bursts however fast this machine is.
                t = stats.frames_read / fps if is_file else time.monotonic()
                stats.frames_read += 1
                if collecting:
                    if t - burst[-1][1] >= 1.0 / self.config.burst_fps - 1e-6:
                        burst.append((frame, t))
                    if len(burst) == self.config.burst_frames:
                        collecting = False
                        next_allowed = self._answer(self._send(burst, stats), t)
                        self.trigger.reset()
                        burst = []
                elif self.trigger.update(frame, t) and t >= next_allowed:
                    collecting, burst = True, [(frame, t)]
                if self.config.window:
                    self._show(frame)
        finally:
            cap.release()
        return stats

    def _send(self, burst: list[tuple[Image, float]], stats: RunStats) -> dict[str, Any] | None:
        t0 = burst[0][1]
        files = []
        for i, (frame, _) in enumerate(burst):
            ok, jpg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
            if ok:
                files.append(("frames", (f"frame{i}.jpg", jpg.tobytes(), "image/jpeg")))
        data: dict[str, str | list[str]] = {"timestamps": [f"{t - t0:.3f}" for _, t in burst]}
        claim = None if self.claims is None else self.claims.take()
        if claim is not None:
            data["claim"] = claim
        answer = self._post(files, data, stats)
        pin = self._pin_wanted(answer)
        # The same burst (and claim) again, with the PIN; never echoed or logged.
        return answer if pin is None else self._post(files, {**data, "pin": pin}, stats)

    def _pin_wanted(self, answer: dict[str, Any] | None) -> str | None:
        """A PIN from the keypad when the service asks for one and this door has a keypad."""
        if answer is None or answer.get("reason") != "pin_required" or self.pin_entry is None:
            return None
        event = answer.get("event_id")
        self.echo(f"door {self.door_id}: PIN required (event {event}): enter it on the keypad")
        return self.pin_entry.read()

    def _post(
        self,
        files: list[tuple[str, tuple[str, bytes, str]]],
        data: dict[str, str | list[str]],
        stats: RunStats,
    ) -> dict[str, Any] | None:
        """POST one burst; retried with backoff on 502/503/504 and network errors."""
        for attempt in range(self.config.max_attempts):
            r: httpx.Response | None = None
            try:
                stats.bursts_sent += 1
                stats.frames_sent += len(files)
                # Built and signed anew for every try: a retry has its own timestamp and nonce.
                request = self.http.build_request("POST", self.url, files=files, data=data)
                if self.signing_secret is not None:
                    sign_request(request, self.signing_secret)
                r = self.http.send(request)
            except httpx.TransportError as exc:
                why = f"network error: {exc}"
            else:
                if r.status_code == 200:
                    answer: dict[str, Any] = r.json()
                    stats.answers.append(answer)
                    return answer
                if r.status_code not in RETRYABLE:
                    self.echo(
                        f"door {self.door_id}: the service refused the burst: {r.status_code} {r.text[:300]}"
                    )
                    return None
                why = f"service answered {r.status_code}"
            delay = min(self.config.backoff_max_s, self.config.backoff_base_s * 2**attempt)
            if r is not None and r.status_code == 429:  # rate limited: at least what the service asks
                retry_after = r.headers.get("retry-after", "")
                delay = max(delay, float(retry_after)) if retry_after.isdigit() else delay
            self.echo(f"door {self.door_id}: {why}; retrying in {delay:.1f} s")
            self.sleep(delay)
        self.echo(f"door {self.door_id}: burst dropped after {self.config.max_attempts} tries")
        return None

    def _answer(self, answer: dict[str, Any] | None, t: float) -> float:
        """Report the answer and drive the outputs; the time before the next burst may start."""
        if answer is None:
            return t + self.config.retry_s
        payload = public_payload(self.door_id, answer, datetime.now(UTC).isoformat(timespec="seconds"))
        person = payload["person"]
        if payload["decision"] == "granted" and person is not None:
            last = self._last_grant.get(person["id"])
            if last is not None and t - last < self.config.cooldown_s:
                self.echo(
                    f"door {self.door_id}: {person['name']} again within the cooldown; no second unlock"
                )
                return t + self.config.cooldown_s
            self._last_grant[person["id"]] = t
            self._status = f"granted: {person['name']}"
            self.echo(f"door {self.door_id}: granted {person['name']} (event {payload['event_id']})")
            wait = self.config.cooldown_s
        else:
            self._status = f"denied: {payload['reason']}"
            self.echo(f"door {self.door_id}: denied, {payload['reason']} (event {payload['event_id']})")
            wait = self.config.retry_s
        if payload["hint"]:
            self.echo(
                f"door {self.door_id}: hint {payload['hint']}: {HINTS.get(payload['hint'], payload['hint'])}"
            )
            self._status += f" ({payload['hint']})"
        for output in self.outputs:
            output.deliver(payload)
        return t + wait

    def _show(self, frame: Image) -> None:
        view = frame.copy()
        if self.trigger.last_box is not None:
            x, y, w, h = self.trigger.last_box
            cv2.rectangle(view, (x, y), (x + w, y + h), (0, 255, 0), 2)
        cv2.putText(view, self._status, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 255, 255), 2)
        try:
            cv2.imshow(f"facegate door {self.door_id}", view)
            cv2.waitKey(1)
        except cv2.error as exc:  # headless OpenCV: no window support
            log.warning("no preview window (%s); set window = false", exc)
            self.config = self.config.model_copy(update={"window": False})
