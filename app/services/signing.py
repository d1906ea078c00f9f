"""Signed door requests: per-door secrets derived from one master key, HMAC checks, nonces.

The scheme (FG1-HMAC-SHA256; the door client in app/door/client.py implements the same)::

    string_to_sign = "FG1-HMAC-SHA256" \\n METHOD \\n PATH \\n TIMESTAMP \\n NONCE \\n hex(SHA-256(raw body))
    X-FaceGate-Timestamp: TIMESTAMP   (Unix seconds, an integer)
    X-FaceGate-Nonce:     NONCE       (16-64 characters of [A-Za-z0-9_-], new for every request)
    X-FaceGate-Signature: v1=hex(HMAC-SHA256(secret as UTF-8 bytes, string_to_sign))

PATH is the request's path as sent (``/v1/doors/7/frames``, no query string: the endpoint takes
none). The service refuses a timestamp more than FACEGATE_SIGNING_WINDOW_S from its clock, a bad
signature, and a nonce already seen for that door on any replica (``request_nonces``'s primary
key); nonces are purged once their request would be refused as stale anyway.

Secrets: the service must compute the HMAC, so it needs the secret itself, not a hash of it.
Each door's secret is derived: ``HMAC-SHA256(master key, "facegate-door-signing:<door id>:<generation>")``,
and the database keeps only the generation (and the master key's fingerprint). A database dump
therefore yields no usable secret; issuing a new secret bumps the generation, which retires the
old one at once. The master key is FACEGATE_SECRET_KEY, or the file FACEGATE_SECRET_KEY_FILE
(default <data_dir>/secret.key), created with mode 0600 on first use. Replicas must share it.
"""

from __future__ import annotations

import base64
import hmac
import logging
import os
import re
import secrets
import stat
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from app.settings import Settings
from app.store import security
from app.store.models import Door

log = logging.getLogger(__name__)

SCHEME = "FG1-HMAC-SHA256"
TIMESTAMP_HEADER = "X-FaceGate-Timestamp"
NONCE_HEADER = "X-FaceGate-Nonce"
SIGNATURE_HEADER = "X-FaceGate-Signature"
SIGNATURE_VERSION = "v1="
SECRET_PREFIX = "fgs_"
NONCE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_TIMESTAMP_PATTERN = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE_PATTERN = re.compile(r"^v1=[0-9a-f]{64}$")
MIN_MASTER_KEY_CHARS = 32


class SigningConfigError(RuntimeError):
    """The master key cannot be read or made (a file too short, unreadable, or not writable)."""


class SignatureError(Exception):
    """A signed request refused: ``code`` is the API's error code (all 401)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def string_to_sign(method: str, path: str, timestamp: str, nonce: str, body_sha256: str) -> bytes:
    return "\n".join((SCHEME, method.upper(), path, timestamp, nonce, body_sha256)).encode("utf-8")


def signature(secret: str, message: bytes) -> str:
    """The X-FaceGate-Signature value for a string to sign."""
    return SIGNATURE_VERSION + hmac.new(secret.encode("utf-8"), message, "sha256").hexdigest()


def _read_key_file(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="utf-8").strip()
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise SigningConfigError(f"cannot read the master key file {path}: {exc}") from exc
    if len(text) < MIN_MASTER_KEY_CHARS:
        raise SigningConfigError(
            f"the master key in {path} is shorter than {MIN_MASTER_KEY_CHARS} characters"
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("the master key file %s is readable by others than its owner: chmod 600 it", path)
    return text.encode("utf-8")


def _create_key_file(path: Path) -> None:
    """Write a new random key with mode 0600, atomically: a temporary file linked into place, so a
    process racing us either wins (we read its key) or loses (it reads ours), never a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secrets.token_urlsafe(48) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
            log.warning(
                "generated the master key %s (mode 0600): back it up, and give every replica the same "
                "key (FACEGATE_SECRET_KEY or this file), or door signatures fail on the others",
                path,
            )
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


