"""Open-set identification (1:N), the door's question: is this one of the enrolled people, and who?

The gallery CSV (``identity,file,min_shots``) lists enrolment photos; ``--shots S`` enrols the rows
with ``min_shots <= S``. The probes CSV (``file,true_identity,is_enrolled``) lists searches:
mated (the person is enrolled) and non-mated. Paths are relative to each CSV.

Enrolled templates go into the service's own :class:`~app.gallery.index.FaceIndex` (FAISS) and
every probe is searched with ``search_people``, so a person's score is their nearest template, as
at the door. Error rates follow NIST FRVT 1:N (see :mod:`app.evaluation.metrics`): FPIR over the
non-mated searches' rank-1 distances, FNIR over the mated searches' rank-1 distances where the
rank-1 person is the mate (a wrong person at rank 1 is a miss at every threshold).

A gallery photo without a face enrols nothing (the service would refuse it); a person left with
no template stays in the mated searches, which then miss. A probe without a face is a miss when
mated and a correct rejection when not.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from app.evaluation.metrics import (
    OperatingPoint,
    Tradeoff,
    at_false_accept,
    mated_scores,
    operating_point,
    rank1_rate,
    tradeoff,
)
from app.evaluation.pairs import encode_images
from app.gallery.calibration import TailModel, applied_tau, impostor_sample, prior_model
from app.gallery.index import FaceIndex
from app.gallery.matching import decide_frame
from app.gallery.metric import Metric
from app.settings import Settings
from app.vision.pipeline import FacePipeline

log = logging.getLogger(__name__)

# FPIR targets quoted: 1%, NIST's access-control point 0.3%, and 0.1%.
FPIR_TARGETS = (1e-2, 3e-3, 1e-3)


@dataclass(frozen=True)
class GalleryRow:
    identity: str
    file: Path
    min_shots: int


@dataclass(frozen=True)
class ProbeRow:
    file: Path
    true_identity: str
    is_enrolled: bool


@dataclass(frozen=True)
class DoorOutcomes:
    """What the service's decision rule (τ and margin, one frame) does with the probes."""

    tau: float
    margin: float
    mated_granted_right: int  # mated probe, door opens for the right person
    mated_granted_wrong: int  # mated probe, door opens for someone else
    mated_ambiguous: int
    nonmated_granted: int  # a stranger gets in
    nonmated_ambiguous: int


@dataclass(frozen=True)
class OpenSetResult:
    shots: int
    people: int  # identities in the gallery
    templates: int  # enrolled encodings (gallery photos with a face)
    gallery_no_face: list[str]
    probes_no_face: list[str]
    # Per search: rank-1 distance (NaN without a face or an empty gallery), and for mated
    # searches whether the rank-1 person is the mate.
    mated_rank1_distance: NDArray[np.float64]
    mated_rank1_is_mate: NDArray[np.bool_]
    nonmated_rank1_distance: NDArray[np.float64]
    tau: float
    door: DoorOutcomes
    tau_source: str = "given"  # or how the default τ was calibrated

    @property
    def mated(self) -> int:
        return len(self.mated_rank1_distance)

    @property
    def nonmated(self) -> int:
        return len(self.nonmated_rank1_distance)

    @property
    def mated_scores(self) -> NDArray[np.float64]:
        return mated_scores(self.mated_rank1_distance, self.mated_rank1_is_mate)

    @property
    def rank1(self) -> float:
        return rank1_rate(self.mated_rank1_is_mate)

    @property
    def curve(self) -> Tradeoff:
        """DET: false_accept = FPIR, false_reject = FNIR."""
        return tradeoff(self.mated_scores, self.nonmated_rank1_distance)

    def fnir_at_fpir(self, fpir: float) -> OperatingPoint:
        return at_false_accept(self.mated_scores, self.nonmated_rank1_distance, fpir)

    @property
    def at_tau(self) -> OperatingPoint:
        return operating_point(self.mated_scores, self.nonmated_rank1_distance, self.tau)


