"""Keeps a replica's FAISS index in step with SQL (the source of truth).

At start-up the index is rebuilt from a consistent snapshot. Afterwards every replica polls the
gallery version (bumped in the same transaction as every template change) and applies only the
change-log difference; its own writes are applied at once as well, and applying them again from
the log is harmless (add is an upsert, removing an absent id is a no-op).

The index holds templates of one model version only: the gallery's active version. When a
reencode switches it, the poll sees the new active version and hands over to ``on_switch``
(``Services.follow_active_version``), which builds the new profile's pipeline and index off the
request path and then installs them here together.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.gallery.index import FaceIndex
from app.services.reencode import GalleryVersionError
from app.store import queries

log = logging.getLogger(__name__)

# After a failed switch (models or SQL unavailable), the old version keeps serving and the switch
# is retried this much later, not on every poll: each try loads a whole profile.
SWITCH_RETRY_S = 30.0


class GallerySync:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        index: FaceIndex,
        model_version: str,
        *,
        on_switch: Callable[[str], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.index = index
        self.model_version = model_version
        self.version = -1
        # Called (outside the lock) with the new active version when a reencode switched it.
        self.on_switch = on_switch
        self._unservable: str | None = None  # an active version this build cannot make
        self._retry_switch_at = 0.0  # time.monotonic() before which no switch is tried again
        self._lock = threading.Lock()
        self._failing_since: float | None = None
        self._last_synced: float | None = None

    def load(self) -> None:
        """Rebuild the whole index from SQL."""
        version = self.build(self.index, self.model_version)
        with self._lock:
            self.version = version
        log.info(
            "gallery loaded from SQL",
            extra={
                "templates": len(self.index),
                "people": self.index.people_count,
                "gallery_version": version,
                "model_version": self.model_version,
            },
        )

    def build(self, index: FaceIndex, model_version: str) -> int:
        """Fill ``index`` with every template of ``model_version``; the snapshot's gallery version."""
        versions: list[int] = []

        def read() -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
            # Called by the index once its journal runs, so writes made meanwhile are not lost.
            version, arrays = queries.gallery_snapshot(session, model_version, index.dim)
            versions.append(version)
            return arrays.ids, arrays.person_ids, arrays.vectors

        with self.sessions() as session:
            index.rebuild_from(read)
        return versions[-1]

    def install(self, index: FaceIndex, model_version: str, version: int) -> FaceIndex:
        """Serve ``index`` (templates of ``model_version`` as of gallery ``version``) from now on;
        changes after ``version`` arrive through the feed. Returns the index it replaces."""
        with self._lock:
            old = self.index
            self.index, self.model_version, self.version = index, model_version, version
            self._unservable = None
            self._retry_switch_at = 0.0
        return old

    def catch_up(self) -> bool:
        """Apply changes made since the last sync (by any replica); True when something changed.

        A new active version (a reencode's switch) is handed to ``on_switch``; until that returns,
        this index keeps serving the old version, whose templates stay in SQL.
        """
        with self._lock, self.sessions() as session:
            current, active = queries.gallery_state(session)
            pending = active not in {None, self.model_version, self._unservable}
            if (
                active is None
                or not pending
                or self.on_switch is None
                or time.monotonic() < self._retry_switch_at
            ):
                if current == self.version:
                    return False
                self._apply_changes(session, current)
                return True
            switch_to = active
            self._retry_switch_at = time.monotonic() + SWITCH_RETRY_S  # reset by install()
        try:
            self.on_switch(switch_to)
        except GalleryVersionError as exc:
            # Another build switched the gallery to a version this one cannot make: keep serving
            # the old version (its templates are kept, deletions still arrive) and say so once.
            log.error("cannot follow the gallery's switch: %s", exc)
            with self._lock, self.sessions() as session:
                self._unservable = switch_to
                self._apply_changes(session, queries.gallery_version(session))
        return True

    def _apply_changes(self, session: Session, current: int) -> None:
        delta = queries.gallery_changes_since(session, self.version, self.model_version, self.index.dim)
        if delta is None:  # the database went back in time (restored): start over
            log.warning("gallery version moved backwards; rebuilding the index from SQL")
            snapshot_version, arrays = queries.gallery_snapshot(session, self.model_version, self.index.dim)
            self.index.rebuild(arrays.ids, arrays.person_ids, arrays.vectors)
            self.version = snapshot_version
            return
        if len(delta.removed_ids):
            self.index.remove(delta.removed_ids)
        if len(delta.added.ids):
            self.index.add(delta.added.ids, delta.added.person_ids, delta.added.vectors)
        self.version = delta.version

    def added_locally(
        self, template_id: int, person_id: int, vector: NDArray[np.float32], model_version: str
    ) -> None:
        """This replica's own enrolment, committed as ``model_version``: added unless the index
        has switched to another version since (then the template is not served here)."""
        with self._lock:
            if model_version != self.model_version:
                return
            self.index.add(
                np.array([template_id], dtype=np.int64),
                np.array([person_id], dtype=np.int64),
                vector[None, :],
            )

    def removed_locally(self, template_ids: list[int]) -> None:
        with self._lock:
            self.index.remove(np.array(template_ids, dtype=np.int64))

    @property
    def failing_since(self) -> float | None:
        """time.monotonic() of the first failed poll of the current outage; None while polls work."""
        return self._failing_since

    @property
    def last_synced(self) -> float | None:
        """time.monotonic() of the last poll that read SQL; None before the first."""
        return self._last_synced

    def poll(self) -> None:
        """One catch-up that survives the database being away: the index keeps serving what it
        holds and the next poll applies everything missed (the change log is in SQL).

        A database outage is logged once when it starts and once when it ends, not per poll.
        """
        try:
            self.catch_up()
        except SQLAlchemyError as exc:
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                log.warning(
                    "gallery sync cannot read the database (%s); the index keeps serving and the "
                    "feed resumes when it returns",
                    exc.__class__.__name__,
                )
            return
        except (RuntimeError, OSError, ValueError, MemoryError):
            # A failed switch to a new profile (models, files); the old version keeps serving.
            log.exception("gallery sync failed; retrying at the next poll")
            return
        if self._failing_since is not None:
            log.warning(
                "gallery sync reads the database again after %.1f s",
                time.monotonic() - self._failing_since,
            )
            self._failing_since = None
        self._last_synced = time.monotonic()

    async def run_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await asyncio.to_thread(self.poll)
