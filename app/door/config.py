"""The door client's TOML configuration, validated."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

KEY_ENV = "FACEGATE_DOOR_KEY"
SIGNING_SECRET_ENV = "FACEGATE_DOOR_SIGNING_SECRET"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebhookOutput(_Strict):
    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://", description="Where to POST the decision as JSON.")
    on: Literal["granted", "all"] = Field(
        default="granted", description="Post grants only, or every decision."
    )
    timeout_s: float = Field(default=5.0, gt=0, le=60, description="HTTP timeout of one POST.")


class MqttOutput(_Strict):
    type: Literal["mqtt"]
    host: str = Field(default="127.0.0.1", min_length=1, description="MQTT broker host.")
    port: int = Field(default=1883, ge=1, le=65535, description="MQTT broker port.")
    topic_prefix: str = Field(
        default="facegate",
        pattern=r"^[^#+/][^#+]*$",
        description="Topics are <prefix>/doors/<id>/unlock (grants) and <prefix>/events (every decision).",
    )
    qos: int = Field(default=1, ge=0, le=2, description="MQTT quality of service of the publishes.")
    username: str | None = Field(default=None, description="Broker user name, if the broker asks for one.")
    password_file: Path | None = Field(default=None, description="File holding the broker password.")


class CommandOutput(_Strict):
    type: Literal["command"]
    argv: list[str] = Field(
        min_length=1,
        description="Program and arguments, run without a shell; the decision comes in FACEGATE_* env vars.",
    )
    on: Literal["granted", "all"] = Field(
        default="granted", description="Run on grants only, or on every decision."
    )
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="Kill the command after this long.")


Output = Annotated[WebhookOutput | MqttOutput | CommandOutput, Field(discriminator="type")]


class DoorConfig(_Strict):
    """Everything the door client does besides the server, door id and source on its command line."""

    key_file: Path | None = Field(
        default=None, description=f"File holding the door key; {KEY_ENV} in the environment wins when set."
    )
    signing_secret_file: Path | None = Field(
        default=None,
        description=f"File holding the door's signing secret (every burst is then signed); "
        f"{SIGNING_SECRET_ENV} in the environment wins when set. Neither: bursts go unsigned.",
    )
    burst_frames: int = Field(
        default=8, ge=5, le=15, description="Frames per burst (the service takes 5-15)."
    )
    burst_fps: float = Field(default=5.0, ge=1, le=30, description="Frames per second within a burst.")
    min_face_px: int = Field(default=80, ge=24, le=2000, description="Smallest face side, in source pixels.")
    still_s: float = Field(default=0.6, ge=0, le=10, description="How long a face must be present and still.")
    still_diff: float = Field(
        default=12.0,
        gt=0,
        le=255,
        description="Largest mean grey-level change inside the face box between frames.",
    )
    still_shift: float = Field(
        default=0.15,
        gt=0,
        le=1,
        description="Largest move of the face box between frames, as a share of its width.",
    )
    detector: Literal["auto", "haar", "skin"] = Field(
        default="auto",
        description="Local face check: OpenCV's Haar cascade (OpenCV 4 wheels), a skin-tone blob, or "
        "auto (Haar when this OpenCV has it, else skin).",
    )
    analysis_width: int = Field(default=320, ge=80, le=1920, description="Width the local check works at.")
    cooldown_s: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="After a grant for a person, no burst and no second grant for them.",
    )
    retry_s: float = Field(
        default=2.0, ge=0, le=600, description="Pause after a denial before the next burst."
    )
    backoff_base_s: float = Field(
        default=0.5, gt=0, le=60, description="First wait after 503 busy or a network error."
    )
    backoff_max_s: float = Field(default=30.0, gt=0, le=600, description="Cap of the exponential backoff.")
    max_attempts: int = Field(default=5, ge=1, le=50, description="Tries of one burst before it is dropped.")
    request_timeout_s: float = Field(default=30.0, gt=0, le=600, description="HTTP timeout of one burst.")
    jpeg_quality: int = Field(default=90, ge=50, le=100, description="JPEG quality of the frames sent.")
    window: bool = Field(default=False, description="Show a local preview window with the last outcome.")
    claim_ttl_s: float = Field(
        default=15.0,
        gt=0,
        le=600,
        description="With --claim-from: how long a badge swipe waits for the next burst before it is "
        "dropped.",
    )
    outputs: list[Output] = Field(default_factory=list, description="Where decisions go besides the console.")
    pin_from: str | None = Field(
        default=None,
        pattern=r"^(stdin|file:.+)$",
        description="Where a PIN is read when the service answers 'pin_required' (the same burst is then "
        "sent again with it): 'stdin' (one line) or 'file:PATH' (e.g. a named pipe a keypad writes "
        "to). Never the PIN itself.",
    )

    @model_validator(mode="after")
    def _backoff_order(self) -> DoorConfig:
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError("backoff_max_s must be at least backoff_base_s")
        return self


class ConfigError(ValueError):
    """A configuration file that cannot be read or does not validate, or no door key."""


def load_config(path: Path | None) -> DoorConfig:
    if path is None:
        return DoorConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return DoorConfig.model_validate(data)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def door_key(config: DoorConfig) -> str:
    """The door key from FACEGATE_DOOR_KEY, else from the config's key_file; never from argv."""
    key = os.environ.get(KEY_ENV, "").strip()
    if not key and config.key_file is not None:
        try:
            key = config.key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"key_file {config.key_file}: {exc}") from exc
    if not key:
        raise ConfigError(f"no door key: set {KEY_ENV} or key_file in the config")
    return key


def door_signing_secret(config: DoorConfig) -> str | None:
    """The signing secret from FACEGATE_DOOR_SIGNING_SECRET, else from the config's
    signing_secret_file; None when neither is set (bursts go unsigned). Never from argv."""
    secret = os.environ.get(SIGNING_SECRET_ENV, "").strip()
    if not secret and config.signing_secret_file is not None:
        try:
            secret = config.signing_secret_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"signing_secret_file {config.signing_secret_file}: {exc}") from exc
        if not secret:
            raise ConfigError(f"signing_secret_file {config.signing_secret_file} is empty")
    return secret or None
