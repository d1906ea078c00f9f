"""FaceIndex (FAISS 1:K search) and the match decision, on synthetic encodings."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from numpy.typing import NDArray

from app.gallery import (
    Decision,
    FaceIndex,
    FrameMatch,
    PersonHit,
    decide_claim,
    decide_frame,
    fuse_burst,
    fuse_frames,
)

DIM = 128
TAU = 0.6
MARGIN = 0.04


def _unit(rng: np.random.Generator, n: int) -> NDArray[np.float32]:
    v = rng.standard_normal((n, DIM))
    unit: NDArray[np.float32] = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    return unit


def _noise(rng: np.random.Generator, n: int, norm: float) -> NDArray[np.float32]:
    return (_unit(rng, n) * norm).astype(np.float32)


def make_gallery(
    rng: np.random.Generator, people: int, per_person: int, *, first_tid: int = 1, noise: float = 0.1
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32], NDArray[np.float32]]:
    """People on the unit sphere (~1.41 apart), templates within `noise` of them (<< 0.6)."""
    centroids = _unit(rng, people)
    pids = np.repeat(np.arange(1000, 1000 + people, dtype=np.int64), per_person)
    vecs = np.repeat(centroids, per_person, axis=0) + _noise(rng, people * per_person, noise)
    tids = np.arange(first_tid, first_tid + len(pids), dtype=np.int64)
    return tids, pids, vecs.astype(np.float32), centroids


def brute_force_people(
    pids: NDArray[np.int64], vecs: NDArray[np.float32], query: NDArray[np.float32], k: int
) -> list[tuple[int, float]]:
    d = np.linalg.norm(vecs.astype(np.float64) - query.astype(np.float64), axis=1)
    best: dict[int, float] = {}
    for pid, dist in zip(pids.tolist(), d.tolist(), strict=True):
        best[pid] = min(dist, best.get(pid, np.inf))
    return sorted(best.items(), key=lambda kv: kv[1])[:k]


def kind_of(index: FaceIndex) -> str:
    return index.kind  # a plain str: mypy would narrow the Literal across calls otherwise


def flat_index(**kw: object) -> FaceIndex:
    return FaceIndex(DIM, exact_max=1_000_000, background_maintenance=False, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ index


def test_exact_search_matches_numpy_brute_force() -> None:
    rng = np.random.default_rng(0)
    tids, pids, vecs, centroids = make_gallery(rng, 50, 3)
    index = flat_index()
    index.rebuild(tids, pids, vecs)
    assert kind_of(index) == "flat"
    assert len(index) == 150
    assert index.people_count == 50

    # Queries near enrolled people and far-away random points.
    queries = np.vstack([centroids[:20] + _noise(rng, 20, 0.2), _unit(rng, 10) * 1.3]).astype(np.float32)
    results = index.search_people(queries, k_people=3)
    assert len(results) == len(queries)
    for q, hits in zip(queries, results, strict=True):
        expected = brute_force_people(pids, vecs, q, 3)
        assert [h.person_id for h in hits] == [pid for pid, _ in expected]
        np.testing.assert_allclose([h.distance for h in hits], [d for _, d in expected], rtol=1e-5, atol=1e-5)
        # The template reported is that person's nearest one.
        for h in hits:
            row = int(np.flatnonzero(tids == h.template_id)[0])
            assert pids[row] == h.person_id
            assert np.linalg.norm(vecs[row] - q) == pytest.approx(h.distance, rel=1e-5, abs=1e-5)
    # Near queries find their own person well inside tau; nothing else is close.
    for i in range(20):
        assert results[i][0].person_id == pids[i * 3]
        assert results[i][0].distance < 0.4
        assert results[i][1].distance > 1.0


def test_batch_and_single_query_agree() -> None:
    rng = np.random.default_rng(1)
    tids, pids, vecs, _ = make_gallery(rng, 30, 2)
    index = flat_index()
    index.rebuild(tids, pids, vecs)
    queries = vecs[::7] + _noise(rng, len(vecs[::7]), 0.05)
    batch = index.search_people(queries)
    single = [index.search_people(q)[0] for q in queries]  # 1-d query = one row
    assert batch == single


def test_per_person_collapse_and_widening() -> None:
    rng = np.random.default_rng(2)
    query = _unit(rng, 1)[0]
    # Person 1: 100 templates all nearer the query than anyone else -> one hit, its best template.
    # Each template at its own distance (0.05-0.15): with one noise norm for all, every template
    # would be equally near and the "best" one a float-rounding tie that differs between CPUs.
    near = query + _noise(rng, 100, 1.0) * np.linspace(0.05, 0.15, 100, dtype=np.float32)[:, None]
    near = near.astype(np.float32)
    far = (-query + _noise(rng, 3, 0.1)).astype(np.float32)
    vecs = np.vstack([near, far])
    pids = np.array([1] * 100 + [2] * 3, dtype=np.int64)
    tids = np.arange(10, 113, dtype=np.int64)
    index = flat_index()
    index.rebuild(tids, pids, vecs)

    hits = index.search_people(query, k_people=2)[0]
    assert [h.person_id for h in hits] == [1, 2]  # needs widening past the first 16 neighbours
    d_near = np.linalg.norm(near - query, axis=1)
    assert hits[0].template_id == tids[int(np.argmin(d_near))]
    assert hits[0].distance == pytest.approx(float(d_near.min()), abs=1e-5)
    assert hits[1].distance == pytest.approx(float(np.linalg.norm(far - query, axis=1).min()), abs=1e-5)

    assert [h.person_id for h in index.search_people(query, k_people=1)[0]] == [1]
    # Asking for more people than exist gives all of them.
    assert len(index.search_people(query, k_people=5)[0]) == 2


def test_empty_gallery() -> None:
    index = flat_index()
    assert len(index) == 0
    assert index.people_count == 0
    assert index.search_people(np.zeros((2, DIM), np.float32)) == [[], []]
    assert index.remove([1, 2]) == 0
    assert index.remove_person(7) == 0


def test_add_remove_take_effect_at_once() -> None:
    rng = np.random.default_rng(3)
    tids, pids, vecs, _ = make_gallery(rng, 10, 2)
    index = flat_index()
    index.rebuild(tids, pids, vecs)

    newcomer = _unit(rng, 1)
    index.add(np.array([500], np.int64), np.array([77], np.int64), newcomer)
    hit = index.search_people(newcomer)[0][0]
    assert (hit.person_id, hit.template_id) == (77, 500)
    assert hit.distance == pytest.approx(0.0, abs=1e-3)
    assert len(index) == 21
    assert index.people_count == 11

    # Removing one of two templates of a person leaves the other one findable.
    assert index.remove(np.array([tids[0], 999_999], np.int64)) == 1  # unknown ids are ignored
    hit = index.search_people(vecs[0])[0][0]
    assert (hit.person_id, hit.template_id) == (pids[0], tids[1])
    assert index.remove([tids[0]]) == 0  # already gone

    assert index.remove_person(int(pids[0])) == 1
    assert pids[0] not in {h.person_id for h in index.search_people(vecs[0], k_people=20)[0]}
    assert index.remove_person(77) == 1
    assert index.search_people(newcomer)[0][0].person_id != 77
    assert len(index) == 18
    assert index.people_count == 9
    index._check_consistency()


def test_add_existing_template_id_replaces_it() -> None:
    rng = np.random.default_rng(4)
    tids, pids, vecs, _ = make_gallery(rng, 5, 1)
    index = flat_index()
    index.rebuild(tids, pids, vecs)
    moved = _unit(rng, 1)
    index.add(tids[:1], np.array([55], np.int64), moved)
    assert len(index) == 5
    hit = index.search_people(moved)[0][0]
    assert (hit.template_id, hit.person_id) == (tids[0], 55)
    assert index.search_people(vecs[0])[0][0].distance > 0.5  # nothing left where it was
    index._check_consistency()


def test_rebuild_replaces_content() -> None:
    rng = np.random.default_rng(5)
    a = make_gallery(rng, 10, 2)
    b = make_gallery(rng, 4, 3, first_tid=100)
    index = flat_index()
    index.rebuild(*a[:3])
    index.rebuild(*b[:3])
    assert len(index) == 12
    assert index.people_count == 4
    hits = index.search_people(a[2], k_people=1)
    assert all(h[0].template_id >= 100 for h in hits)


def test_bad_input_is_rejected() -> None:
    index = flat_index()
    one = np.array([1], np.int64)
    with pytest.raises(ValueError):
        index.add(one, one, np.zeros((1, 64), np.float32))
    with pytest.raises(ValueError):
        index.add(one, np.array([1, 2], np.int64), np.zeros((1, DIM), np.float32))
    with pytest.raises(ValueError):
        index.add(one, one, np.full((1, DIM), np.nan, np.float32))
    with pytest.raises(ValueError):
        index.add(np.array([1, 1], np.int64), np.array([1, 1], np.int64), np.zeros((2, DIM), np.float32))
    with pytest.raises(ValueError):
        index.rebuild(np.array([1.5]), one, np.zeros((1, DIM), np.float32))
    with pytest.raises(ValueError):
        index.search_people(np.zeros((1, 3), np.float32))
    assert len(index) == 0


def test_switches_to_hnsw_above_exact_max_with_high_recall() -> None:
    rng = np.random.default_rng(6)
    tids, pids, vecs, _ = make_gallery(rng, 800, 3, noise=0.25)
    exact = flat_index()
    exact.rebuild(tids, pids, vecs)

    index = FaceIndex(DIM, exact_max=500, background_maintenance=False)
    index.rebuild(tids[:450], pids[:450], vecs[:450])
    assert kind_of(index) == "flat"
    index.add(tids[450:], pids[450:], vecs[450:])  # crosses 500: rebuilt as HNSW before returning
    assert kind_of(index) == "hnsw"
    assert len(index) == 2400
    index._check_consistency()

    queries = vecs[rng.choice(len(vecs), 1000, replace=False)] + _noise(rng, 1000, 0.25)
    got = index.search_people(queries, k_people=2)
    want = exact.search_people(queries, k_people=2)
    recall = np.mean([g[0].template_id == w[0].template_id for g, w in zip(got, want, strict=True)])
    assert recall >= 0.99
    # Where HNSW finds the same template, the distance is the exact one.
    same = [(g[0].distance, w[0].distance) for g, w in zip(got, want, strict=True)]
    assert np.mean([abs(a - b) < 1e-5 for a, b in same]) >= 0.99

    # A rebuild picks the kind by size.
    index.rebuild(tids[:300], pids[:300], vecs[:300])
    assert kind_of(index) == "flat"
    index.rebuild(tids, pids, vecs)
    assert kind_of(index) == "hnsw"


def test_hnsw_deletes_are_tombstones_then_compacted() -> None:
    rng = np.random.default_rng(7)
    tids, pids, vecs, _ = make_gallery(rng, 400, 2)
    index = FaceIndex(DIM, exact_max=500, background_maintenance=False, compact_dead_fraction=0.1)
    index.rebuild(tids, pids, vecs)
    assert kind_of(index) == "hnsw"

    # 40 of 800 rows dead: under the 10% threshold, so they stay as tombstones...
    gone_people = pids[::2][:40]
    for pid in gone_people[:20]:
        assert index.remove_person(int(pid)) == 2
    assert index.dead_count == 40
    assert len(index) == 760
    index._check_consistency()
    # ...that searches never return, even when the query is exactly a removed template.
    rows = np.flatnonzero(np.isin(pids, gone_people[:20]))
    for hits in index.search_people(vecs[rows], k_people=2):
        assert len(hits) == 2
        assert not {h.person_id for h in hits} & set(gone_people[:20].tolist())
        assert hits[0].distance > 1.0  # everyone left is another person
    # A re-enrolled template of a removed person is found again.
    index.add(tids[rows[:1]], pids[rows[:1]], vecs[rows[:1]])
    assert index.search_people(vecs[rows[0]])[0][0].template_id == tids[rows[0]]
    assert len(index) == 761
    index._check_consistency()

    # Crossing 10% dead compacts (synchronously here).
    index.remove(tids[rows[:1]])
    for pid in gone_people[20:40]:
        index.remove_person(int(pid))
    assert index.dead_count == 0
    assert len(index) == 720
    assert kind_of(index) == "hnsw"  # 720 > 0.9 * 500: stays HNSW
    index._check_consistency()

    # Falling to 0.9 * exact_max goes back to flat.
    index.remove(tids[np.isin(pids, pids[::2][40:200])])
    assert kind_of(index) == "flat"
    assert len(index) == 400
    assert index.people_count == 200
    index._check_consistency()


def test_changes_during_rebuild_are_replayed() -> None:
    rng = np.random.default_rng(8)
    tids, pids, vecs, _ = make_gallery(rng, 20, 2)
    index = flat_index()
    index.rebuild(tids, pids, vecs)
    extra = _unit(rng, 1)

    def load() -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
        # Another request enrols and deletes while the (SQL) snapshot is read and indexed.
        def writer() -> None:
            index.add(np.array([900], np.int64), np.array([9], np.int64), extra)
            index.remove([tids[0]])

        t = threading.Thread(target=writer)
        t.start()
        t.join()
        assert index.search_people(extra)[0][0].template_id == 900  # visible at once meanwhile
        return tids, pids, vecs  # a snapshot taken before those changes

    index.rebuild_from(load)
    assert len(index) == 40
    assert index.search_people(extra)[0][0].template_id == 900
    assert index.search_people(vecs[0])[0][0].template_id == tids[1]
    index._check_consistency()


def test_concurrent_searches_during_adds() -> None:
    rng = np.random.default_rng(9)
    tids, pids, vecs, _ = make_gallery(rng, 500, 2)
    # Background maintenance: the adds cross exact_max, so an HNSW build swaps in mid-run.
    index = FaceIndex(DIM, exact_max=600, background_maintenance=True)
    index.rebuild(tids[:400], pids[:400], vecs[:400])
    errors: list[BaseException] = []
    stop = threading.Event()
    searched = [0]

    def searcher(seed: int) -> None:
        local = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                row = int(local.integers(10, 400))  # rows < 10 get removed
                hits = index.search_people(vecs[row : row + 1] + 0.01)[0]
                assert hits and hits[0].person_id == pids[row]
                searched[0] += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def adder() -> None:
        try:
            for start in range(400, 1000, 20):
                index.add(tids[start : start + 20], pids[start : start + 20], vecs[start : start + 20])
            index.remove(tids[:10])
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    adding = threading.Thread(target=adder)
    adding.start()
    adding.join()
    assert index.wait_for_maintenance(timeout=60)
    stop.set()
    for t in threads:
        t.join()
    index.close()

    assert not errors, errors
    assert searched[0] > 0
    assert kind_of(index) == "hnsw"
    assert len(index) == 990
    index._check_consistency()
    hits = index.search_people(vecs[10:])
    assert all(h[0].template_id == t for h, t in zip(hits, tids[10:], strict=True))
    assert all(h[0].template_id not in set(tids[:10].tolist()) for h in index.search_people(vecs[:10]))


def test_memory_estimate_grows_with_size() -> None:
    rng = np.random.default_rng(10)
    tids, pids, vecs, _ = make_gallery(rng, 300, 2)
    flat = flat_index()
    flat.rebuild(tids, pids, vecs)
    hnsw = FaceIndex(DIM, exact_max=0, background_maintenance=False)
    hnsw.rebuild(tids, pids, vecs)
    assert kind_of(hnsw) == "hnsw"
    assert 600 * DIM * 4 < flat.memory_bytes < hnsw.memory_bytes


# ------------------------------------------------------------------------------------ decide_frame


def hit(person: int, distance: float) -> PersonHit:
    return PersonHit(person_id=person, template_id=person * 10, distance=distance)


def test_decide_frame_empty_gallery_is_unknown() -> None:
    m = decide_frame([], TAU, MARGIN)
    assert m == FrameMatch("unknown_person", None, None, None, None, None)


def test_decide_frame_match_without_second_person() -> None:
    m = decide_frame([hit(1, 0.3)], TAU, MARGIN)
    assert (m.outcome, m.person_id, m.template_id, m.distance, m.second_distance) == (
        "match",
        1,
        10,
        0.3,
        None,
    )


def test_decide_frame_match_with_clear_second() -> None:
    m = decide_frame([hit(2, 0.7), hit(1, 0.3)], TAU, MARGIN)  # any order
    assert (m.outcome, m.person_id, m.distance, m.second_person_id, m.second_distance) == (
        "match",
        1,
        0.3,
        2,
        0.7,
    )


def test_decide_frame_margin_boundary() -> None:
    # Binary-exact values: second == best + margin is a match, a hair closer is ambiguous.
    assert decide_frame([hit(1, 0.25), hit(2, 0.375)], 0.5, 0.125).outcome == "match"
    assert decide_frame([hit(1, 0.25), hit(2, 0.37)], 0.5, 0.125).outcome == "ambiguous"


def test_decide_claim_needs_the_claimed_person_under_tau_and_nobody_nearer() -> None:
    granted = decide_claim(hit(1, 0.40), hit(2, 0.55), TAU)
    assert (granted.outcome, granted.person_id, granted.distance) == ("match", 1, 0.40)
    assert (granted.second_person_id, granted.second_distance) == (2, 0.55)  # the rival, recorded
    assert decide_claim(hit(1, 0.40), None, TAU).outcome == "match"  # nobody else enrolled
    assert decide_claim(hit(1, 0.40), hit(2, 0.41), TAU).outcome == "match"  # no margin in 1:1
    # The face is someone else's: a colleague nearer than the claimed person, even under tau.
    colleague = decide_claim(hit(1, 0.45), hit(2, 0.20), TAU)
    assert (colleague.outcome, colleague.person_id, colleague.second_person_id) == ("unknown_person", 1, 2)
    # The face is nobody's: the claimed distance at or over tau.
    assert decide_claim(hit(1, TAU), hit(2, 0.9), TAU).outcome == "unknown_person"
    with pytest.raises(ValueError, match="another person"):
        decide_claim(hit(1, 0.4), hit(1, 0.5), TAU)


def test_decide_frame_ambiguous() -> None:
    m = decide_frame([hit(1, 0.40), hit(2, 0.42)], TAU, MARGIN)
    assert (m.outcome, m.person_id, m.distance, m.second_person_id, m.second_distance) == (
        "ambiguous",
        1,
        0.40,
        2,
        0.42,
    )
    # The rival need not be under tau itself to make the best one doubtful.
    assert decide_frame([hit(1, 0.58), hit(2, 0.61)], TAU, MARGIN).outcome == "ambiguous"


def test_decide_frame_unknown_at_and_above_tau() -> None:
    m = decide_frame([hit(1, 0.6), hit(2, 0.9)], TAU, MARGIN)
    assert (m.outcome, m.person_id, m.distance, m.second_distance) == ("unknown_person", 1, 0.6, 0.9)
    assert decide_frame([hit(1, 0.75)], TAU, MARGIN).outcome == "unknown_person"
    assert decide_frame([hit(1, 0.5999)], TAU, MARGIN).outcome == "match"


def test_decide_frame_ignores_repeated_person() -> None:
    # A malformed list with a person's own second template is not a rival.
    m = decide_frame([hit(1, 0.30), hit(1, 0.31), hit(2, 0.8)], TAU, MARGIN)
    assert (m.outcome, m.second_person_id, m.second_distance) == ("match", 2, 0.8)


def test_decide_frame_rejects_bad_thresholds() -> None:
    with pytest.raises(ValueError):
        decide_frame([hit(1, 0.3)], 0.0, MARGIN)
    with pytest.raises(ValueError):
        decide_frame([hit(1, 0.3)], TAU, -0.1)


# ------------------------------------------------------------------------------------ fuse_frames


def fm(outcome: str, person: int | None, d: float | None, second: float | None = None) -> FrameMatch:
    return FrameMatch(outcome, person, None, d, None, second)  # type: ignore[arg-type]


def test_fuse_no_face() -> None:
    assert fuse_frames([], 3) == Decision("no_face", None, None, None, 3, 0, 0)
    assert not fuse_frames([], 3).granted


def test_fuse_single_frame_each_outcome() -> None:
    assert fuse_frames([fm("match", 1, 0.3, 0.9)], 1) == Decision("match", 1, 0.3, 0.9, 1, 1, 1)
    assert fuse_frames([fm("match", 1, 0.3, 0.9)], 1).granted
    assert fuse_frames([fm("unknown_person", 1, 0.7, 0.9)], 1) == Decision(
        "unknown_person", None, 0.7, 0.9, 1, 1, 1
    )
    assert fuse_frames([fm("ambiguous", 1, 0.4, 0.41)], 1) == Decision("ambiguous", None, 0.4, 0.41, 1, 1, 0)
    assert fuse_frames([fm("unknown_person", None, None)], 1) == Decision(
        "unknown_person", None, None, None, 1, 1, 1
    )


def test_fuse_majority_match_takes_best_distances_of_winning_frames() -> None:
    frames = [fm("match", 1, 0.35, 0.95), fm("match", 1, 0.30, 1.0), fm("unknown_person", 3, 0.2, 0.8)]
    # The unknown frame's distances do not leak into the match.
    assert fuse_frames(frames, 3) == Decision("match", 1, 0.30, 0.95, 3, 3, 2)


def test_fuse_frames_without_face_do_not_vote() -> None:
    # 2 faces out of 5 frames: both for person 1 is a strict majority of frames with a face.
    d = fuse_frames([fm("match", 1, 0.3, 0.9), fm("match", 1, 0.32, None)], 5)
    assert d == Decision("match", 1, 0.3, 0.9, 5, 2, 2)


def test_fuse_tie_is_ambiguous() -> None:
    d = fuse_frames([fm("match", 1, 0.3, 0.9), fm("unknown_person", 2, 0.7, 0.9)], 2)
    assert d == Decision("ambiguous", None, 0.3, 0.9, 2, 2, 1)
    d = fuse_frames([fm("match", 1, 0.3, 0.9), fm("match", 2, 0.35, 0.8)], 2)
    assert d == Decision("ambiguous", None, 0.3, 0.8, 2, 2, 1)


def test_fuse_disagreeing_people_is_ambiguous() -> None:
    frames = [fm("match", 1, 0.3), fm("match", 2, 0.3), fm("unknown_person", 1, 0.65), fm("match", 1, 0.4)]
    # Person 1 has 2 of 4: not a strict majority; unknown has 1 of 4.
    assert fuse_frames(frames, 4) == Decision("ambiguous", None, 0.3, None, 4, 4, 2)


def test_fuse_ambiguous_frames_block_a_match() -> None:
    frames = [fm("match", 1, 0.3, 0.5), fm("ambiguous", 1, 0.31, 0.33), fm("ambiguous", 1, 0.32, 0.34)]
    assert fuse_frames(frames, 3) == Decision("ambiguous", None, 0.3, 0.33, 3, 3, 1)


def test_fuse_unknown_majority() -> None:
    frames = [fm("unknown_person", 1, 0.7, 0.8), fm("unknown_person", 2, 0.65, 0.9), fm("match", 1, 0.5, 0.7)]
    assert fuse_frames(frames, 3) == Decision("unknown_person", None, 0.5, 0.7, 3, 3, 2)


def test_fuse_rejects_more_faces_than_frames() -> None:
    with pytest.raises(ValueError):
        fuse_frames([fm("match", 1, 0.3)] * 2, 1)


# ------------------------------------------------------------------------------------ fuse_burst


def test_fuse_burst_decides_on_the_mean_and_counts_agreeing_frames() -> None:
    fused = fm("match", 7, 0.30, 0.80)
    frames = [fm("match", 7, 0.35, 0.8), fm("unknown_person", 7, 0.70, 0.9), fm("match", 8, 0.4, 0.45)]
    d = fuse_burst(fused, frames, 4)
    # The mean's match decides, although only one frame of three matched person 7 on its own.
    assert d == Decision("match", 7, 0.30, 0.80, 4, 3, 1) and d.granted
    unknown = fuse_burst(fm("unknown_person", 7, 0.9, 1.0), frames, 3)
    assert (unknown.reason, unknown.person_id, unknown.votes) == ("unknown_person", None, 1)
    ambiguous = fuse_burst(fm("ambiguous", 7, 0.3, 0.32), frames, 3)
    assert (ambiguous.reason, ambiguous.person_id, ambiguous.granted) == ("ambiguous", None, False)
    assert fuse_burst(None, [], 2) == Decision("no_face", None, None, None, 2, 0, 0)
    with pytest.raises(ValueError, match="frames_total"):
        fuse_burst(fused, frames, 2)