def read_gallery(csv_path: Path, shots: int) -> list[GalleryRow]:
    base = csv_path.parent
    with csv_path.open(newline="") as fh:
        rows = [GalleryRow(r["identity"], base / r["file"], int(r["min_shots"])) for r in csv.DictReader(fh)]
    return [r for r in rows if r.min_shots <= shots]


def read_probes(csv_path: Path) -> list[ProbeRow]:
    base = csv_path.parent
    with csv_path.open(newline="") as fh:
        return [
            ProbeRow(base / r["file"], r["true_identity"], r["is_enrolled"] == "1")
            for r in csv.DictReader(fh)
        ]


def select(
    gallery: list[GalleryRow], probes: list[ProbeRow], limit: int | None
) -> tuple[list[GalleryRow], list[ProbeRow]]:
    """Check that the two files agree; with ``limit``, keep the first ``limit`` enrolled people,
    their mated probes and the first ``limit`` non-mated probes (a quick run)."""
    enrolled = list(dict.fromkeys(r.identity for r in gallery))
    known = set(enrolled)
    for p in probes:
        if p.is_enrolled and p.true_identity not in known:
            raise ValueError(f"probe {p.file}: {p.true_identity} is marked enrolled but not in the gallery")
        if not p.is_enrolled and p.true_identity in known:
            raise ValueError(f"probe {p.file}: {p.true_identity} is in the gallery but marked not enrolled")
    overlap = {r.file for r in gallery} & {p.file for p in probes}
    if overlap:
        raise ValueError(f"{len(overlap)} images are both gallery and probe, e.g. {min(overlap)}")
    if limit is None:
        return gallery, probes
    keep = set(enrolled[:limit])
    nonmated = [p for p in probes if not p.is_enrolled][:limit]
    return (
        [r for r in gallery if r.identity in keep],
        [p for p in probes if p.is_enrolled and p.true_identity in keep] + nonmated,
    )


def build_index(
    settings: Settings,
    dim: int,
    person_ids: NDArray[np.int64],
    vectors: NDArray[np.float32],
    metric: Metric = "l2",
) -> FaceIndex:
    """The service's index with the service's settings; maintenance inline (nothing runs behind)."""
    index = FaceIndex(
        dim,
        metric=metric,
        exact_max=settings.gallery_exact_max,
        hnsw_m=settings.gallery_hnsw_m,
        hnsw_ef_search=settings.gallery_hnsw_ef_search,
        hnsw_ef_construction=settings.gallery_hnsw_ef_construction,
        background_maintenance=False,
    )
    index.rebuild(np.arange(1, len(person_ids) + 1, dtype=np.int64), person_ids, vectors)
    return index


def evaluate_openset(
    pipeline: FacePipeline,
    settings: Settings,
    gallery_csv: Path,
    probes_csv: Path,
    shots: int,
    *,
    tau: float | None = None,
    limit: int | None = None,
    cache_dir: Path | None = None,
) -> OpenSetResult:
    """Enrol the gallery at ``shots``, search every probe.

    ``tau`` defaults to the service's: the pinned FACEGATE_TAU, else the τ the service would
    apply to this gallery (calibrated for FACEGATE_TARGET_STRANGER_FAR at its K, with the
    encoder's dev-data prior), so the door figures are those of the default settings.
    """
    if shots < 1:
        raise ValueError("shots must be at least 1")
    tau = settings.tau if tau is None else tau
    gallery, probes = select(read_gallery(gallery_csv, shots), read_probes(probes_csv), limit)
    if not gallery:
        raise ValueError(f"{gallery_csv}: no gallery rows with min_shots <= {shots}")
    if not any(p.is_enrolled for p in probes) or all(p.is_enrolled for p in probes):
        raise ValueError(f"{probes_csv}: need both enrolled and non-enrolled probes")
    per_person = Counter(r.identity for r in gallery)
    log.info(
        "open set, %d shot(s): %d people, %d gallery photos (%s per person), %d probes",
        shots,
        len(per_person),
        len(gallery),
        "/".join(str(n) for n in sorted(set(per_person.values()))),
        len(probes),
    )
    embeddings = encode_images(
        pipeline, sorted({r.file for r in gallery} | {p.file for p in probes}), cache_dir
    )
    return search_probes(
        settings,
        gallery,
        probes,
        embeddings,
        shots=shots,
        tau=tau,
        dim=pipeline.dim,
        metric=pipeline.profile.metric,
        prior=prior_model(pipeline.calibration_prior),
        reference_tau=pipeline.profile.reference_tau,
    )


