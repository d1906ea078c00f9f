#!/usr/bin/env python3
"""Gallery search latency, memory and HNSW recall at K enrolled templates (prints a table).

    python scripts/bench_gallery.py [--sizes 10000,100000,1000000] [--ef-search 16,32,64,128]

Synthetic encodings shaped like dlib's (see the constants below): person centroids ~0.82 apart,
1-5 templates per person (about K/3 people) at centroid + a photo's noise (same-person pairs
~0.43 apart), Gaussian with a decaying spectrum like real encodings. Queries are an enrolled
template + fresh noise of the same size: a new photo of someone enrolled.

Per size: an exact (flat) index and an HNSW one, both through ``FaceIndex`` as the service uses
it. Latency is ``search_people`` on one query at a time (as a door sends them), 1 search thread,
after a warm-up; recall compares HNSW's nearest person/template with the exact index's.
Memory is ``FaceIndex.memory_bytes`` and the process's RSS growth while building.
The whole default run takes ~8 minutes on 2 cores, most of it building the 1M-template graph.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.gallery import FaceIndex, PersonHit, decide_frame  # noqa: E402

DIM = 128
# Shape of dlib encodings, measured on the dlib ResNet's encodings of ../shared/faces/lfw-dev
# (4,607 faces, 2,118 people; only these summary figures are used): the encodings share a mean
# of norm ~1.3 (their norms are ~1.43); people's centroids vary with total variance ~0.28, half
# of it along 12 directions (inter-person distances: median ~0.82); a photo deviates from its
# person's centroid with total variance ~0.09, half of it along 23 directions (same-person
# pairs: median ~0.43). A few dominant directions make this far easier for HNSW than
# isotropic noise (--spectrum isotropic, the worst case).
MEAN_NORM = 1.3
BETWEEN_VAR, BETWEEN_HALF_DIMS = 0.28, 12
WITHIN_VAR, WITHIN_HALF_DIMS = 0.09, 23
TAU, MARGIN = 0.6, 0.04  # app/settings.py defaults, for the decision-agreement column


Arrays = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]
Data = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32], NDArray[np.float32]]


@dataclass
class Row:
    size: int
    kind: str
    build_s: float
    mem_est: int
    rss_delta: int
    ef: int | None
    p50_ms: float
    p99_ms: float
    n_lat: int
    recall_template: float | None = None
    recall_person: float | None = None
    same_decision: float | None = None


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def release_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError):  # hand freed arenas back: the next RSS delta is the next build's
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _spectrum(total: float, half_dims: float) -> NDArray[np.float64]:
    """Per-direction variances decaying geometrically: half of `total` in the first `half_dims`."""
    decay = (0.5 ** (1.0 / half_dims)) ** np.arange(DIM)
    return np.asarray(total * decay / decay.sum(), dtype=np.float64)


def _gaussian(
    rng: np.random.Generator, n: int, variances: NDArray[np.float64], rotation: NDArray[np.float32]
) -> NDArray[np.float32]:
    z = rng.standard_normal((n, DIM), dtype=np.float32) * np.sqrt(variances).astype(np.float32)
    out: NDArray[np.float32] = z @ rotation.T
    return out


def _rotation(rng: np.random.Generator) -> NDArray[np.float32]:
    q, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
    return q.astype(np.float32)


def make_data(size: int, n_queries: int, rng: np.random.Generator, spectrum: str) -> Data:
    """Templates, their people, and queries (an enrolled template + a fresh photo's noise)."""
    # 1-5 templates per person (about size/3 people), in enrolment order.
    per_person = rng.integers(1, 6, size)
    per_person = per_person[: int(np.searchsorted(np.cumsum(per_person), size)) + 1]
    people = len(per_person)
    if spectrum == "dlib":
        between, within = _spectrum(BETWEEN_VAR, BETWEEN_HALF_DIMS), _spectrum(WITHIN_VAR, WITHIN_HALF_DIMS)
    else:
        between, within = np.full(DIM, BETWEEN_VAR / DIM), np.full(DIM, WITHIN_VAR / DIM)
    mean = rng.standard_normal(DIM)
    mean *= MEAN_NORM / np.linalg.norm(mean)
    centroids = (mean + _gaussian(rng, people, between, _rotation(rng))).astype(np.float32)
    within_rotation = _rotation(rng)
    owners = np.repeat(np.arange(people), per_person)[:size]
    vectors = centroids[owners] + _gaussian(rng, size, within, within_rotation)
    sources = rng.integers(0, size, n_queries)
    queries = vectors[sources] + _gaussian(rng, n_queries, within, within_rotation)
    template_ids = np.arange(1, size + 1, dtype=np.int64)
    person_ids = (owners + 1).astype(np.int64)
    return template_ids, person_ids, vectors.astype(np.float32), queries.astype(np.float32)


def time_single(index: FaceIndex, queries: NDArray[np.float32], n: int) -> tuple[float, float, int]:
    for q in queries[:20]:  # warm-up: first touches of pages and caches
        index.search_people(q)
    times = np.empty(min(n, len(queries)))
    for i in range(len(times)):
        t0 = time.perf_counter()
        index.search_people(queries[i])
        times[i] = time.perf_counter() - t0
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3), len(times)


