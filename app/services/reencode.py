"""Which template version the gallery serves, and moving it to another profile without re-enrolment.

Every template carries the model version that made it, and the service matches only one version:
``gallery_state.active_version``. The first service to start pins it (:func:`pin_serving_version`);
afterwards only :func:`reencode` changes it.

``facegate gallery reencode --profile P`` encodes every kept enrolment photo with P's pipeline into
templates of P's version, beside the old ones, while the service keeps serving the old version
(its index loads only the active version, so the new templates are never compared with it). Then,
in one transaction holding the gallery lock, it checks that every kept photo has a P template (an
enrolment may have raced it: then it encodes the new photos and tries again) and sets the active
version. Every replica sees the switch on its next poll and swaps pipeline, index and
calibration together (``Services.follow_active_version``); an enrolment made with the old pipeline
after the switch is refused rather than stored in the wrong space.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from app.services.enrolment import EnrolmentRefusedError, analyse_photo
from app.settings import Settings
from app.store import queries
from app.vision.imageio import ImageError
from app.vision.manifest import Manifest
from app.vision.pipeline import FacePipeline, profile_encoding_version
from app.vision.profiles import PROFILE_NAMES, ProfileName, profile_spec

log = logging.getLogger(__name__)

DEFAULT_BATCH = 32
# Enrolments racing the switch are encoded and the switch retried; a gallery that gains photos
# faster than they can be encoded this many times over is not a gallery to switch under load.
SWITCH_ATTEMPTS = 5


class GalleryVersionError(RuntimeError):
    """The gallery's templates are of a version this build cannot serve."""


@dataclass(frozen=True)
class ServingChoice:
    version: str
    profile: ProfileName
    flip_average: bool


def producers(manifest: Manifest, settings: Settings) -> dict[str, tuple[ProfileName, bool]]:
    """Every template version this build makes -> (profile, flip averaging); the configured
    flip-averaging mode first, so it wins if both modes ever made the same version."""
    made: dict[str, tuple[ProfileName, bool]] = {}
    for name in PROFILE_NAMES:
        configured = settings.flip_average_for(name)
        for flip in (configured, not configured):
            made.setdefault(profile_encoding_version(manifest, name, flip), (name, flip))
    return made


def choose_serving(
    manifest: Manifest, settings: Settings, active: str | None, versions: dict[str, int]
) -> ServingChoice:
    """The version to serve: the active one when set; else (nothing pinned yet) the configured
    profile's, unless the gallery holds templates of exactly one other version this build makes
    and none of the configured one (an install from before profiles: keep serving it).

    ``versions``: template counts per model version (needed only when ``active`` is None).
    Raises GalleryVersionError when no profile of this build makes the version to serve.
    """
    made = producers(manifest, settings)
    hint = f"`facegate gallery reencode --profile {settings.profile}`"
    if active is not None:
        if active not in made:
            raise GalleryVersionError(
                f"the gallery serves templates of model version {active!r}, which no profile of this "
                f"build makes ({', '.join(sorted(made))}); run {hint} with this build to re-encode the "
                "kept enrolment photos and switch, or run the build that made them"
            )
        return ServingChoice(active, *made[active])
    flip = settings.flip_average_for(settings.profile)
    configured = profile_encoding_version(manifest, settings.profile, flip)
    if not versions or configured in versions:
        return ServingChoice(configured, settings.profile, flip)
    known = [v for v in versions if v in made]
    if len(known) == 1:
        return ServingChoice(known[0], *made[known[0]])
    raise GalleryVersionError(
        f"the gallery has templates of {', '.join(sorted(versions))} and none of the configured "
        f"profile's {configured!r}; run {hint} to re-encode the kept enrolment photos and switch"
    )


def serving_choice(session: Session, manifest: Manifest, settings: Settings) -> ServingChoice:
    """What the gallery serves now, read from SQL (``choose_serving`` on its active version and,
    when none is pinned yet, its template counts). Raises GalleryVersionError like it."""
    _, active = queries.gallery_state(session)
    versions = queries.template_versions(session) if active is None else {}
    return choose_serving(manifest, settings, active, versions)


def pin_serving_version(
    sessions: sessionmaker[Session], manifest: Manifest, settings: Settings
) -> ServingChoice:
    """The version this service serves; pins it as the gallery's active version when none is set,
    so that every replica and every writer agrees on one version from then on."""
    with sessions() as session:
        _, active = queries.gallery_state(session)
        if active is not None:
            choice = choose_serving(manifest, settings, active, {})
        else:
            choice = choose_serving(manifest, settings, None, queries.template_versions(session))
            _, active = queries.lock_gallery(session)
            if active is None:
                queries.set_active_version(session, choice.version)
                session.commit()
                log.info("gallery pinned to model version %s (profile %s)", choice.version, choice.profile)
            else:  # another replica pinned it first
                session.rollback()
                choice = choose_serving(manifest, settings, active, {})
    if choice.profile != settings.profile:
        log.warning(
            "FACEGATE_PROFILE is %s but the gallery's templates are %s (profile %s): serving those; "
            "run `facegate gallery reencode --profile %s` to switch without re-enrolment",
            settings.profile,
            choice.version,
            choice.profile,
            settings.profile,
        )
    return choice


