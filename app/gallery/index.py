"""The 1:K face index: FAISS over enrolled templates, derived from SQL.

SQL is the source of truth; a :class:`FaceIndex` is rebuilt from it at start-up and updated on
enrol and delete. It knows nothing of SQL, HTTP or images: it takes arrays of template ids
(SQL primary keys), person ids and 128-d float32 encodings, and answers "which enrolled people
are nearest to this face, and how far (Euclidean L2)".

Index kinds
    ``flat`` (``IndexFlatL2``, exact) while the gallery holds at most ``exact_max`` live
    templates, ``hnsw`` (``IndexHNSWFlat``, approximate) above it. Both sit inside an
    ``IndexIDMap2`` whose ids are the template primary keys. The switch happens on its own: a
    :meth:`FaceIndex.rebuild` picks the kind by size; an :meth:`FaceIndex.add` that crosses
    ``exact_max`` stays exact at once (the row goes into the flat index) and a rebuild into HNSW
    follows in the background. Going back to flat needs the live count to fall to
    ``0.9 * exact_max``, so a gallery hovering at the threshold does not flap between kinds.

Tuning (``scripts/bench_gallery.py``, 1M dlib-like templates, 2 cores, one query at a time)
    M=32, efConstruction=80, efSearch=128: recall@1 99.4% vs exact, p99 1.0 ms, ~810 MiB,
    build ~400 s. Flat: p99 3.3 ms at 100k, 5.3 ms at 200k, 53 ms at 1M.

Deletes under HNSW
    FAISS's HNSW cannot remove vectors, and rebuilding a 1M-template graph takes minutes, so a
    delete there marks the row dead (a tombstone). Searches pass a bitmap of live rows to FAISS
    (``IDSelectorBitmap``), so dead rows are never returned, nor do they push live ones out of
    the top k; the graph still routes through them, which is fine while they are few. When dead
    rows exceed ``compact_dead_fraction`` of all rows, the index is compacted: rebuilt without
    them. A flat index removes rows for real at once (``remove_ids``).

Rebuilds never stop searches
    :meth:`rebuild` and compaction build the new FAISS index outside the lock while searches keep
    using the old one; adds and removes made meanwhile are applied to the old index (visible at
    once) and recorded in a journal that is replayed onto the new index before it is swapped in.
    Replay is idempotent (add = upsert, removing an absent id is a no-op), so a change that the
    caller's SQL snapshot already held is harmless. Peak memory during a rebuild is about twice
    the index.

Threads
    A readers/writer lock: searches run concurrently (FAISS releases the GIL), adds and removes
    take it exclusively for the few milliseconds they need. Searches run FAISS with
    ``search_threads`` OpenMP threads (default 1): one door query is a tiny job, and on a small,
    busy machine OpenMP's fan-out and barriers cost far more than they save (measured on 2 cores:
    flat 100k, 1.7 ms with 1 thread vs 24 ms with 2 when the other core is busy). The setting is
    per calling thread in OpenMP, so it does not leak into builds, which use ``build_threads``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import faiss
import numpy as np
from numpy.typing import NDArray

from app.gallery.matching import PersonHit
from app.gallery.metric import Metric, check_metric, from_squared_l2

log = logging.getLogger(__name__)

IndexKind = Literal["flat", "hnsw"]

# Going back from HNSW to flat only below this fraction of exact_max (hysteresis).
_SWITCH_BACK_FRACTION = 0.9
# First search asks for this many templates per wanted person (several templates per person are
# usual); the search widens by _WIDEN when they all belong to fewer people.
_TEMPLATES_PER_PERSON_GUESS = 8
_MIN_K = 16
# Adds of at least this many rows use build_threads (see _write).
_BULK_ADD_ROWS = 1000
_WIDEN = 4
_MAX_K = 4096  # a person with thousands of near-identical templates would be a data error
# libstdc++ unordered_map<int64, int64> node (malloc'd 24 B -> 32 B) plus its bucket pointer:
# IndexIDMap2's reverse map, which FAISS does not let us measure.
_REV_MAP_BYTES_PER_ENTRY = 40

_S = TypeVar("_S", bound=np.generic)


class _RWLock:
    """Many readers or one writer. Writers win ties, so searches cannot starve an enrolment.

    Not reentrant: a thread must not take it again while holding it.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class _Column(Generic[_S]):
    """A numpy array that grows by doubling, so one enrolment does not copy a 1M-row array."""

    def __init__(self, values: NDArray[_S]) -> None:
        self._buf: NDArray[_S] = np.array(values, copy=True)
        self._n = len(values)

    @property
    def values(self) -> NDArray[_S]:
        return self._buf[: self._n]

    @property
    def nbytes(self) -> int:
        return int(self._buf.nbytes)

    def extend(self, more: NDArray[_S]) -> None:
        need = self._n + len(more)
        if need > len(self._buf):
            grown = np.empty(max(need, 2 * len(self._buf), 16), dtype=self._buf.dtype)
            grown[: self._n] = self.values
            self._buf = grown
        self._buf[self._n : need] = more
        self._n = need

    def keep(self, mask: NDArray[np.bool_]) -> None:
        self._buf = self.values[mask].copy()
        self._n = len(self._buf)