def search_probes(
    settings: Settings,
    gallery: list[GalleryRow],
    probes: list[ProbeRow],
    embeddings: Mapping[Path, NDArray[np.float32] | None],
    *,
    shots: int,
    tau: float | None,
    dim: int,
    metric: Metric = "l2",
    prior: TailModel | None = None,
    reference_tau: float | None = None,
) -> OpenSetResult:
    """Enrol ``gallery`` in a FaceIndex built as the service builds it and search every probe.

    ``embeddings`` maps every file to its encoding, None where no face was found. ``tau`` None:
    the τ the service applies to this gallery (``applied_tau`` with ``prior``).
    """
    person_of = {name: i for i, name in enumerate(dict.fromkeys(r.identity for r in gallery), start=1)}
    enrolled = [(person_of[r.identity], e) for r in gallery if (e := embeddings[r.file]) is not None]
    person_ids = np.array([pid for pid, _ in enrolled], dtype=np.int64)
    vectors = np.stack([e for _, e in enrolled]) if enrolled else np.empty((0, dim), np.float32)
    index = build_index(settings, dim, person_ids, vectors, metric)
    tau_source = "given"
    if tau is None:
        sample = impostor_sample(
            np.arange(1, len(person_ids) + 1, dtype=np.int64), person_ids, vectors, metric=metric
        )
        applied = applied_tau(sample, settings.target_stranger_far, prior, reference=reference_tau)
        tau, tau_source = applied.tau, f"calibrated ({applied.source}, FAR {settings.target_stranger_far:g})"

    searched = [(p.file, e) for p in probes if (e := embeddings[p.file]) is not None]
    queries = np.stack([e for _, e in searched]) if searched else np.empty((0, dim), np.float32)
    hits = dict(zip((f for f, _ in searched), index.search_people(queries), strict=True))
    index.close()

    mated_d: list[float] = []
    mated_ok: list[bool] = []
    nonmated_d: list[float] = []
    door: Counter[str] = Counter()
    for p in probes:
        found = hits.get(p.file, [])
        best = found[0] if found else None
        # A probe without a face casts no vote at the door: nothing to decide.
        outcome = decide_frame(found, tau, settings.match_margin) if p.file in hits else None
        if p.is_enrolled:
            mate = person_of[p.true_identity]
            mated_d.append(np.nan if best is None else best.distance)
            mated_ok.append(best is not None and best.person_id == mate)
            if outcome is not None and outcome.outcome == "match":
                door["mated_right" if outcome.person_id == mate else "mated_wrong"] += 1
            elif outcome is not None and outcome.outcome == "ambiguous":
                door["mated_ambiguous"] += 1
        else:
            nonmated_d.append(np.nan if best is None else best.distance)
            if outcome is not None and outcome.outcome != "unknown_person":
                door["nonmated_" + outcome.outcome] += 1

    return OpenSetResult(
        shots=shots,
        people=len(person_of),
        templates=len(enrolled),
        gallery_no_face=sorted(str(r.file) for r in gallery if embeddings[r.file] is None),
        probes_no_face=sorted(str(p.file) for p in probes if p.file not in hits),
        mated_rank1_distance=np.array(mated_d, dtype=np.float64),
        mated_rank1_is_mate=np.array(mated_ok, dtype=bool),
        nonmated_rank1_distance=np.array(nonmated_d, dtype=np.float64),
        tau=tau,
        tau_source=tau_source,
        door=DoorOutcomes(
            tau=tau,
            margin=settings.match_margin,
            mated_granted_right=door["mated_right"],
            mated_granted_wrong=door["mated_wrong"],
            mated_ambiguous=door["mated_ambiguous"],
            nonmated_granted=door["nonmated_match"],
            nonmated_ambiguous=door["nonmated_ambiguous"],
        ),
    )