# --- reencode ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoFailure:
    photo_id: int
    person_id: int
    code: str  # an enrolment refusal code (no_face, multiple_faces...) or an image error's
    message: str


@dataclass
class ReencodeReport:
    profile: str
    target_version: str
    serving_version: str | None  # what the gallery served before this run
    photos: int = 0  # kept photos when the run started
    encoded: int = 0  # templates this run wrote
    failed: list[PhotoFailure] = field(default_factory=list)
    # People served before who have no template of the target version (they lose access).
    uncovered: list[queries.UncoveredPerson] = field(default_factory=list)
    templates_without_photo: int = 0  # serving templates no reencode can remake
    switched: bool = False  # this run changed the active version
    active_version: str | None = None  # after the run
    attempts: int = 0  # switch attempts (more than 1: enrolments raced the switch)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [
            f"profile {self.profile}: target template version {self.target_version}",
            f"serving before: {self.serving_version or 'unknown'}",
            f"kept photos: {self.photos}; templates encoded now: {self.encoded}; "
            f"photos the profile could not encode: {len(self.failed)}",
        ]
        out += [f"  photo {f.photo_id} (person {f.person_id}): {f.code}: {f.message}" for f in self.failed]
        if self.templates_without_photo:
            out.append(
                f"{self.templates_without_photo} serving template(s) have no kept photo (enrolled while "
                "FACEGATE_KEEP_ENROLMENT_PHOTOS was off) and are not carried over"
            )
        if self.uncovered:
            out.append(f"{len(self.uncovered)} person(s) would have no template after the switch:")
            out += [
                f"  person {p.person_id} {p.name!r}: {p.templates} template(s), {p.photos} kept photo(s)"
                for p in self.uncovered
            ]
        if self.switched:
            out.append(f"switched: the gallery now serves {self.active_version}")
        elif self.active_version == self.target_version:
            out.append(f"already serving {self.active_version}: nothing to switch")
        else:
            out.append(f"not switched; the gallery serves {self.active_version}")
        out.append(f"{self.seconds:.1f} s, {self.attempts} switch attempt(s)")
        return out


class ReencodeRefusedError(Exception):
    """The switch would leave people without a template; ``allow_missing`` overrides."""

    def __init__(self, report: ReencodeReport) -> None:
        super().__init__(
            f"{len(report.uncovered)} person(s) would lose access after switching to "
            f"{report.target_version}: they have no kept enrolment photo the profile could encode. "
            "Re-enrol them (then rerun), or rerun with --allow-missing to switch without them"
        )
        self.report = report


def _current_serving(session: Session, manifest: Manifest, settings: Settings) -> str | None:
    _, active = queries.gallery_state(session)
    if active is not None:
        return active
    try:
        return choose_serving(manifest, settings, None, queries.template_versions(session)).version
    except GalleryVersionError:
        return None  # ambiguous: every person with any template counts as served


def reencode(
    sessions: sessionmaker[Session],
    settings: Settings,
    manifest: Manifest,
    profile: str,
    *,
    allow_missing: bool = False,
    batch_size: int = DEFAULT_BATCH,
    pipeline: FacePipeline | None = None,
    progress: Callable[[str], None] | None = None,
) -> ReencodeReport:
    """Encode every kept photo with ``profile`` and switch the gallery to its templates.

    Blocking and CPU-heavy (run it from the CLI or a worker thread). Idempotent: photos that
    already have a template of the target version are not encoded again. Raises
    ReencodeRefusedError (nothing switched; templates written so far stay, unused, for a rerun)
    when people would lose access and ``allow_missing`` is false.
    """
    started = time.perf_counter()
    say = progress or log.info
    spec = profile_spec(profile)
    if pipeline is not None and pipeline.profile.name != spec.name:
        raise ValueError(f"the pipeline runs profile {pipeline.profile.name}, not {spec.name}")
    target = (
        pipeline.model_version
        if pipeline is not None
        else profile_encoding_version(manifest, spec.name, settings.flip_average_for(spec.name))
    )
    with sessions() as session:
        serving = _current_serving(session, manifest, settings)
        report = ReencodeReport(spec.name, target, serving, photos=queries.count_photos(session))
        if serving is not None and serving != target:
            report.templates_without_photo = queries.templates_without_photo(session, serving)
        # Fail fast, before loading any model, for people who have no kept photo at all.
        if serving != target:
            early = [p for p in queries.people_without_version(session, serving, target) if p.photos == 0]
            if early and not allow_missing:
                report.uncovered = early
                report.active_version = serving
                report.seconds = time.perf_counter() - started
                raise ReencodeRefusedError(report)
    say(f"reencode: {report.photos} kept photo(s) to cover with {target} (serving {serving})")
    owned = pipeline is None
    if pipeline is None:
        pipeline = FacePipeline.load(settings, profile=spec.name)
    try:
        _encode_and_switch(
            sessions, settings, pipeline, report, allow_missing=allow_missing, batch_size=batch_size, say=say
        )
    finally:
        report.seconds = time.perf_counter() - started
        if owned:
            pipeline.close()
    return report


