"""Everything a running service holds: settings, SQL, models, index, inference pool, metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.gallery.index import FaceIndex
from app.metrics import Metrics
from app.services.calibration import CalibrationService
from app.services.gallery_sync import GallerySync
from app.settings import Settings
from app.store.db import check_schema, make_engine, make_session_factory
from app.vision.pipeline import FacePipeline

log = logging.getLogger(__name__)
T = TypeVar("T")


class BusyError(Exception):
    """More inference requests are waiting than the configured queue allows."""


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

    @classmethod
    def start(cls, settings: Settings) -> Services:
        """Blocking start-up: schema check, models (verified + warmed up), index from SQL."""
        engine = make_engine(settings.db_url)
        check_schema(engine)  # refuse to run on a schema that is behind
        sessions = make_session_factory(engine)
        pipeline = FacePipeline.load(settings)
        index = FaceIndex(
            pipeline.encoder.dim,
            exact_max=settings.gallery_exact_max,
            hnsw_m=settings.gallery_hnsw_m,
            hnsw_ef_search=settings.gallery_hnsw_ef_search,
            hnsw_ef_construction=settings.gallery_hnsw_ef_construction,
        )
        gallery = GallerySync(sessions, index, pipeline.model_version)
        gallery.load()
        metrics = Metrics()
        executor = ThreadPoolExecutor(max_workers=settings.inference_workers, thread_name_prefix="inference")
        # Read from the index at scrape time: it also changes through the change feed.
        metrics.gallery_templates.set_function(lambda: len(index))
        metrics.gallery_people.set_function(lambda: index.people_count)
        calibration = CalibrationService(
            sessions,
            pipeline.model_version,
            pipeline.encoder.dim,
            tau=settings.tau,
            target_far=settings.target_stranger_far,
        )
        return cls(settings, engine, sessions, pipeline, index, gallery, metrics, executor, calibration)

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
        self.index.close()
        self.pipeline.close()
        self.engine.dispose()
