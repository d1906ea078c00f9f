"""The PIN second factor: format, salted slow hash, constant-time check, and the lockout rule.

Pure: no SQL, no HTTP. The service (app/services/second_factor.py) reads and writes the state.

Hash: scrypt (RFC 7914, ``hashlib.scrypt``) with a random 16-byte salt per PIN and a 32-byte
output, stored as one self-describing string::

    scrypt$ln=14,r=8,p=1$<salt, base64>$<hash, base64>

``ln`` is log2 of the CPU/memory cost N. The default N = 2**14, r = 8, p = 1 (16 MiB of memory,
tens of milliseconds per check) is scrypt's "interactive login" setting; it is a setting
(FACEGATE_PIN_SCRYPT_LOG2_N) and each hash keeps the parameters it was made with, so raising it
later leaves older PINs valid. What a slow hash cannot do for a PIN: with 10**4 four-digit PINs,
someone holding a copy of the database tries them all offline in minutes whatever the cost. The
protection at the door is the lockout (repeated wrong PINs lock that person out at that door),
and against a stolen database it is the length of the PIN: ask for 6 digits or more.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

SCHEME = "scrypt"
DEFAULT_LOG2_N = 14
MIN_LOG2_N = 10  # below this the hash is not slow; stored hashes outside the range are refused
MAX_LOG2_N = 20  # 1 GiB of memory at r=8: more would let a crafted row exhaust the service
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
PIN_MIN_DIGITS = 4
PIN_MAX_DIGITS = 12
PIN_REGEX = rf"^[0-9]{{{PIN_MIN_DIGITS},{PIN_MAX_DIGITS}}}$"
_PIN = re.compile(PIN_REGEX)
_ENCODED = re.compile(r"^scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")

# What the PIN check found; recorded in the access event (never the PIN itself).
PinCheck = Literal["correct", "wrong", "missing", "locked_out", "not_set"]
# The denial reason for each failed check.
PIN_REASONS: dict[PinCheck, str] = {
    "wrong": "wrong_pin",
    "missing": "pin_required",
    "locked_out": "pin_locked_out",
    "not_set": "pin_not_set",
}


class PinFormatError(ValueError):
    """Not a PIN: 4 to 12 ASCII digits."""


class PinHashError(ValueError):
    """A stored PIN hash that this code did not make (or with parameters out of range)."""


def validate_pin(pin: str) -> str:
    """The PIN itself when it is 4 to 12 ASCII digits; PinFormatError otherwise (no echo of it)."""
    if not _PIN.fullmatch(pin):
        raise PinFormatError(f"a PIN is {PIN_MIN_DIGITS} to {PIN_MAX_DIGITS} digits (0-9)")
    return pin


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(pin: str, salt: bytes, *, log2_n: int, r: int, p: int, length: int) -> bytes:
    n = 1 << log2_n
    # scrypt needs 128 * r * (N + p + 2) bytes; hashlib's default cap (32 MiB) is too low for ln=15+.
    maxmem = 128 * r * (n + p + 2) + (1 << 20)
    return hashlib.scrypt(pin.encode("ascii"), salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=length)


def hash_pin(pin: str, *, log2_n: int = DEFAULT_LOG2_N) -> str:
    """A new salted scrypt hash of the PIN, in the encoded form above."""
    validate_pin(pin)
    if not MIN_LOG2_N <= log2_n <= MAX_LOG2_N:
        raise ValueError(f"log2_n must be in [{MIN_LOG2_N}, {MAX_LOG2_N}], got {log2_n}")
    salt = os.urandom(SALT_BYTES)
    digest = _scrypt(pin, salt, log2_n=log2_n, r=SCRYPT_R, p=SCRYPT_P, length=HASH_BYTES)
    return f"{SCHEME}$ln={log2_n},r={SCRYPT_R},p={SCRYPT_P}${_b64(salt)}${_b64(digest)}"


@dataclass(frozen=True, slots=True)
class _Parsed:
    log2_n: int
    r: int
    p: int
    salt: bytes
    digest: bytes


def _parse(encoded: str) -> _Parsed:
    m = _ENCODED.fullmatch(encoded)
    if m is None:
        raise PinHashError("not a FaceGate PIN hash (scrypt$ln=..,r=..,p=..$salt$hash)")
    log2_n, r, p = int(m[1]), int(m[2]), int(m[3])
    if not (MIN_LOG2_N <= log2_n <= MAX_LOG2_N and 1 <= r <= 32 and 1 <= p <= 16):
        raise PinHashError(f"PIN hash parameters out of range (ln={log2_n}, r={r}, p={p})")
    try:
        salt = base64.b64decode(m[4], validate=True)
        digest = base64.b64decode(m[5], validate=True)
    except binascii.Error as exc:
        raise PinHashError("PIN hash is not valid base64") from exc
    if len(salt) < 8 or not 16 <= len(digest) <= 64:
        raise PinHashError("PIN hash salt or digest has the wrong length")
    return _Parsed(log2_n, r, p, salt, digest)


def check_hash(encoded: str) -> None:
    """PinHashError when ``encoded`` is not a hash that verify_pin can use."""
    _parse(encoded)


def verify_pin(pin: str, encoded: str) -> bool:
    """True when ``pin`` is the PIN ``encoded`` was made from. The digests are compared in constant
    time; a PIN of the wrong format costs a full hash too, so timing does not tell it apart."""
    parsed = _parse(encoded)
    candidate = pin if _PIN.fullmatch(pin) else "0000"
    digest = _scrypt(
        candidate, parsed.salt, log2_n=parsed.log2_n, r=parsed.r, p=parsed.p, length=len(parsed.digest)
    )
    return hmac.compare_digest(digest, parsed.digest) and candidate == pin


# --- repeated wrong PINs ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    max_failures: int  # consecutive wrong PINs that lock the person out at that door
    lockout_s: float  # for this long


@dataclass(frozen=True, slots=True)
class FailureState:
    """One person at one door: wrong PINs since the last correct one (or the last lockout), and
    until when they are locked out (None: not locked)."""

    failures: int = 0
    locked_until: datetime | None = None

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until


def after_failure(state: FailureState, now: datetime, policy: LockoutPolicy) -> FailureState:
    """One more wrong PIN: the ``max_failures``-th locks out for ``lockout_s`` and starts a new count."""
    failures = state.failures + 1
    if failures >= policy.max_failures:
        return FailureState(0, now + timedelta(seconds=policy.lockout_s))
    return FailureState(failures, None)


@dataclass(frozen=True, slots=True)
class PinDecision:
    check: PinCheck
    state: FailureState | None  # the new state to store; None: leave it as it is

    @property
    def reason(self) -> str | None:
        """The denial reason, None when the PIN was correct."""
        return PIN_REASONS.get(self.check)


def decide_pin(
    *,
    pin: str | None,
    pin_hash: str | None,
    state: FailureState,
    now: datetime,
    policy: LockoutPolicy,
    matches: bool | None = None,
) -> PinDecision:
    """The PIN check of a burst that needs one, in this order: no PIN set for the person
    (``not_set``: an admin must set one), locked out (``locked_out``: the PIN is not even looked
    at), no PIN sent (``missing``), then the PIN itself (``correct`` resets the count; ``wrong``
    counts). ``matches``: verify_pin's answer when the caller computed it beforehand (to hash
    outside a lock); computed here when None."""
    if pin_hash is None:
        return PinDecision("not_set", None)
    if state.locked(now):
        return PinDecision("locked_out", None)
    if pin is None:
        return PinDecision("missing", None)
    ok = verify_pin(pin, pin_hash) if matches is None else matches
    if ok:
        return PinDecision("correct", FailureState() if state != FailureState() else None)
    return PinDecision("wrong", after_failure(state, now, policy))