def build(
    index: FaceIndex, data: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]
) -> tuple[float, int]:
    release_memory()
    before = rss_bytes()
    t0 = time.perf_counter()
    index.rebuild(*data)
    return time.perf_counter() - t0, rss_bytes() - before


def _verdict(hits: list[PersonHit]) -> tuple[str, int | None]:
    """What the door would do: the outcome, and whom it lets in."""
    m = decide_frame(hits, TAU, MARGIN)
    return m.outcome, m.person_id if m.outcome == "match" else None


def agreement(got: list[list[PersonHit]], want: list[list[PersonHit]]) -> tuple[float, float, float]:
    tmpl = np.mean([g[0].template_id == w[0].template_id for g, w in zip(got, want, strict=True)])
    person = np.mean([g[0].person_id == w[0].person_id for g, w in zip(got, want, strict=True)])
    decision = np.mean([_verdict(g) == _verdict(w) for g, w in zip(got, want, strict=True)])
    return float(tmpl), float(person), float(decision)


def bench_size(size: int, args: argparse.Namespace, rng: np.random.Generator) -> list[Row]:
    tids, pids, vecs, queries = make_data(size, args.queries, rng, args.spectrum)
    rows: list[Row] = []
    print(f"K={size:,}: {len(np.unique(pids)):,} people", flush=True)

    exact = FaceIndex(DIM, exact_max=size, background_maintenance=False)
    build_s, rss = build(exact, (tids, pids, vecs))
    truth = exact.search_people(queries, k_people=2)
    outcomes = Counter(_verdict(hits)[0] for hits in truth)
    print(f"  exact outcomes on the queries: {dict(outcomes)}", flush=True)
    p50, p99, n = time_single(exact, queries, args.exact_queries)
    rows.append(Row(size, exact.kind, build_s, exact.memory_bytes, rss, None, p50, p99, n))
    print(f"  exact: built {build_s:.1f}s, p50 {p50:.2f} ms, p99 {p99:.2f} ms", flush=True)
    del exact

    hnsw = FaceIndex(
        DIM,
        exact_max=0,
        hnsw_m=args.hnsw_m,
        hnsw_ef_construction=args.ef_construction,
        background_maintenance=False,
    )
    build_s, rss = build(hnsw, (tids, pids, vecs))
    print(f"  hnsw: built {build_s:.1f}s", flush=True)
    for ef in args.ef_search:
        hnsw.hnsw_ef_search = ef
        got = hnsw.search_people(queries, k_people=2)
        tmpl, person, decision = agreement(got, truth)
        p50, p99, n = time_single(hnsw, queries, len(queries))
        rows.append(
            Row(size, hnsw.kind, build_s, hnsw.memory_bytes, rss, ef, p50, p99, n, tmpl, person, decision)
        )
        print(f"  hnsw ef={ef}: p99 {p99:.2f} ms, recall@1 {tmpl:.4f}", flush=True)
    del hnsw
    release_memory()
    return rows


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.2f}%"

    head = (
        f"{'K':>9} {'index':<6} {'M/efC':>6} {'efS':>4} {'build s':>8} {'mem est':>9} {'RSS +':>9} "
        f"{'queries':>7} {'p50 ms':>7} {'p99 ms':>7} {'R@1 tmpl':>9} {'R@1 pers':>9} {'same dec':>9}"
    )
    print()
    print(head)
    print("-" * len(head))
    for r in rows:
        mefc = f"{args.hnsw_m}/{args.ef_construction}" if r.kind == "hnsw" else "-"
        print(
            f"{r.size:>9,} {r.kind:<6} {mefc:>6} {r.ef or '-':>4} {r.build_s:>8.1f} "
            f"{r.mem_est / 2**20:>7.0f}Mi {r.rss_delta / 2**20:>7.0f}Mi {r.n_lat:>7} "
            f"{r.p50_ms:>7.3f} {r.p99_ms:>7.3f} {pct(r.recall_template):>9} {pct(r.recall_person):>9} "
            f"{pct(r.same_decision):>9}"
        )
    print(
        "\nR@1 tmpl: HNSW's nearest template is the exact one; R@1 pers: same nearest person; "
        f"same dec: same decide_frame outcome and person (tau {TAU}, margin {MARGIN}) as exact search."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated template counts")
    parser.add_argument("--queries", type=int, default=1000, help="queries for latency and recall")
    parser.add_argument(
        "--exact-queries", type=int, default=1000, help="single queries timed on the exact index"
    )
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=80)
    parser.add_argument("--ef-search", default="32,64,128,256", help="comma-separated efSearch values")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--spectrum",
        choices=("dlib", "isotropic"),
        default="dlib",
        help="encoding distribution: dlib-like (default) or isotropic (HNSW's worst case)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    args.ef_search = [int(s) for s in args.ef_search.split(",")]

    print(
        f"faiss {faiss.__version__}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, "
        f"1 search thread, {args.spectrum} encodings, query = enrolled template + fresh noise"
    )
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    rows = [row for size in sizes for row in bench_size(size, args, rng)]
    print_table(rows, args)
    print(f"total {time.perf_counter() - t0:.0f}s, load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
