"""All FaceGate settings: one pydantic-settings class, read from FACEGATE_* variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.vision.profiles import ProfileName, profile_spec

KNOWN_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
# Per-key rate limits (requests per second, bucket size) by role; see Settings.rate_limit_*.
RateRole = Literal["admin", "door", "auditor", "verifier"]
DEFAULT_RATE_PER_S: dict[RateRole, float] = {"admin": 50.0, "door": 5.0, "auditor": 20.0, "verifier": 10.0}
DEFAULT_RATE_BURST: dict[RateRole, int] = {"admin": 500, "door": 60, "auditor": 200, "verifier": 100}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEGATE_", extra="forbid", frozen=True)

    data_dir: Path = Field(default=Path("./var"), description="Where the service keeps its files.")
    model_dir: Path | None = Field(
        default=None,
        description="Built model artifacts and manifest.json; default <data_dir>/models.",
    )

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default: SQLite file <data_dir>/facegate.db (WAL).",
    )
    store_thumbnails: bool = Field(
        default=False,
        description="Keep a small face thumbnail with each enrolled template (privacy: off by default).",
    )
    keep_enrolment_photos: bool = Field(
        default=True,
        description=(
            "Keep each accepted enrolment photo (deleted with its person). It lets "
            "`facegate gallery reencode` move the gallery to another model profile without re-enrolling "
            "anyone; turning it off stores vectors only (more private), and then people enrolled while "
            "it was off must enrol again after a profile change."
        ),
    )

    # ONNX Runtime: set on purpose so a 2-core box is not oversubscribed by default.
    onnx_providers: tuple[str, ...] = Field(
        default=KNOWN_PROVIDERS,
        description="Execution providers in order of preference; unavailable ones are skipped.",
    )
    onnx_intra_op_threads: int = Field(
        default_factory=lambda: max(1, os.cpu_count() or 1),
        ge=1,
        le=256,
        description="Threads inside one ONNX Runtime operator (default: all cores).",
    )
    onnx_inter_op_threads: int = Field(default=1, ge=1, le=64, description="Threads across operators.")

    profile: ProfileName = Field(
        default="fusion",
        description=(
            "Model profile (detector + alignment + encoder + distance): 'fusion' (the default: YuNet, "
            "SFace and dlib's ResNet on the same face, one fused distance), 'sface' (YuNet + SFace, "
            "cosine) or 'dlib' (dlib's MMOD + ResNet, Euclidean). Changing it on a gallery with "
            "templates needs `facegate gallery reencode --profile P`."
        ),
    )

    # Detection.
    detect_scale: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        description=(
            "sface profile: run YuNet on the frame scaled by this factor (0.5 halves detection time; "
            "faces below about 2x YuNet's smallest, ~20 px at 0.5, are then missed)."
        ),
    )
    detect_max_side: int = Field(
        default=640,
        ge=0,
        le=10_000,
        description=(
            "YuNet profiles: a frame whose longer side exceeds this is searched for faces on a copy "
            "reduced by the smallest whole factor that fits it, and each face found is detected again "
            "on a full-resolution crop around it (kept only if found there, with that detection); "
            "0 = always the whole frame. Never reduced below the factor at which a face of "
            "FACEGATE_RECOGNIZE_MIN_FACE_PX stays findable (~20 px). Detection cost grows with the "
            "pixels: a 1280x720 photo costs about 4x a 640x360 one."
        ),
    )
    detect_upsample_below_px: int = Field(
        default=600,
        ge=0,
        le=10_000,
        description="Upsample once (dlib pyramid_up) when the image's longer side is below this; 0 = never.",
    )
    detect_min_face_px: int = Field(
        default=0, ge=0, le=4096, description="Ignore detected faces narrower than this many pixels."
    )
    encoder_max_batch: int = Field(default=32, ge=1, le=1024, description="Chips per encoder run.")
    encode_flip_average: bool | None = Field(
        default=None,
        description=(
            "Encode each chip and its mirror and average them. Unset: the profile's choice, on for "
            "dlib (LFW 98.83% -> 99.03%), off for sface and fusion (it doubles SFace's cost, the "
            "largest stage, for a gain within the noise of the LFW figures)."
        ),
    )

    # Matching.
    tau: float | None = Field(
        default=None,
        gt=0.0,
        le=2.0,
        description=(
            "Pin the 1:K distance below which a face matches, in the profile's metric (sface: cosine "
            "distance 1 - cos; dlib: L2, its LFW operating point 0.6). Unset (the default): the service "
            "applies the tau calibrated for FACEGATE_TARGET_STRANGER_FAR at the current number of "
            "enrolled people, and follows gallery changes."
        ),
    )

    match_margin: float = Field(
        default=0.04,
        ge=0.0,
        le=0.5,
        description="The second-best person must be this much farther than the best, else 'ambiguous'.",
    )
    target_stranger_far: float = Field(
        default=1e-3,
        ge=1e-9,
        le=0.1,
        description=(
            "The share of stranger attempts that may match someone (1e-3: 1 in 1,000, three times "
            "stricter than NIST's access-control point, FPIR 0.3%). With FACEGATE_TAU unset the "
            "service applies the tau that meets it at the current number of enrolled people."
        ),
    )
    target_fmr_1to1: float = Field(
        default=1e-5,
        ge=1e-9,
        le=0.01,
        description=(
            "The false-match rate per 1:1 claim (POST /v1/verify, /v1/people/{id}/verify, claim-mode "
            "doors): the share of impostors claiming one person's identity who match them (1e-5: 1 in "
            "100,000). A claim compares with one person, so its tau does not depend on how many people "
            "are enrolled."
        ),
    )
    gallery_exact_max: int = Field(
        default=100_000,
        ge=0,
        description="Exact (flat) FAISS search up to this many templates; HNSW above it.",
    )
    gallery_hnsw_m: int = Field(default=32, ge=4, le=128, description="HNSW graph degree.")
    gallery_hnsw_ef_search: int = Field(default=128, ge=8, le=4096, description="HNSW search breadth.")
    gallery_hnsw_ef_construction: int = Field(
        default=80, ge=8, le=1024, description="HNSW build breadth (higher: better recall, slower rebuilds)."
    )

    gallery_sync_interval_s: float = Field(
        default=2.0,
        gt=0.0,
        le=300.0,
        description="How often each replica polls SQL for enrolments made through other replicas.",
    )

    # Enrolment quality gates.
    enrol_min_face_px: int = Field(
        default=80, ge=20, le=2000, description="Smallest face width accepted for enrolment (pixels)."
    )
    enrol_min_sharpness: float = Field(
        default=12.0,
        ge=0.0,
        le=10_000.0,
        description="Blur gate: least variance of the Laplacian on the aligned chip for enrolment.",
    )

    # Access rules (app/access).
    site_timezone: str = Field(
        default="UTC",
        min_length=1,
        max_length=64,
        description=(
            "The site's IANA time zone (e.g. 'Europe/Paris'): access schedules' weekly windows and "
            "holidays are in its local wall-clock time, daylight saving time included."
        ),
    )

    # Second factor (app/access/pin.py).
    pin_max_failures: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Consecutive wrong PINs that lock a person out at that door (a correct PIN resets it).",
    )
    pin_lockout_s: float = Field(
        default=900.0,
        ge=1.0,
        le=7 * 86400.0,
        description="How long a person stays locked out at a door after too many wrong PINs (seconds).",
    )
    pin_scrypt_log2_n: int = Field(
        default=14,
        ge=10,
        le=20,
        description=(
            "scrypt cost of new PIN hashes: N = 2**value (r=8, p=1; 2**14 uses 16 MiB and tens of ms per "
            "check). Each hash keeps its own parameters, so changing this leaves existing PINs valid."
        ),
    )
    pin_for_lookalikes: bool = Field(
        default=False,
        description=(
            "After every calibration, require a PIN from both people of each look-alike pair below the "
            "1:K tau (as POST /v1/gallery/look-alikes/require-pin does); recorded as an admin action."
        ),
    )

    # Liveness.
    liveness_landmarks68: bool = Field(
        default=False,
        description=(
            "Also run dlib's 68-point landmarks on every face (+6 ms per face on 2 cores) and record the "
            "eyes' blink over the burst in the liveness cues. Its training data (iBUG 300-W) excludes "
            "commercial use: enable it only where that is allowed. Built by `facegate models build`."
        ),
    )

    # Recognition.
    recognize_min_face_px: int = Field(
        default=40, ge=20, le=2000, description="Faces narrower than this in a door frame are 'low_quality'."
    )
    max_frames: int = Field(default=15, ge=1, le=100, description="Most frames accepted in one request.")
    burst_nominal_fps: float = Field(
        default=10.0,
        gt=0.0,
        le=240.0,
        description="Frame rate assumed for a burst sent without timestamps (liveness uses frame times).",
    )
    burst_max_span_s: float = Field(
        default=10.0,
        gt=0.0,
        le=60.0,
        description="Longest time one burst may span by its client timestamps; longer is refused.",
    )
    # One worker using every core gives a lone door its lowest latency (p50 67 ms on 2 cores);
    # 2 workers x 1 thread each gives ~14% more frames/s when many doors post at once.
    inference_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Threads running face inference (bounded pool, off the event loop).",
    )
    inference_queue_max: int = Field(
        default=32,
        ge=1,
        le=10_000,
        description="Requests waiting for inference beyond which the API answers 503.",
    )

    # Event snapshots (GET /v1/events/{id}/snapshot; auditor and admin keys only).
    snapshots: bool = Field(
        default=True,
        description=(
            "Keep each access event's best face crop (JPEG) so that security staff can check a decision; "
            "doors with snapshot_full_frame keep the whole frame too. Off: events keep no image."
        ),
    )
    snapshot_retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description=(
            "Snapshots older than this many days are purged (the service checks periodically; "
            "`facegate events purge-snapshots` does it at once). The events themselves stay."
        ),
    )
    snapshot_jpeg_quality: int = Field(
        default=85, ge=30, le=100, description="JPEG quality of stored snapshots (face crop and frame)."
    )
    snapshot_purge_interval_s: float = Field(
        default=3600.0,
        ge=0.1,
        le=86_400.0,
        description="How often the service purges expired snapshots (seconds).",
    )

    # Input limits.
    max_image_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1024,
        le=200 * 1024 * 1024,
        description="Largest accepted image file (bytes).",
    )
    max_image_pixels: int = Field(
        default=40_000_000, ge=10_000, le=400_000_000, description="Largest decoded image (width x height)."
    )
    log_json: bool = Field(default=True, description="Structured JSON log lines (false: plain text).")
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$", description="Log level.")

    # Signed door requests, rate limits, alerts (README "Signed door requests and abuse").
    secret_key: SecretStr | None = Field(
        default=None,
        min_length=32,
        description=(
            "The master key every door's signing secret is derived from (at least 32 characters, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`). Replicas must share it. "
            "Unset: read from FACEGATE_SECRET_KEY_FILE, generated there (mode 0600) on first use."
        ),
    )
    secret_key_file: Path | None = Field(
        default=None,
        description="The master key's file when FACEGATE_SECRET_KEY is unset; default <data_dir>/secret.key.",
    )
    signing_window_s: int = Field(
        default=60,
        ge=5,
        le=3600,
        description="Largest difference between a signed request's timestamp and the service's clock (s).",
    )
    rate_limit_per_s: dict[RateRole, float] = Field(
        default_factory=lambda: dict(DEFAULT_RATE_PER_S),
        description=(
            "Requests per second each API key may make, per role, on each replica (a token bucket; 0: "
            'no limit), e.g. {"door": 2}; roles left out keep their defaults.'
        ),
    )
    rate_limit_burst: dict[RateRole, int] = Field(
        default_factory=lambda: dict(DEFAULT_RATE_BURST),
        description="Requests a key may make at once before its rate applies (bucket size), per role.",
    )
    alert_streak: int = Field(
        default=5,
        ge=2,
        le=1000,
        description="This many spoof or unknown-person bursts in a row at one door raise an alert.",
    )
    alert_streak_window_s: float = Field(
        default=300.0,
        gt=0.0,
        le=86_400.0,
        description="The streak counts only when its first and last bursts are at most this far apart (s).",
    )
    mqtt_url: SecretStr | None = Field(
        default=None,
        description=(
            "Publish alerts (topic <prefix>/alerts) to this MQTT broker: mqtt://[user:password@]host[:port] "
            "or mqtts:// (TLS). Unset: no MQTT."
        ),
    )
    mqtt_topic_prefix: str = Field(
        default="facegate",
        pattern=r"^[^#+/][^#+]*$",
        description="MQTT topics are <prefix>/alerts and <prefix>/events.",
    )
    mqtt_publish_events: bool = Field(
        default=False,
        description="Also publish every access event (no biometric data) to <prefix>/events.",
    )
    alert_webhook_url: SecretStr | None = Field(
        default=None, description="POST every alert as JSON to this http(s) URL. Unset: no webhook."
    )
    publish_queue_max: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="Alerts and events waiting to be published beyond which new ones are dropped (counted).",
    )

    # Web console (/console).
    console_session_ttl_s: int = Field(
        default=8 * 3600,
        ge=60,
        le=7 * 24 * 3600,
        description="A console sign-in ends this long after it started, whatever the activity (seconds).",
    )
    console_idle_timeout_s: int = Field(
        default=30 * 60,
        ge=60,
        le=7 * 24 * 3600,
        description="A console sign-in ends after this long without a request (seconds).",
    )
    console_cookie_secure: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="The session cookie's Secure flag: 'auto' sets it when the request came over https "
        "(behind a TLS proxy, run uvicorn with proxy headers, or use 'always').",
    )

    @field_validator("onnx_providers")
    @classmethod
    def _known_providers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [p for p in value if p not in KNOWN_PROVIDERS]
        if unknown:
            raise ValueError(f"unknown ONNX Runtime providers {unknown}; known: {list(KNOWN_PROVIDERS)}")
        if "CPUExecutionProvider" not in value:
            raise ValueError("CPUExecutionProvider must stay in the list: it is the fallback")
        return value

    @field_validator("site_timezone")
    @classmethod
    def _iana_zone(cls, value: str) -> str:
        from app.access.schedule import site_zone

        site_zone(value)  # ValueError: unknown zone
        return value

    @field_validator("rate_limit_per_s")
    @classmethod
    def _rates(cls, value: dict[RateRole, float]) -> dict[RateRole, float]:
        bad = {role: rate for role, rate in value.items() if not 0.0 <= rate <= 100_000.0}
        if bad:
            raise ValueError(f"rates must be between 0 (no limit) and 100000 per second: {bad}")
        return {**DEFAULT_RATE_PER_S, **value}

    @field_validator("rate_limit_burst")
    @classmethod
    def _bursts(cls, value: dict[RateRole, int]) -> dict[RateRole, int]:
        bad = {role: size for role, size in value.items() if not 1 <= size <= 1_000_000}
        if bad:
            raise ValueError(f"bursts must be between 1 and 1000000 requests: {bad}")
        return {**DEFAULT_RATE_BURST, **value}

    @field_validator("mqtt_url", "alert_webhook_url")
    @classmethod
    def _url_scheme(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        schemes = ("mqtt://", "mqtts://") if info.field_name == "mqtt_url" else ("http://", "https://")
        if value is not None and not value.get_secret_value().startswith(schemes):
            raise ValueError(f"must start with {' or '.join(schemes)}")
        return value

    @model_validator(mode="after")
    def _default_model_dir(self) -> Settings:
        if self.model_dir is None:
            object.__setattr__(self, "model_dir", self.data_dir / "models")
        return self

    def flip_average_for(self, profile: str) -> bool:
        """Whether ``profile`` encodes chip + mirror: the setting, else the profile's default."""
        if self.encode_flip_average is not None:
            return self.encode_flip_average
        return profile_spec(profile).flip_average

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'facegate.db').as_posix()}"

    @property
    def models_path(self) -> Path:
        return self.model_dir if self.model_dir is not None else self.data_dir / "models"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