def _encode_and_switch(
    sessions: sessionmaker[Session],
    settings: Settings,
    pipeline: FacePipeline,
    report: ReencodeReport,
    *,
    allow_missing: bool,
    batch_size: int,
    say: Callable[[str], None],
) -> None:
    """Pass 1 encodes while the service serves; pass 2 re-checks under the gallery lock and switches."""
    target, serving = report.target_version, report.serving_version
    encoder = _PhotoEncoder(sessions, settings, pipeline, report, batch_size=batch_size, say=say)
    encode, failed = encoder.encode, encoder.failed

    # Pass 1, with the service serving as usual: page through the photos that lack a template.
    after: int | None = None
    while True:
        with sessions() as session:
            page = queries.photos_without_template(session, target, after_id=after, limit=batch_size)
        if not page:
            break
        encode(page)
        after = page[-1]

    # Pass 2: the switch, under the gallery lock; photos enrolled meanwhile are encoded first.
    for attempt in range(1, SWITCH_ATTEMPTS + 1):
        report.attempts = attempt
        with sessions() as session:
            _, active = queries.lock_gallery(session)
            missing = [p for p in queries.photos_without_template(session, target) if p not in failed]
            if missing:
                session.rollback()  # release the lock while encoding
                say(f"reencode: {len(missing)} photo(s) enrolled meanwhile; encoding them, then retrying")
                encode(missing)
                continue
            before = active if active is not None else serving
            report.uncovered = (
                queries.people_without_version(session, before, target) if before != target else []
            )
            report.failed = sorted(failed.values(), key=lambda f: f.photo_id)
            if report.uncovered and not allow_missing:
                session.rollback()
                report.active_version = before
                raise ReencodeRefusedError(report)
            if active == target:
                report.active_version = active
                break
            queries.set_active_version(session, target)
            session.commit()
            report.switched = True
            report.active_version = target
            say(f"reencode: switched the gallery from {before} to {target}")
            break
    else:
        raise RuntimeError(
            f"new enrolments kept arriving during {SWITCH_ATTEMPTS} switch attempts; rerun the reencode"
        )


class _PhotoEncoder:
    """Encodes kept photos in batches; each batch's templates are stored in one short transaction."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        pipeline: FacePipeline,
        report: ReencodeReport,
        *,
        batch_size: int,
        say: Callable[[str], None],
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.pipeline = pipeline
        self.report = report
        self.batch_size = batch_size
        self.say = say
        self.failed: dict[int, PhotoFailure] = {}

    def encode(self, photo_ids: list[int]) -> None:
        for start in range(0, len(photo_ids), self.batch_size):
            t0 = time.perf_counter()
            with self.sessions() as session:
                photos = queries.load_photos(session, photo_ids[start : start + self.batch_size])
            made = [t for t in map(self._template, photos) if t is not None]
            with self.sessions() as session:
                stored = queries.add_photo_templates(session, self.report.target_version, made)
                session.commit()
            self.report.encoded += len(stored)
            rate = len(photos) / max(time.perf_counter() - t0, 1e-9)
            self.say(
                f"reencode: {self.report.encoded}/{self.report.photos} photo(s) encoded, "
                f"{len(self.failed)} failed ({rate:.1f} photos/s)"
            )

    def _template(self, photo: queries.KeptPhoto) -> queries.PhotoTemplate | None:
        try:
            candidate = analyse_photo(self.pipeline, photo.image, self.settings, reencoding=True)
        except (EnrolmentRefusedError, ImageError) as exc:
            self.failed[photo.id] = PhotoFailure(photo.id, photo.person_id, exc.code, exc.message)
            return None
        return queries.PhotoTemplate(
            photo.id, candidate.face.embedding, candidate.quality.as_dict(), candidate.thumbnail
        )