class MasterKey:
    """The master key, read (or made) on first use; door secrets and the key's fingerprint."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._key: bytes | None = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self._settings.secret_key_file or self._settings.data_dir / "secret.key"

    def _get(self) -> bytes:
        with self._lock:
            if self._key is None:
                given = self._settings.secret_key
                if given is not None:
                    self._key = given.get_secret_value().encode("utf-8")
                else:
                    if not self.path.exists():
                        try:
                            _create_key_file(self.path)
                        except OSError as exc:
                            raise SigningConfigError(
                                f"cannot create the master key file {self.path}: {exc}"
                            ) from exc
                    self._key = _read_key_file(self.path)
            return self._key

    def key_id(self) -> str:
        """A fingerprint (16 hex digits) that tells master keys apart and reveals nothing of them."""
        return hmac.new(self._get(), b"facegate-key-id", "sha256").hexdigest()[:16]

    def door_secret(self, door_id: int, generation: int) -> str:
        mac = hmac.new(self._get(), f"facegate-door-signing:{door_id}:{generation}".encode(), "sha256")
        return SECRET_PREFIX + base64.urlsafe_b64encode(mac.digest()).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class SignedHeaders:
    timestamp: str | None
    nonce: str | None
    signature: str | None

    @property
    def present(self) -> bool:
        return any(v is not None for v in (self.timestamp, self.nonce, self.signature))


@dataclass(frozen=True)
class IssuedSecret:
    door_id: int
    generation: int
    key_id: str
    secret: str
    signing_required: bool


class RequestSigning:
    """Checks door requests (blocking: SQL; run it off the event loop) and issues door secrets."""

    def __init__(
        self, sessions: sessionmaker[Session], settings: Settings, master: MasterKey | None = None
    ) -> None:
        self.sessions = sessions
        self.window_s = settings.signing_window_s
        self.master = master or MasterKey(settings)
        self._next_purge = 0.0
        self._purge_lock = threading.Lock()

    def issue(self, session: Session, door: Door) -> IssuedSecret:
        """A new secret for the door (the caller commits): the generation moves on, so the previous
        secret stops working as soon as this commits."""
        door.signing_generation = int(door.signing_generation or 0) + 1
        door.signing_key_id = self.master.key_id()
        session.flush()
        return IssuedSecret(
            door.id,
            door.signing_generation,
            door.signing_key_id,
            self.master.door_secret(door.id, door.signing_generation),
            door.signing_required,
        )

    def check(
        self,
        door_id: int,
        method: str,
        path: str,
        headers: SignedHeaders,
        body_sha256: str | None,
        *,
        now: float | None = None,
    ) -> bool:
        """Accept (True: signed and valid; False: unsigned at a door that allows it) or raise
        SignatureError. The nonce is recorded only for a request whose signature is valid, so a
        forger cannot use up a door's nonces."""
        with self.sessions() as session:
            door = session.get(Door, door_id)
            if door is None:
                return False  # the endpoint answers 404
            required, generation, key_id = (
                door.signing_required,
                int(door.signing_generation),
                door.signing_key_id,
            )
        if not headers.present:
            if required:
                raise SignatureError(
                    "signature_required",
                    f"door {door_id} accepts signed requests only: send {TIMESTAMP_HEADER}, {NONCE_HEADER} "
                    f"and {SIGNATURE_HEADER} (see the README)",
                )
            return False
        ts, nonce, sig = headers.timestamp, headers.nonce, headers.signature
        if ts is None or nonce is None or sig is None:
            raise SignatureError(
                "bad_signature",
                f"a signed request needs all of {TIMESTAMP_HEADER}, {NONCE_HEADER}, {SIGNATURE_HEADER}",
            )
        if not _TIMESTAMP_PATTERN.match(ts):
            raise SignatureError("bad_signature", f"{TIMESTAMP_HEADER} must be Unix seconds (an integer)")
        if not NONCE_PATTERN.match(nonce):
            raise SignatureError(
                "bad_signature", f"{NONCE_HEADER} must be 16-64 characters of A-Z a-z 0-9 _ -"
            )
        if not _SIGNATURE_PATTERN.match(sig):
            raise SignatureError(
                "bad_signature", f"{SIGNATURE_HEADER} must be v1= and 64 lowercase hex digits"
            )
        if body_sha256 is None:
            raise SignatureError("bad_signature", "the request body could not be hashed")
        if generation == 0:
            raise SignatureError(
                "bad_signature",
                f"door {door_id} has no signing secret yet (POST /v1/doors/{door_id}/signing-secret)",
            )
        if key_id is not None and key_id != self.master.key_id():
            log.error(
                "door %d's signing secret was issued under master key %s, this replica has %s: replicas must "
                "share FACEGATE_SECRET_KEY (or the key file)",
                door_id,
                key_id,
                self.master.key_id(),
            )
            raise SignatureError(
                "bad_signature", "this replica's master key differs from the one that issued the secret"
            )
        message = string_to_sign(method, path, ts, nonce, body_sha256)
        expected = signature(self.master.door_secret(door_id, generation), message)
        if not hmac.compare_digest(expected, sig):
            raise SignatureError("bad_signature", "the signature does not match the request")
        clock = time.time() if now is None else now
        skew = int(ts) - clock
        if abs(skew) > self.window_s:
            raise SignatureError(
                "stale_request",
                f"the timestamp is {skew:+.0f} s off the service's clock (at most ±{self.window_s} s)",
            )
        expires = datetime.fromtimestamp(int(ts) + self.window_s, UTC)
        with self.sessions() as session:
            if not security.claim_nonce(session, door_id, nonce, expires):
                raise SignatureError(
                    "replayed_request", "this nonce was used already: a request is never accepted twice"
                )
            session.commit()
        self._purge(clock)
        return True

    def _purge(self, clock: float) -> None:
        """Delete expired nonces, at most once per window on each replica."""
        with self._purge_lock:
            if clock < self._next_purge:
                return
            self._next_purge = clock + self.window_s
        with self.sessions() as session:
            removed = security.purge_nonces(
                session, datetime.fromtimestamp(clock, UTC) - timedelta(seconds=1)
            )
            session.commit()
        if removed:
            log.debug("purged %d expired request nonces", removed)