@dataclass(eq=False)
class _Store:
    """One built FAISS index and, per row (FAISS's internal position), its template and person."""

    kind: IndexKind
    index: Any  # faiss.IndexIDMap2 over `inner`; ids = template primary keys
    inner: Any  # faiss.IndexFlatL2 | faiss.IndexHNSWFlat, searched directly to get row positions
    template_ids: _Column[np.int64]
    person_ids: _Column[np.int64]
    alive: _Column[np.bool_]  # False = tombstone (HNSW only; flat rows are removed for real)
    dead: int = 0
    # Live-row bitmap handed to FAISS; kept here because the selector points into its memory.
    bitmap: NDArray[np.uint8] | None = None
    selector: Any = None
    people: int | None = field(default=None)  # cached distinct live people

    @property
    def rows(self) -> int:
        return int(self.inner.ntotal)

    @property
    def live(self) -> int:
        return self.rows - self.dead

    def live_rows_of(self, mask: NDArray[np.bool_]) -> NDArray[np.intp]:
        return np.flatnonzero(mask & self.alive.values)

    def refresh_selector(self) -> None:
        if self.dead == 0:
            self.bitmap, self.selector = None, None
            return
        self.bitmap = np.packbits(self.alive.values, bitorder="little")
        self.selector = faiss.IDSelectorBitmap(self.rows, faiss.swig_ptr(self.bitmap))


_Op = Callable[[_Store], int]


def _as_ids(values: NDArray[Any] | list[int], name: str) -> NDArray[np.int64]:
    arr = np.asarray(values)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be a 1-d integer array, got dtype {arr.dtype} shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.int64)


