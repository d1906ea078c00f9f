"""Keeps a replica's FAISS index in step with SQL (the source of truth).

At start-up the index is rebuilt from a consistent snapshot. Afterwards every replica polls the
gallery version (bumped in the same transaction as every template change) and applies only the
change-log difference; its own writes are applied at once as well, and applying them again from
the log is harmless (add is an upsert, removing an absent id is a no-op).
"""

from __future__ import annotations

import asyncio
import logging
import threading

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session, sessionmaker

from app.gallery.index import FaceIndex
from app.store import queries

log = logging.getLogger(__name__)


class GallerySync:
    def __init__(self, sessions: sessionmaker[Session], index: FaceIndex, model_version: str) -> None:
        self.sessions = sessions
        self.index = index
        self.model_version = model_version
        self.version = -1
        self._lock = threading.Lock()

    def load(self) -> None:
        """Rebuild the whole index from SQL."""
        versions: list[int] = []

        def read() -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
            # Called by the index once its journal runs, so writes made meanwhile are not lost.
            version, arrays = queries.gallery_snapshot(session, self.model_version, self.index.dim)
            versions.append(version)
            return arrays.ids, arrays.person_ids, arrays.vectors

        with self._lock, self.sessions() as session:
            self.index.rebuild_from(read)
            self.version = versions[-1]
            version = self.version
        log.info(
            "gallery loaded from SQL",
            extra={
                "templates": len(self.index),
                "people": self.index.people_count,
                "gallery_version": version,
            },
        )

    def catch_up(self) -> bool:
        """Apply changes made since the last sync (by any replica); True when something changed."""
        with self._lock, self.sessions() as session:
            current = queries.gallery_version(session)
            if current == self.version:
                return False
            delta = queries.gallery_changes_since(session, self.version, self.model_version, self.index.dim)
            if delta is None:  # the database went back in time (restored): start over
                log.warning("gallery version moved backwards; rebuilding the index from SQL")
                snapshot_version, arrays = queries.gallery_snapshot(
                    session, self.model_version, self.index.dim
                )
                self.index.rebuild(arrays.ids, arrays.person_ids, arrays.vectors)
                self.version = snapshot_version
                return True
            if len(delta.removed_ids):
                self.index.remove(delta.removed_ids)
            if len(delta.added.ids):
                self.index.add(delta.added.ids, delta.added.person_ids, delta.added.vectors)
            self.version = delta.version
            return True

    def added_locally(self, template_id: int, person_id: int, vector: NDArray[np.float32]) -> None:
        self.index.add(
            np.array([template_id], dtype=np.int64), np.array([person_id], dtype=np.int64), vector[None, :]
        )

    def removed_locally(self, template_ids: list[int]) -> None:
        self.index.remove(np.array(template_ids, dtype=np.int64))

    async def run_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await asyncio.to_thread(self.catch_up)
            except Exception:  # a database hiccup must not kill the feed; next poll retries
                log.exception("gallery sync failed; retrying in %.1f s", interval_s)
