"""Everything a running service holds: settings, SQL, models, index, inference pool, metrics."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.gallery.calibration import prior_model
from app.gallery.index import FaceIndex
from app.metrics import Metrics
from app.services.calibration import CalibrationService
from app.services.gallery_sync import GallerySync
from app.services.reencode import GalleryVersionError, choose_serving, pin_serving_version
from app.settings import Settings
from app.store.db import check_schema, make_engine, make_session_factory
from app.vision.manifest import load_manifest
from app.vision.pipeline import FacePipeline

log = logging.getLogger(__name__)
T = TypeVar("T")


def calibration_service(
    sessions: sessionmaker[Session], pipeline: FacePipeline, settings: Settings
) -> CalibrationService:
    """Calibration for the pipeline's profile: its metric, grid and the encoder's dev-data prior."""
    return CalibrationService(
        sessions,
        pipeline.model_version,
        pipeline.dim,
        tau=settings.tau,
        target_far=settings.target_stranger_far,
        metric=pipeline.profile.metric,
        prior=prior_model(pipeline.calibration_prior),
        reference_tau=pipeline.profile.reference_tau,
        grid=pipeline.profile.calibration_grid,
        target_fmr_1to1=settings.target_fmr_1to1,
    )


def serving_calibration(
    sessions: sessionmaker[Session], pipeline: FacePipeline, settings: Settings
) -> CalibrationService:
    """Calibration for the profile in service. FACEGATE_TAU is in the configured profile's metric:
    while the gallery serves another profile (after a reencode, before the setting follows), that
    profile's calibrated τ applies instead; a Euclidean τ read as a cosine one could open the door
    to strangers."""
    if settings.tau is not None and pipeline.profile.name != settings.profile:
        log.warning(
            "FACEGATE_TAU=%g is for profile %s; the gallery serves %s, so its calibrated tau applies "
            "(set FACEGATE_PROFILE=%s, and FACEGATE_TAU in its metric, to pin one)",
            settings.tau,
            settings.profile,
            pipeline.profile.name,
            pipeline.profile.name,
        )
        settings = settings.model_copy(update={"tau": None})
    return calibration_service(sessions, pipeline, settings)


class BusyError(Exception):
    """More inference requests are waiting than the configured queue allows."""


def new_index(pipeline: FacePipeline, settings: Settings) -> FaceIndex:
    """An empty index for the pipeline's encodings, reporting distances in its profile's metric."""
    return FaceIndex(
        pipeline.dim,
        metric=pipeline.profile.metric,
        exact_max=settings.gallery_exact_max,
        hnsw_m=settings.gallery_hnsw_m,
        hnsw_ef_search=settings.gallery_hnsw_ef_search,
        hnsw_ef_construction=settings.gallery_hnsw_ef_construction,
    )


@dataclass(frozen=True, slots=True)
class Serving:
    """What one request works with: one pipeline, the index of its templates, their τ."""

    pipeline: FacePipeline
    index: FaceIndex
    calibration: CalibrationService


# A switched-out pipeline and index are closed this long after the switch, once the requests
# that read them before it have finished.
RETIRE_AFTER_S = 60.0


class _Retired:
    """A switched-out pipeline and index, closed once (by its timer, or at shutdown)."""

    def __init__(self, pipeline: FacePipeline, index: FaceIndex) -> None:
        self._lock = threading.Lock()
        self._held: tuple[FacePipeline, FaceIndex] | None = (pipeline, index)
        self.timer = threading.Timer(RETIRE_AFTER_S, self.close)
        self.timer.daemon = True

    def close(self) -> None:
        with self._lock:
            held, self._held = self._held, None
        if held is not None:
            held[1].close()
            held[0].close()


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    pipeline: FacePipeline
    index: FaceIndex
    gallery: GallerySync
    metrics: Metrics
    executor: ThreadPoolExecutor
    calibration: CalibrationService
    _waiting: int = field(default=0)
    _swap_lock: threading.Lock = field(default_factory=threading.Lock)
    _retired: list[_Retired] = field(default_factory=list)

    @classmethod
    def start(cls, settings: Settings) -> Services:
        """Blocking start-up: schema check, models (verified + warmed up), index from SQL.

        Serves the gallery's active template version (pinning it on a new gallery); refuses to
        start (GalleryVersionError) when no profile of this build makes it.
        """
        engine = make_engine(settings.db_url)
        check_schema(engine)  # refuse to run on a schema that is behind
        sessions = make_session_factory(engine)
        manifest = load_manifest(settings.models_path)
        choice = pin_serving_version(sessions, manifest, settings)
        pipeline = FacePipeline.from_manifest(
            settings.models_path, manifest, settings, profile=choice.profile, flip_average=choice.flip_average
        )
        index = new_index(pipeline, settings)
        gallery = GallerySync(sessions, index, pipeline.model_version)
        gallery.load()
        metrics = Metrics()
        executor = ThreadPoolExecutor(max_workers=settings.inference_workers, thread_name_prefix="inference")
        calibration = serving_calibration(sessions, pipeline, settings)
        calibration.compute()  # the τ in force before the first request
        services = cls(settings, engine, sessions, pipeline, index, gallery, metrics, executor, calibration)
        gallery.on_switch = services.follow_active_version
        # Read from the index in service at scrape time: it also changes through the change feed.
        metrics.gallery_templates.set_function(lambda: len(services.index))
        metrics.gallery_people.set_function(lambda: services.index.people_count)
        return services

    def serving(self) -> Serving:
        """Pipeline, index and calibration of one model version: read them once per request."""
        with self._swap_lock:
            return Serving(self.pipeline, self.index, self.calibration)

    def follow_active_version(self, model_version: str) -> None:
        """Serve ``model_version`` from now on: a reencode switched the gallery to it.

        Blocking (models load, the index is built from SQL, τ is calibrated): the gallery sync
        calls it in a worker thread. Until it returns, the old version keeps serving; then the
        three are swapped together. Raises GalleryVersionError when no profile of this build
        makes that version.
        """
        started = time.perf_counter()
        choice = choose_serving(load_manifest(self.settings.models_path), self.settings, model_version, {})
        log.info("gallery switched to %s: loading profile %s", model_version, choice.profile)
        pipeline = FacePipeline.load(self.settings, profile=choice.profile, flip_average=choice.flip_average)
        try:
            if pipeline.model_version != model_version:
                raise GalleryVersionError(
                    f"profile {choice.profile} made {pipeline.model_version}, expected {model_version}"
                )
            index = new_index(pipeline, self.settings)
            version = self.gallery.build(index, model_version)
            calibration = serving_calibration(self.sessions, pipeline, self.settings)
            calibration.compute()
        except BaseException:
            pipeline.close()
            raise
        with self._swap_lock:
            old = (self.pipeline, self.index)
            self.pipeline, self.index, self.calibration = pipeline, index, calibration
            self.gallery.install(index, model_version, version)
        self._retire(*old)
        log.info(
            "now serving %s (profile %s): %d templates, %d people, tau %.4f; switched in %.1f s",
            model_version,
            choice.profile,
            len(index),
            index.people_count,
            calibration.tau,
            time.perf_counter() - started,
        )

    def _retire(self, pipeline: FacePipeline, index: FaceIndex) -> None:
        retired = _Retired(pipeline, index)
        with self._swap_lock:
            self._retired.append(retired)
        retired.timer.start()

    async def infer(self, fn: Callable[..., T], *args: object) -> T:
        """Run CPU-heavy work in the bounded inference pool; refuse when the queue is full."""
        if self._waiting >= self.settings.inference_queue_max:
            raise BusyError()
        self._waiting += 1
        self.metrics.inference_queue.set(self._waiting)
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        finally:
            self._waiting -= 1
            self.metrics.inference_queue.set(self._waiting)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        with self._swap_lock:
            retired, self._retired = self._retired, []
        for r in retired:
            r.timer.cancel()
            r.close()
        self.index.close()
        self.pipeline.close()
        self.engine.dispose()