class FaceIndex:
    """Thread-safe nearest-person search over enrolled face templates (see the module doc)."""

    def __init__(
        self,
        dim: int = 128,
        *,
        exact_max: int = 200_000,
        hnsw_m: int = 32,
        hnsw_ef_search: int = 128,
        hnsw_ef_construction: int = 80,
        compact_dead_fraction: float = 0.1,
        background_maintenance: bool = True,
        search_threads: int = 1,
        build_threads: int | None = None,
        metric: Metric = "l2",
    ) -> None:
        """
        Args:
            dim: encoding size.
            metric: the distance hits report (``cosine`` expects unit vectors; see
                :mod:`app.gallery.metric`); FAISS itself always searches by L2.
            exact_max: most live templates searched exactly (flat); 0 = always HNSW.
            hnsw_m, hnsw_ef_search, hnsw_ef_construction: HNSW graph degree, search breadth
                (raised to k when a search needs more neighbours) and build breadth.
            compact_dead_fraction: HNSW compaction starts when tombstones exceed this share of rows.
            background_maintenance: run kind switches and compactions on a daemon thread (the
                service); False runs them in the calling thread before add/remove returns (tests).
            search_threads, build_threads: OpenMP threads for searches and for builds (default:
                all cores).
        """
        if dim < 1 or exact_max < 0 or hnsw_m < 2 or hnsw_ef_search < 1 or hnsw_ef_construction < 1:
            raise ValueError("dim, hnsw_m, hnsw_ef_search, hnsw_ef_construction must be positive")
        if not 0.0 < compact_dead_fraction < 1.0:
            raise ValueError("compact_dead_fraction must be in (0, 1)")
        self.dim = dim
        self.metric = check_metric(metric)
        self.exact_max = exact_max
        self.hnsw_m = hnsw_m
        self.hnsw_ef_search = hnsw_ef_search
        self.hnsw_ef_construction = hnsw_ef_construction
        self.compact_dead_fraction = compact_dead_fraction
        self._background = background_maintenance
        self._search_threads = max(1, search_threads)
        self._build_threads = max(1, build_threads or os.cpu_count() or 1)

        self._rw = _RWLock()
        self._build_lock = threading.Lock()  # one rebuild/compaction at a time
        self._journal: list[_Op] | None = None  # changes made while a rebuild is under way
        empty = np.empty(0, dtype=np.int64)
        self._store = self._build(empty, empty, np.empty((0, dim), dtype=np.float32), "flat")

        self._maint_cv = threading.Condition()
        self._maint_requested = False
        self._maint_busy = False
        self._maint_thread: threading.Thread | None = None
        self._closed = False

    # ----------------------------------------------------------------------------- queries

    def __len__(self) -> int:
        """Live templates."""
        with self._rw.read():
            return self._store.live

    @property
    def kind(self) -> IndexKind:
        with self._rw.read():
            return self._store.kind

    @property
    def dead_count(self) -> int:
        """Tombstoned HNSW rows not yet compacted away."""
        with self._rw.read():
            return self._store.dead

    @property
    def people_count(self) -> int:
        """Distinct people with at least one live template."""
        with self._rw.read():
            store = self._store
            if store.people is None:
                store.people = int(np.unique(store.person_ids.values[store.alive.values]).size)
            return store.people

    @property
    def memory_bytes(self) -> int:
        """Estimate of the index's memory: vectors, graph links, id maps, our per-row arrays."""
        with self._rw.read():
            s = self._store
            total = s.rows * self.dim * 4 + s.rows * 8 + s.rows * _REV_MAP_BYTES_PER_ENTRY
            total += s.template_ids.nbytes + s.person_ids.nbytes + s.alive.nbytes
            if s.bitmap is not None:
                total += int(s.bitmap.nbytes)
            if s.kind == "hnsw":
                hnsw = s.inner.hnsw
                total += hnsw.neighbors.size() * 4 + hnsw.offsets.size() * 8 + hnsw.levels.size() * 4
            return int(total)

    def search_people(self, query: NDArray[np.float32], k_people: int = 2) -> list[list[PersonHit]]:
        """For each query row, the nearest ``k_people`` distinct people, nearest first.

        Each :class:`PersonHit` is that person's closest template and its distance in the
        index's metric.
        Fewer than ``k_people`` only when the gallery holds fewer people; ``[]`` when it is
        empty. Exact in flat mode; in HNSW mode as good as the graph search.
        """
        if k_people < 1:
            raise ValueError("k_people must be >= 1")
        q = np.asarray(query, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"query must be [m, {self.dim}], got {q.shape}")
        q = np.ascontiguousarray(q)
        faiss.omp_set_num_threads(self._search_threads)  # per calling thread (see module doc)
        results: list[list[PersonHit]] = [[] for _ in range(len(q))]
        with self._rw.read():
            store = self._store
            live = store.live
            if live == 0 or len(q) == 0:
                return results
            k = min(live, max(_MIN_K, _TEMPLATES_PER_PERSON_GUESS * k_people))
            pending = np.arange(len(q))
            while len(pending):
                dist2, rows = self._knn(store, q[pending], k)
                short = []
                for i, qi in enumerate(pending):
                    results[qi] = self._collapse(store, dist2[i], rows[i], k_people, self.metric)
                    # All k neighbours belonged to fewer than k_people people: look further,
                    # unless FAISS already ran out of rows (flat: none left; HNSW: none reachable).
                    if len(results[qi]) < k_people and rows[i, -1] >= 0 and k < min(live, _MAX_K):
                        short.append(qi)
                pending = np.asarray(short, dtype=np.intp)
                k = min(live, _MAX_K, k * _WIDEN)
        return results

    def _knn(
        self, store: _Store, q: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        if store.kind == "hnsw":
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing from faiss's .pyi
            params.efSearch = max(self.hnsw_ef_search, k)
            if store.selector is not None:
                params.sel = store.selector
            dist2, rows = store.inner.search(q, k, params=params)
        else:
            dist2, rows = store.inner.search(q, k)
        return dist2, rows

    @staticmethod
    def _collapse(
        store: _Store, dist2: NDArray[np.float32], rows: NDArray[np.int64], k_people: int, metric: Metric
    ) -> list[PersonHit]:
        valid = rows >= 0  # FAISS pads with -1 when it finds fewer than k
        rows = rows[valid]
        # FAISS gives squared L2 (the BLAS path can dip just below 0 for identical vectors).
        dist = from_squared_l2(dist2[valid], metric)
        pids = store.person_ids.values[rows]
        tids = store.template_ids.values[rows]
        hits: list[PersonHit] = []
        seen: set[int] = set()
        # Rows come nearest first, so a person's first row is its best template.
        for pid, tid, d in zip(pids.tolist(), tids.tolist(), dist.tolist(), strict=True):
            if pid not in seen:
                seen.add(pid)
                hits.append(PersonHit(person_id=pid, template_id=tid, distance=d))
                if len(hits) == k_people:
                    break
        return hits

    # ----------------------------------------------------------------------------- changes

    def rebuild(
        self,
        template_ids: NDArray[np.int64],
        person_ids: NDArray[np.int64],
        vectors: NDArray[np.float32],
    ) -> None:
        """Replace the whole content (e.g. from SQL at start-up); searches continue meanwhile.

        Changes made through :meth:`add`/:meth:`remove` while it runs are replayed on top. To
        also cover changes made between the caller's SQL read and this call, use
        :meth:`rebuild_from`, which starts that journal before reading.
        """
        self.rebuild_from(lambda: (template_ids, person_ids, vectors))

    def rebuild_from(
        self,
        load: Callable[[], tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]],
    ) -> None:
        """Like :meth:`rebuild`, calling ``load()`` for the arrays once the journal is running."""
        with self._build_lock:
            with self._rw.write():
                self._journal = []
            try:
                tids, pids, vecs = self._validate(*load())
                if np.unique(tids).size != tids.size:
                    raise ValueError("duplicate template ids")
                new = self._build(tids, pids, vecs, self._target_kind(len(tids), None))
            except BaseException:
                with self._rw.write():
                    self._journal = None
                raise
            self._swap(new)
        self._maybe_maintain()

    def add(
        self,
        template_ids: NDArray[np.int64],
        person_ids: NDArray[np.int64],
        vectors: NDArray[np.float32],
    ) -> None:
        """Add templates, searchable as soon as this returns. An existing template id is replaced."""
        tids, pids, vecs = self._validate(template_ids, person_ids, vectors)
        if np.unique(tids).size != tids.size:
            raise ValueError("duplicate template ids")
        if len(tids):
            self._write(lambda s: self._apply_add(s, tids, pids, vecs), rows=len(tids))

    def remove(self, template_ids: NDArray[np.int64] | list[int]) -> int:
        """Remove templates by id (unknown ids are ignored); returns how many were live."""
        tids = _as_ids(template_ids, "template_ids")
        if not len(tids):
            return 0
        return self._write(lambda s: self._apply_remove(s, np.isin(s.template_ids.values, tids)))

    def remove_person(self, person_id: int) -> int:
        """Remove all of a person's templates; returns how many were live."""
        pid = int(person_id)
        return self._write(lambda s: self._apply_remove(s, s.person_ids.values == pid))

    def compact(self) -> bool:
        """Rebuild now if the index needs it (tombstones, or the wrong kind for its size).

        Normally called for you (see ``background_maintenance``). Returns whether it rebuilt.
        """
        with self._build_lock:
            return self._compact_locked()

    def wait_for_maintenance(self, timeout: float | None = None) -> bool:
        """Block until no background rebuild is pending or running; False on timeout."""
        with self._maint_cv:
            return self._maint_cv.wait_for(
                lambda: not (self._maint_requested or self._maint_busy) or self._closed, timeout
            )

    def close(self) -> None:
        """Stop the background maintenance thread (a running build finishes first)."""
        with self._maint_cv:
            self._closed = True
            self._maint_cv.notify_all()
        thread = self._maint_thread
        if thread is not None:
            thread.join()

    # ----------------------------------------------------------------------------- internals

    def _validate(
        self, template_ids: Any, person_ids: Any, vectors: Any
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
        tids = _as_ids(template_ids, "template_ids")
        pids = _as_ids(person_ids, "person_ids")
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[1] != self.dim:
            if not (vecs.size == 0 and len(tids) == 0):
                raise ValueError(f"vectors must be [n, {self.dim}], got {vecs.shape}")
            vecs = vecs.reshape(0, self.dim)
        if not (len(tids) == len(pids) == len(vecs)):
            raise ValueError(f"lengths differ: {len(tids)} ids, {len(pids)} people, {len(vecs)} vectors")
        if not np.isfinite(vecs).all():
            raise ValueError("vectors contain NaN or infinity")
        return tids, pids, vecs

    def _target_kind(self, live: int, current: IndexKind | None) -> IndexKind:
        if live > self.exact_max:
            return "hnsw"
        if current == "hnsw" and live > self.exact_max * _SWITCH_BACK_FRACTION:
            return "hnsw"
        return "flat"

    def _build(
        self, tids: NDArray[np.int64], pids: NDArray[np.int64], vecs: NDArray[np.float32], kind: IndexKind
    ) -> _Store:
        """Make a new store; touches no shared state, so it runs outside the lock."""
        faiss.omp_set_num_threads(self._build_threads)
        inner: Any
        if kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, self.hnsw_m)
            inner.hnsw.efConstruction = self.hnsw_ef_construction
            inner.hnsw.efSearch = self.hnsw_ef_search
        else:
            inner = faiss.IndexFlatL2(self.dim)
        index = faiss.IndexIDMap2(inner)
        if len(tids):
            index.add_with_ids(vecs, tids)
        return _Store(
            kind=kind,
            index=index,
            inner=inner,
            template_ids=_Column(tids),
            person_ids=_Column(pids),
            alive=_Column(np.ones(len(tids), dtype=np.bool_)),
        )

    def _write(self, op: _Op, rows: int = 0) -> int:
        with self._rw.write():
            # An enrolment is latency-bound like a search: don't fan it out (module doc); a bulk
            # add holds the lock against searches, so it gets every core.
            bulk = rows >= _BULK_ADD_ROWS
            faiss.omp_set_num_threads(self._build_threads if bulk else self._search_threads)
            changed = op(self._store)
            if self._journal is not None:
                self._journal.append(op)
        self._maybe_maintain()
        return changed

    def _apply_add(
        self, s: _Store, tids: NDArray[np.int64], pids: NDArray[np.int64], vecs: NDArray[np.float32]
    ) -> int:
        self._apply_remove(s, np.isin(s.template_ids.values, tids))  # upsert
        s.index.add_with_ids(vecs, tids)
        s.template_ids.extend(tids)
        s.person_ids.extend(pids)
        s.alive.extend(np.ones(len(tids), dtype=np.bool_))
        s.people = None
        if s.dead:
            s.refresh_selector()  # the bitmap must cover the new rows
        return len(tids)

    @staticmethod
    def _apply_remove(s: _Store, mask: NDArray[np.bool_]) -> int:
        rows = s.live_rows_of(mask)
        if not len(rows):
            return 0
        if s.kind == "flat":
            # IndexIDMap2.remove_ids compacts the flat codes and its id map stably, so our
            # per-row columns stay aligned by dropping the same rows.
            keep = np.ones(s.rows, dtype=np.bool_)
            keep[rows] = False
            s.index.remove_ids(np.ascontiguousarray(s.template_ids.values[rows]))
            s.template_ids.keep(keep)
            s.person_ids.keep(keep)
            s.alive.keep(keep)
        else:
            s.alive.values[rows] = False
            s.dead += len(rows)
            s.refresh_selector()
        s.people = None
        return len(rows)

    def _swap(self, new: _Store) -> None:
        with self._rw.write():
            faiss.omp_set_num_threads(self._search_threads)
            journal, self._journal = self._journal or [], None
            for op in journal:
                op(new)
            self._store = new

    def _needs_maintenance(self) -> bool:
        with self._rw.read():
            s = self._store
            if self._target_kind(s.live, s.kind) != s.kind:
                return True
            return s.dead > self.compact_dead_fraction * s.rows

    def _compact_locked(self) -> bool:
        """Rebuild the current content without tombstones, into the kind its size calls for."""
        with self._rw.read():
            s = self._store
            if self._target_kind(s.live, s.kind) == s.kind and not (
                s.dead > self.compact_dead_fraction * s.rows
            ):
                return False
            keep = s.alive.values.copy()
            tids = s.template_ids.values[keep]
            pids = s.person_ids.values[keep]
            vecs = s.inner.reconstruct_n(0, s.rows)[keep]
            kind = self._target_kind(s.live, s.kind)
            # Readers exclude writers, so no change can slip between this snapshot and the journal.
            self._journal = []
        try:
            new = self._build(tids, pids, vecs, kind)
        except BaseException:
            with self._rw.write():
                self._journal = None
            raise
        self._swap(new)
        log.info("gallery index rebuilt as %s: %d templates", kind, len(tids))
        return True

    def _run_maintenance(self) -> None:
        # Re-check after releasing the build lock: a write that found it busy relies on us.
        while self._needs_maintenance():
            if not self._build_lock.acquire(blocking=False):
                return  # the holder re-checks when it finishes
            try:
                self._compact_locked()
            finally:
                self._build_lock.release()

    def _maybe_maintain(self) -> None:
        if not self._needs_maintenance():
            return
        if not self._background:
            self._run_maintenance()
            return
        with self._maint_cv:
            if self._closed:
                return
            self._maint_requested = True
            if self._maint_thread is None:
                self._maint_thread = threading.Thread(
                    target=self._maintenance_worker, name="gallery-maintenance", daemon=True
                )
                self._maint_thread.start()
            self._maint_cv.notify_all()

    def _maintenance_worker(self) -> None:
        while True:
            with self._maint_cv:
                self._maint_cv.wait_for(lambda: self._maint_requested or self._closed)
                if self._closed:
                    return
                self._maint_requested = False
                self._maint_busy = True
            try:
                self._run_maintenance()
            except Exception:
                log.exception("gallery index maintenance failed; the current index stays in use")
            finally:
                with self._maint_cv:
                    self._maint_busy = False
                    self._maint_cv.notify_all()

    def _check_consistency(self) -> None:
        """Assert that our per-row arrays match FAISS's (tests)."""
        with self._rw.read():
            s = self._store
            ids = faiss.vector_to_array(s.index.id_map)
            assert np.array_equal(ids, s.template_ids.values), "template ids out of step with FAISS"
            assert len(s.person_ids.values) == len(s.alive.values) == s.rows == s.index.ntotal
            assert s.dead == int((~s.alive.values).sum())
            live_ids = s.template_ids.values[s.alive.values]
            assert np.unique(live_ids).size == live_ids.size, "a template is live twice"
