"""Evaluation results as text: the lines the CLI prints, the PNG charts, one Markdown report.

The report is a list of :class:`Section` objects, each made by a function that takes result
objects and the report directory (where it draws its charts), and returns Markdown whose image
links are relative to that directory. :func:`render` puts sections in :data:`SECTION_ORDER`
whatever order they come in, and names the slots with no section, so a partial report says
what it lacks.

Slots in the report and who fills them:

- ``verification``: :func:`verification_section` (``PairsReport``, 1:1 on image pairs)
- ``openset``: :func:`openset_section` (``OpenSetResult``, 1:N at the door)
- ``calibration``: :func:`calibration_section` (``OpenSetCalibration``, τ against the stranger
  false-accept rate on the open-set gallery, from :mod:`app.gallery.calibration`)
- ``pair_classifier``: :func:`pair_classifier_section` (``PairClassifierResult``, the learned
  pair head against the plain distance on the pairs CSVs)
- ``liveness``: :func:`liveness_section` (``LivenessReport``, ISO/IEC 30107-3 rates)

A new section is a function ``(result objects, out_dir: Path) -> Section`` with its ``key`` one
of these; the ``eval report`` command collects the ones it can compute.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from app.evaluation.liveness_eval import MIN_FACE_FRAMES, BurstResult, LivenessReport
from app.evaluation.liveness_metrics import Rate, acquisition_failures
from app.evaluation.liveness_render import ATTACK_TYPES
from app.evaluation.metrics import OperatingPoint, at_false_accept, operating_point, tradeoff
from app.evaluation.openset import (
    FPIR_TARGETS,
    GalleryRow,
    OpenSetResult,
    ProbeRow,
    read_gallery,
    read_probes,
    select,
)
from app.evaluation.pair_classifier import PairClassifier
from app.evaluation.pairs import FAR_TARGETS, PairsReport, encode_images, read_pairs
from app.evaluation.plots import (
    BLUE,
    GREEN,
    ORANGE,
    PURPLE,
    RED,
    Axis,
    Marker,
    Series,
    VLine,
    det_chart,
    histogram_chart,
    line_chart,
    log_floor,
    roc_chart,
)
from app.gallery.calibration import (
    DEFAULT_GRID,
    CalibrationReport,
    TailModel,
    applied_tau,
    calibrate,
    impostor_sample,
    prior_model,
    stranger_sample,
)
from app.gallery.metric import Metric

if TYPE_CHECKING:
    from app.settings import Settings
    from app.vision.pipeline import FacePipeline

SECTION_ORDER: tuple[str, ...] = ("verification", "openset", "calibration", "pair_classifier", "liveness")
SECTION_TITLES = {
    "verification": "Verification (1:1)",
    "openset": "Open-set identification (1:N)",
    "calibration": "Threshold calibration",
    "pair_classifier": "Pair classifier",
    "liveness": "Liveness",
}
REPORT_NAME = "report.md"
_MAX_LISTED = 20  # no-face files listed by name


@dataclass(frozen=True)
class Section:
    key: str  # one of SECTION_ORDER
    body: str  # Markdown without the section heading; image links relative to the report dir

    def __post_init__(self) -> None:
        if self.key not in SECTION_ORDER:
            raise ValueError(f"unknown report section {self.key!r}; known: {', '.join(SECTION_ORDER)}")


def pct(value: float, digits: int = 2) -> str:
    return f"{value * 100:.{digits}f}%"


def rate_label(rate: float) -> str:
    """1e-2 -> "1%", 3e-3 -> "0.3%"."""
    return f"{rate * 100:g}%"


# The 1:1 operating points (FACEGATE_TARGET_FMR_1TO1 is 1e-5), printed by `eval verify` only.
VERIFY_STRICT_FAR_TARGETS = (1e-4, 1e-5)


def _allowed(negatives: int, rate: float) -> int:
    """How many negatives a rate target lets through (floor(rate·n))."""
    return math.floor(rate * negatives + 1e-9)


def _tau(point: OperatingPoint) -> str:
    return "inf" if math.isinf(point.tau) else f"{point.tau:.4f}"


# ----------------------------------------------------------------------------- verification


def verification_lines(report: PairsReport) -> list[str]:
    """What `eval verify` prints."""
    same = int(report.same.sum())
    lines = [
        f"pairs {report.pairs}, images {report.images}, images with no face found {len(report.no_face)}",
        *(f"  no face: {path}" for path in report.no_face),
        f"accuracy at tau={report.tau:.3f}: {pct(report.accuracy_at_tau)}",
    ]
    if report.folds:
        how = "folds of the CSV" if report.folds_from_csv else "folds split from the single fold of the CSV"
        lines += [
            f"  fold {f.fold}: tau={f.tau:.4f} (chosen on the other folds) accuracy {pct(f.accuracy)}"
            for f in report.folds
        ]
        lines.append(
            f"accuracy with tau chosen on the other folds: {pct(report.cv_accuracy)} "
            f"+/- {report.cv_std * 100:.2f} over {len(report.folds)} {how}"
        )
    if 0 < same < report.pairs:
        impostors = report.pairs - same
        for far in (*FAR_TARGETS, *VERIFY_STRICT_FAR_TARGETS):
            p = report.tar_at_far(far)
            allowed = _allowed(impostors, far)
            # Below 1/impostors no impostor pair may pass: τ is then just under the closest one,
            # and the figure says only that none of these pairs passed, not that FAR is that low.
            coarse = "; coarse: too few impostor pairs to observe this FAR" if far * impostors < 1 else ""
            lines.append(
                f"TAR at FAR={far:g}: {pct(p.true_accept)} (tau={_tau(p)}, FAR {pct(p.false_accept, 3)}, "
                f"{allowed} of {impostors} impostor pairs allowed{coarse})"
            )
        eer = report.eer
        lines.append(f"equal error rate: {pct(eer.false_accept)} at tau={eer.tau:.4f}")
    return lines


@dataclass(frozen=True)
class VerificationCharts:
    roc: Path
    distances: Path


def verification_charts(report: PairsReport, out_dir: Path) -> VerificationCharts:
    """ROC and genuine/impostor distance histograms as PNG files in ``out_dir``."""
    name = f"verify-{report.name}"
    at_tau = operating_point(report.distances[report.same], report.distances[~report.same], report.tau)
    roc = roc_chart(
        out_dir / f"{name}-roc.png",
        f"ROC, {report.name} ({report.pairs} pairs)",
        [(report.name, report.curve)],
        [(f"tau = {report.tau:.2f}", at_tau), (f"EER {pct(report.eer.false_accept)}", report.eer)],
    )
    distances = histogram_chart(
        out_dir / f"{name}-distances.png",
        f"L2 distances, {report.name}",
        x_label="distance between the two encodings",
        groups=[
            ("same person", report.distances[report.same], BLUE),
            ("different people", report.distances[~report.same], ORANGE),
        ],
        lines=[VLine(f"tau = {report.tau:.2f}", report.tau, RED)],
    )
    return VerificationCharts(roc, distances)


def verification_section(reports: Sequence[PairsReport], out_dir: Path) -> Section:
    parts = []
    for report in reports:
        same = int(report.same.sum())
        charts = verification_charts(report, out_dir)
        rows = [
            ("pairs", f"{report.pairs:,} ({same:,} same person, {report.pairs - same:,} different)"),
            ("images with no face found", f"{len(report.no_face)} of {report.images:,}"),
            (f"accuracy at τ = {report.tau:.3f}", pct(report.accuracy_at_tau)),
        ]
        if report.folds:
            taus = [f.tau for f in report.folds]
            source = "" if report.folds_from_csv else ", split from one fold"
            rows.append(
                (
                    f"accuracy, τ chosen on the other folds ({len(report.folds)}-fold{source})",
                    f"{pct(report.cv_accuracy)} ± {report.cv_std * 100:.2f} "
                    f"(τ {min(taus):.3f} to {max(taus):.3f})",
                )
            )
        for far in FAR_TARGETS:
            p = report.tar_at_far(far)
            rows.append(
                (
                    f"TAR at FAR = {far:g}",
                    f"{pct(p.true_accept)} (τ {_tau(p)}; "
                    f"false accepts allowed: {_allowed(report.pairs - same, far)})",
                )
            )
        eer = report.eer
        rows.append(("equal error rate", f"{pct(eer.false_accept)} (τ {eer.tau:.3f})"))
        table = "\n".join(["| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])
        part = [f"### {report.name}\n", table, ""]
        if report.no_face:
            part.append("No face found in:")
            part += [f"- `{path}`" for path in report.no_face[:_MAX_LISTED]]
            if len(report.no_face) > _MAX_LISTED:
                part.append(f"- and {len(report.no_face) - _MAX_LISTED} more")
            part.append("")
        part += [f"![ROC]({charts.roc.name})", "", f"![distances]({charts.distances.name})", ""]
        parts.append("\n".join(part))
    intro = (
        "Whole pipeline on image pairs (detect, landmarks, align, encode); a pair is accepted when "
        "its L2 distance is below τ. A pair with an image where no face was found counts as an "
        "error (accuracy) and as rejected (ROC)."
    )
    return Section("verification", intro + "\n\n" + "\n".join(parts))


# ----------------------------------------------------------------------------- open set


def openset_lines(result: OpenSetResult) -> list[str]:
    """What `eval openset` prints."""
    door = result.door
    lines = [
        f"shots {result.shots}: {result.people} people enrolled with {result.templates} templates, "
        f"gallery photos with no face {len(result.gallery_no_face)}",
        *(f"  no face (gallery): {p}" for p in result.gallery_no_face),
        f"probes: {result.mated} enrolled, {result.nonmated} not enrolled, "
        f"no face {len(result.probes_no_face)}",
        *(f"  no face (probe): {p}" for p in result.probes_no_face),
        f"rank-1 identification rate: {pct(result.rank1)}",
    ]
    for fpir in FPIR_TARGETS:
        p = result.fnir_at_fpir(fpir)
        lines.append(
            f"FNIR at FPIR={rate_label(fpir)}: {pct(p.false_reject)} "
            f"(tau={_tau(p)}, FPIR {pct(p.false_accept, 3)}, "
            f"{_allowed(result.nonmated, fpir)} of {result.nonmated} non-enrolled allowed)"
        )
    at = result.at_tau
    lines += [
        f"operating point at tau={result.tau:.3f} ({result.tau_source}): FPIR {pct(at.false_accept)}, "
        f"FNIR {pct(at.false_reject)}",
        f"door decision (one frame, identity only) at tau={door.tau:.3f}, margin {door.margin:.3f}: "
        "enrolled probes let in as "
        f"themselves {door.mated_granted_right}, as someone else {door.mated_granted_wrong}, "
        f"ambiguous {door.mated_ambiguous}; non-enrolled let in {door.nonmated_granted}, "
        f"ambiguous {door.nonmated_ambiguous}",
    ]
    return lines


def openset_chart(results: Sequence[OpenSetResult], path: Path) -> Path:
    label = "probes" if len({(r.mated, r.nonmated) for r in results}) > 1 else f"{results[0].people} people"
    return det_chart(
        path,
        f"DET, open-set search ({label})",
        [(f"{r.shots} shot{'s' if r.shots > 1 else ''}", r.curve) for r in results],
        [(f"tau = {r.tau:.2f}, {r.shots} shot{'s' if r.shots > 1 else ''}", r.at_tau) for r in results],
    )


def openset_section(results: Sequence[OpenSetResult], out_dir: Path) -> Section:
    if not results:
        raise ValueError("no open-set results")
    chart = openset_chart(results, out_dir / "openset-det.png")
    first = results[0]
    head = "| | " + " | ".join(f"{r.shots} shot{'s' if r.shots > 1 else ''}" for r in results) + " |"
    rule = "|---|" + "---|" * len(results)

    def row(name: str, cells: Sequence[str]) -> str:
        return f"| {name} | " + " | ".join(cells) + " |"

    rows = [
        row("people / templates", [f"{r.people} / {r.templates}" for r in results]),
        row("gallery photos with no face", [str(len(r.gallery_no_face)) for r in results]),
        row("rank-1 identification rate", [pct(r.rank1) for r in results]),
    ]
    for fpir in FPIR_TARGETS:
        cells = []
        for r in results:
            p = r.fnir_at_fpir(fpir)
            cells.append(f"{pct(p.false_reject)} (τ {_tau(p)})")
        rows.append(
            row(f"FNIR at FPIR = {rate_label(fpir)} ({_allowed(first.nonmated, fpir)} allowed)", cells)
        )
    rows.append(
        row(
            f"FPIR / FNIR at τ = {first.tau:.3f}",
            [f"{pct(r.at_tau.false_accept)} / {pct(r.at_tau.false_reject)}" for r in results],
        )
    )
    rows.append(
        row(
            f"door (one frame, identity only) at τ {first.door.tau:.2f}, margin {first.door.margin:.2f}: "
            "enrolled let in as themselves / as someone else / ambiguous",
            [
                f"{r.door.mated_granted_right} / {r.door.mated_granted_wrong} / {r.door.mated_ambiguous}"
                for r in results
            ],
        )
    )
    rows.append(
        row(
            "door: non-enrolled let in / ambiguous",
            [f"{r.door.nonmated_granted} / {r.door.nonmated_ambiguous}" for r in results],
        )
    )
    intro = (
        f"Enrolled photos go into the service's FAISS index; each probe is one search, a person's score "
        f"is their nearest template. {first.mated:,} probes of enrolled people (mated searches) and "
        f"{first.nonmated:,} of people never enrolled; {len(first.probes_no_face)} probes had no face. "
        "NIST FRVT 1:N definitions: FPIR = non-mated searches whose rank-1 distance is below τ; "
        "FNIR = mated searches whose rank-1 candidate is not the mate or not below τ. 0.3% FPIR is "
        "NIST's access-control operating point. With n non-mated searches a target FPIR allows "
        "floor(FPIR·n) false positives, so the smallest targets rest on very few impostors."
    )
    table = "\n".join([head, rule, *rows])
    return Section("openset", f"{intro}\n\n{table}\n\n![DET]({chart.name})\n")


# ----------------------------------------------------------------------------- calibration

_CURVE_STEP = 0.05  # τ rows shown in the calibration table (the chart uses every grid point)
_LOOK_ALIKES_SHOWN = 10
CALIBRATION_TARGETS = (1e-3,)  # quoted beside FACEGATE_TARGET_STRANGER_FAR


@dataclass(frozen=True)
class OpenSetCalibration:
    """:func:`app.gallery.calibration.calibrate` on the open-set gallery at one shot count."""

    shots: int
    report: CalibrationReport
    names: dict[int, str]  # person id -> identity in the gallery CSV
    strangers_no_face: int  # non-enrolled probes without a face (not reference strangers)


def calibrate_openset(
    gallery: Sequence[GalleryRow],
    probes: Sequence[ProbeRow],
    embeddings: Mapping[Path, NDArray[np.float32] | None],
    *,
    shots: int,
    tau: float | None,
    target_far: float,
    dim: int,
    metric: Metric = "l2",
    prior: TailModel | None = None,
    grid: Sequence[float] = DEFAULT_GRID,
    reference_tau: float | None = None,
) -> OpenSetCalibration:
    """Enrolled encodings as the templates, the non-enrolled probes' encodings as the strangers.

    ``tau`` None: the τ the service would apply to this gallery (``applied_tau`` with ``prior``).

    Person ids are given in gallery order from 1, as :func:`app.evaluation.openset.search_probes`
    numbers them; gallery photos and probes without a face take no part.
    """
    person_of = {name: i for i, name in enumerate(dict.fromkeys(r.identity for r in gallery), start=1)}
    enrolled = [(person_of[r.identity], e) for r in gallery if (e := embeddings[r.file]) is not None]
    vectors = np.stack([e for _, e in enrolled]) if enrolled else np.empty((0, dim), np.float32)
    person_ids = np.array([pid for pid, _ in enrolled], dtype=np.int64)
    sample = impostor_sample(
        np.arange(1, len(enrolled) + 1, dtype=np.int64), person_ids, vectors, metric=metric
    )
    strangers = [embeddings[p.file] for p in probes if not p.is_enrolled]
    found = [e for e in strangers if e is not None]
    reference = stranger_sample(
        np.stack(found) if found else np.empty((0, dim), np.float32), person_ids, vectors, metric
    )
    if tau is None:
        tau = applied_tau(sample, target_far, prior, reference=reference_tau).tau
    report = calibrate(
        sample,
        tau=tau,
        target_far=target_far,
        strangers=reference if found else None,
        grid=grid,
    )
    names = {pid: name for name, pid in person_of.items()}
    return OpenSetCalibration(shots, report, names, len(strangers) - len(found))


def openset_calibration(
    pipeline: FacePipeline,
    settings: Settings,
    gallery_csv: Path,
    probes_csv: Path,
    shots: int,
    *,
    limit: int | None = None,
    cache_dir: Path | None = None,
) -> OpenSetCalibration:
    """The open-set CSVs at ``shots`` (as ``eval openset`` reads them) through :func:`calibrate_openset`."""
    gallery, probes = select(read_gallery(gallery_csv, shots), read_probes(probes_csv), limit)
    if not gallery:
        raise ValueError(f"{gallery_csv}: no gallery rows with min_shots <= {shots}")
    files = sorted({r.file for r in gallery} | {p.file for p in probes})
    embeddings = encode_images(pipeline, files, cache_dir)
    return calibrate_openset(
        gallery,
        probes,
        embeddings,
        shots=shots,
        tau=settings.tau,
        target_far=settings.target_stranger_far,
        dim=pipeline.dim,
        metric=pipeline.profile.metric,
        prior=prior_model(pipeline.calibration_prior),
        grid=pipeline.profile.calibration_grid,
        reference_tau=pipeline.profile.reference_tau,
    )


def _g(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _shots(n: int) -> str:
    return f"{n} shot{'s' if n > 1 else ''}"


def calibration_chart(results: Sequence[OpenSetCalibration], path: Path) -> Path:
    """Predicted and observed stranger FAR per attempt against τ (log y), one pair per shot count."""
    first = results[0].report
    colors = ((BLUE, ORANGE), (GREEN, PURPLE))
    series: list[Series] = []
    positive: list[float] = []
    strangers = max((r.report.strangers.strangers for r in results if r.report.strangers), default=0)
    for i, result in enumerate(results):
        predicted_color, observed_color = colors[i % len(colors)]
        curve = result.report.curve
        taus = np.array([p.tau for p in curve], dtype=np.float64)
        predicted = np.array([p.far_attempt for p in curve], dtype=np.float64)
        positive += [float(v) for v in predicted if v > 0.0]
        label = _shots(result.shots)
        series.append(Series(f"predicted, {label}", taus, predicted, predicted_color))
        if result.report.strangers is not None:
            observed = np.array([p.stranger_far or 0.0 for p in curve], dtype=np.float64)
            positive += [float(v) for v in observed if v > 0.0]
            series.append(
                Series(f"observed ({strangers} strangers), {label}", taus, observed, observed_color)
            )
    x_lo = min(p.tau for r in results for p in r.report.curve)
    x_hi = max(p.tau for r in results for p in r.report.curve)
    # Down to half a stranger (zero observed sits on the edge), but no lower than 1e-6.
    floor = min([*positive, 0.5 / strangers if strangers else 1.0, first.target_far])
    y_lo = max(1e-6, log_floor(floor))
    series.append(
        Series(
            f"target {first.target_far:g}",
            np.array([x_lo, x_hi]),
            np.array([first.target_far, first.target_far]),
            RED,
        )
    )
    markers = [
        Marker(f"tau = {r.report.tau:.2f}, {_shots(r.shots)}", r.report.tau, max(r.report.far_at_tau, y_lo))
        for r in results
        if r.report.far_at_tau is not None
    ]
    return line_chart(
        path,
        f"Stranger false accepts per attempt at K = {first.people}",
        x=Axis("tau (accept below)", x_lo, x_hi),
        y=Axis("stranger FAR per attempt", y_lo, 1.0, log=True),
        series=series,
        markers=markers[:1],
        legend_corner="br",
    )


def _calibration_part(result: OpenSetCalibration) -> str:
    r = result.report
    rows: list[tuple[str, str]] = [
        (
            "people / templates / impostor comparisons",
            f"{r.people} / {r.templates} / {r.comparisons:,}"
            + ("" if r.complete else f" (from {r.probes:,} templates)"),
        )
    ]
    if r.strangers is not None:
        rows.append(
            (
                "reference strangers (non-enrolled probes with a face)",
                f"{r.strangers.strangers} ({result.strangers_no_face} without a face left out)",
            )
        )
    if r.model is None:
        rows.append(("tail model", "too few comparisons: no prediction"))
    else:
        m = r.model
        rows.append(
            (
                "tail model (normal on the lowest comparisons)",
                f"mean {m.mu:.4f}, sd {m.sigma:.4f}, lowest {m.tail_fraction:.1%} ({m.points:,}), "
                f"probit R² {m.r2:.4f}",
            )
        )
        k_max = "unbounded" if r.max_people_at_tau is None else f"{r.max_people_at_tau:,}"
        rows += [
            (f"FMR per comparison at τ = {r.tau:.3f}", _g(r.fmr_at_tau)),
            (f"predicted stranger FAR per attempt at τ = {r.tau:.3f}, K = {r.people}", _g(r.far_at_tau)),
            (f"largest K that τ = {r.tau:.3f} keeps under FAR {r.target_far:g}", k_max),
        ]
    if r.strangers is not None:
        s = r.strangers
        rows.append(
            (
                f"observed stranger FAR at τ = {r.tau:.3f}",
                f"{_g(s.observed_far_at_tau)} ({s.matches_at_tau} of {s.strangers})",
            )
        )
    for target in sorted({r.target_far, *CALIBRATION_TARGETS}, reverse=True):
        rec = r.recommendation(target)
        if rec is None:
            continue
        which = " (FACEGATE_TARGET_STRANGER_FAR)" if math.isclose(target, r.target_far) else ""
        enough = ""
        if rec.strangers_sufficient is False:
            enough = f"; {r.strangers.strangers if r.strangers else 0} strangers are too few to observe it"
        rows.append(
            (
                f"recommended τ for FAR {target:g}{which}",
                f"{_f(rec.tau)} (gallery {_f(rec.tau_gallery)}, strangers {_f(rec.tau_strangers)}; "
                f"FMR per comparison {_g(rec.fmr_per_comparison)}{enough})",
            )
        )
    table = "\n".join(["| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])
    curve_rows = [
        f"| {p.tau:.2f}{' (τ)' if p.tau == r.tau else ''} | {p.matches:,} | {_g(p.fmr_empirical)} | "
        f"{_g(p.fmr_model)} | {_g(p.far_attempt)} | "
        + ("-" if p.stranger_far is None else f"{_g(p.stranger_far)} ({p.stranger_matches})")
        + " |"
        for p in r.curve
        if abs(p.tau / _CURVE_STEP - round(p.tau / _CURVE_STEP)) < 1e-6 or p.tau == r.tau
    ]
    curve = "\n".join(
        [
            "| τ | impostor comparisons below | FMR seen | FMR model | predicted FAR at K | "
            "observed FAR (strangers) |",
            "|---|---|---|---|---|---|",
            *curve_rows,
        ]
    )
    part = [f"### {_shots(result.shots)}\n", table, "", curve, ""]
    if r.look_alikes:
        part.append("Closest different people (nearest templates):\n")
        part += ["| distance | person | person |", "|---|---|---|"]
        for pair in r.look_alikes[:_LOOK_ALIKES_SHOWN]:
            below = " (below τ)" if pair.distance < r.tau else ""
            part.append(
                f"| {pair.distance:.3f}{below} | {result.names.get(pair.person_a, pair.person_a)} | "
                f"{result.names.get(pair.person_b, pair.person_b)} |"
            )
        part.append("")
    if r.warning:
        part += [f"**Warning:** {r.warning}", ""]
    return "\n".join(part)


def calibration_section(results: Sequence[OpenSetCalibration], out_dir: Path) -> Section:
    if not results:
        raise ValueError("no calibration results")
    chart = calibration_chart(results, out_dir / "calibration-far.png")
    intro = (
        "`facegate calibrate`'s arithmetic (`app.gallery.calibration`) on the open-set gallery: the "
        "impostor comparisons are every enrolled template against each other person's nearest "
        "template; FMR(τ) per comparison is the larger of the share seen and a normal fitted to the "
        "lowest comparisons; a stranger's attempt at the door makes K comparisons, so the predicted "
        "FAR per attempt is 1 - (1 - FMR)^K. The observed FAR is the share of the non-enrolled probes "
        "whose nearest enrolled person is below τ (the open-set FPIR). With n strangers an observed "
        "rate below about 3/n cannot be shown; on the chart an observed 0 sits on the bottom edge."
    )
    parts = [_calibration_part(r) for r in results]
    return Section("calibration", f"{intro}\n\n" + "\n".join(parts) + f"\n![stranger FAR]({chart.name})\n")


# ----------------------------------------------------------------------------- pair classifier


def roc_auc(positive: NDArray[np.float64], negative: NDArray[np.float64]) -> float:
    """P(a positive's distance < a negative's), ties counting half; NaN (no face) is +inf."""
    pos = np.where(np.isnan(positive), np.inf, np.asarray(positive, dtype=np.float64))
    neg = np.sort(np.where(np.isnan(negative), np.inf, np.asarray(negative, dtype=np.float64)))
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("AUC needs both positives and negatives")
    below = np.searchsorted(neg, pos, side="left")
    upto = np.searchsorted(neg, pos, side="right")
    greater = len(neg) - upto
    ties = upto - below
    return float((greater.sum() + 0.5 * ties.sum()) / (len(pos) * len(neg)))


@dataclass(frozen=True)
class TrainingOverlap:
    """Whether a pairs CSV is among the exported head's training data (from the sidecar)."""

    trained_on: bool
    note: str


def training_overlap(csv_path: Path, folds: Sequence[int], meta: Mapping[str, Any]) -> TrainingOverlap:
    """Compare a pairs CSV with the sidecar's ``training`` record (CSV paths relative to shared/faces)."""
    training = meta.get("training", {})
    path = csv_path.resolve().as_posix()
    for key, folds_key in (("pairs_csv", "pairs_csv_folds"), ("extra_csv", "extra_csv_folds")):
        rel = training.get(key)
        if not isinstance(rel, str) or not path.endswith("/" + rel.lstrip("/")):
            continue
        trained_folds = set(training.get(folds_key, []))
        seen = sorted(set(folds) & trained_folds)
        if seen:
            return TrainingOverlap(
                True,
                f"the exported head was trained on {rel} folds {', '.join(map(str, sorted(trained_folds)))}, "
                f"and these pairs come from folds {', '.join(map(str, seen))}: not held out",
            )
        return TrainingOverlap(False, f"{rel} folds {', '.join(map(str, sorted(set(folds))))} were held out")
    return TrainingOverlap(
        False,
        f"{csv_path.name} is not one of the head's training CSVs "
        f"({training.get('pairs_csv', '?')}, {training.get('extra_csv', '?')}); "
        "an LFW identity may still be in both",
    )


@dataclass(frozen=True)
class PairClassifierResult:
    report: PairsReport  # the distance's results on the same rows
    p_same: NDArray[np.float64]  # the head's output per pair in CSV order, NaN without a face
    folds: tuple[int, ...]  # the CSV's folds in these rows
    overlap: TrainingOverlap
    meta: Mapping[str, Any]  # the sidecar
    threshold: float  # the head says "same" at p >= threshold

    @property
    def head_scores(self) -> NDArray[np.float64]:
        """1 - p: distance-like (smaller = more alike), so the distance's metrics apply."""
        return np.asarray(1.0 - self.p_same, dtype=np.float64)

    @property
    def head_accuracy(self) -> float:
        valid = ~np.isnan(self.p_same)
        said_same = np.zeros(len(self.p_same), dtype=bool)
        said_same[valid] = self.p_same[valid] >= self.threshold
        return float(((said_same == self.report.same) & valid).mean())


def score_pairs(
    classifier: PairClassifier,
    pipeline: FacePipeline,
    csv_path: Path,
    report: PairsReport,
    *,
    limit: int | None = None,
    cache_dir: Path | None = None,
) -> PairClassifierResult:
    """The head's p(same) for the rows ``report`` was computed on (same CSV, same ``limit``)."""
    rows = read_pairs(csv_path, limit)
    if len(rows) != report.pairs:
        raise ValueError(f"{csv_path}: {len(rows)} rows, but the distance report has {report.pairs}")
    embeddings = encode_images(pipeline, sorted({p for _, a, b, _ in rows for p in (a, b)}), cache_dir)
    p_same = np.full(len(rows), np.nan, dtype=np.float64)
    found = [
        (i, ea, eb)
        for i, (_, a, b, _) in enumerate(rows)
        if (ea := embeddings[a]) is not None and (eb := embeddings[b]) is not None
    ]
    if found:
        scores = classifier.score(np.stack([ea for _, ea, _ in found]), np.stack([eb for _, _, eb in found]))
        p_same[[i for i, _, _ in found]] = scores.astype(np.float64)
    folds = tuple(sorted({f for f, *_ in rows}))
    return PairClassifierResult(
        report=report,
        p_same=p_same,
        folds=folds,
        overlap=training_overlap(csv_path, folds, classifier.meta),
        meta=classifier.meta,
        threshold=classifier.threshold,
    )


def _scored(scores: NDArray[np.float64], same: NDArray[np.bool_], name: str) -> list[str]:
    cells = [f"{roc_auc(scores[same], scores[~same]):.4f}"]
    for far in FAR_TARGETS:
        cells.append(pct(at_false_accept(scores[same], scores[~same], far).true_accept))
    return cells


def _sidecar_table(meta: Mapping[str, Any]) -> str | None:
    features = meta.get("features")
    cv = meta.get("cross_validation", {}).get(features) if isinstance(features, str) else None
    if not isinstance(cv, Mapping) or "head" not in cv or "distance" not in cv:
        return None
    head, dist = cv["head"], cv["distance"]

    def num(d: Mapping[str, Any], key: str, fmt: str) -> str:
        v = d.get(key)
        return fmt.format(v) if isinstance(v, int | float) else "-"

    rows = [
        ("ROC AUC", num(dist, "auc", "{:.4f}"), num(head, "auc", "{:.4f}")),
        (
            "accuracy (distance: τ chosen on the other folds; head: p ≥ 0.5)",
            f"{num(dist, 'accuracy_mean', '{:.2%}')} ± {num(dist, 'accuracy_std', '{:.2%}')}",
            f"{num(head, 'accuracy_mean', '{:.2%}')} ± {num(head, 'accuracy_std', '{:.2%}')}",
        ),
    ]
    for far in FAR_TARGETS:
        key = f"tar_at_far_{far:g}"
        rows.append((f"TAR at FAR = {far:g}", num(dist, key, "{:.2%}"), num(head, key, "{:.2%}")))
    folds = len(cv.get("folds", []))
    return "\n".join(
        [
            f"| held out ({folds}-fold, sidecar) | L2 distance | head ({features}) |",
            "|---|---|---|",
            *(f"| {a} | {b} | {c} |" for a, b, c in rows),
        ]
    )


def pair_classifier_section(results: Sequence[PairClassifierResult], source: Path, out_dir: Path) -> Section:
    if not results:
        raise ValueError("no pair classifier results")
    meta = results[0].meta
    features = meta.get("features", "?")
    training = meta.get("training", {})
    intro = (
        f"The logistic head over the pair feature `{features}` (`{source}`, trained by "
        f"`models/train_pair_classifier.py` on {training.get('pairs', '?')} pairs: "
        f"{training.get('pairs_csv', '?')} folds {training.get('pairs_csv_folds', '?')} and "
        f"{training.get('extra_csv', '?')}) against the plain L2 distance. The service does not use it. "
        "Its held-out figures come from the sidecar's cross-validation: each fold scored by a head "
        "trained on that fold's complement (the other folds, and the extra pairs sharing no identity "
        "with the fold)."
    )
    held_out = _sidecar_table(meta)
    parts = [intro, ""]
    for result in results:
        report = result.report
        same = report.same
        distance = report.distances
        head = result.head_scores
        name = report.name
        roc = roc_chart(
            out_dir / f"pair-classifier-{name}-roc.png",
            f"ROC, head vs distance, {name}" + ("" if not result.overlap.trained_on else " (training pairs)"),
            [
                ("L2 distance", tradeoff(distance[same], distance[~same])),
                (f"head ({features})", tradeoff(head[same], head[~same])),
            ],
        )
        d_cells, h_cells = _scored(distance, same, "distance"), _scored(head, same, "head")
        rows = [
            ("ROC AUC", d_cells[0], h_cells[0]),
            (
                f"accuracy (distance: τ = {report.tau:.3f}; head: p ≥ {result.threshold:g})",
                pct(report.accuracy_at_tau),
                pct(result.head_accuracy),
            ),
            *((f"TAR at FAR = {far:g}", d_cells[1 + i], h_cells[1 + i]) for i, far in enumerate(FAR_TARGETS)),
        ]
        what = "in-sample, not held out" if result.overlap.trained_on else "held out"
        table = "\n".join(
            [
                f"| {name}: {report.pairs:,} pairs ({what}) | L2 distance | head ({features}) |",
                "|---|---|---|",
                *(f"| {a} | {b} | {c} |" for a, b, c in rows),
            ]
        )
        parts.append(f"### {name}\n")
        if result.overlap.trained_on:
            parts.append(
                f"These pairs are the head's training data ({result.overlap.note}), so the comparison "
                "on them is not held-out and flatters the head. The held-out figures are the sidecar's:\n"
            )
            parts += [held_out or "(the sidecar has no cross-validation figures)", "", table, ""]
        else:
            parts += [f"Held out: {result.overlap.note}.\n", table, ""]
            if held_out is not None:
                parts += ["The sidecar's own held-out figures, for reference:\n", held_out, ""]
        parts += [f"![ROC head vs distance]({roc.name})", ""]
    return Section("pair_classifier", "\n".join(parts))


def pair_classifier_skipped(path: Path, why: str) -> Section:
    return Section(
        "pair_classifier",
        f"Skipped: {why} (`{path}`). Train it with `python models/train_pair_classifier.py`, "
        "or point `--pair-classifier` at it.\n",
    )


# ----------------------------------------------------------------------------- liveness


def _rate(rate: Rate) -> str:
    return "n/a" if math.isnan(rate.value) else f"{pct(rate.value)} ({rate.errors}/{rate.total})"


def _outcome_cells(results: Sequence[BurstResult]) -> list[str]:
    counts = {"live": 0, "spoof": 0, "undetermined": 0}
    for r in results:
        if r.result is not None:
            counts[r.result.outcome] += 1
    return [
        str(len(results)),
        *(str(v) for v in counts.values()),
        str(sum(r.result is None for r in results)),
    ]


LIVENESS_LIMITS = (
    "- **3-D masks** are not rendered here: a rigid or silicone mask has depth, parallax and no "
    "screen or print texture, so the cues that catch prints and screens do not apply; none was tested.",
    "- **Replayed video of a turning head**: the screen attack here replays a still photo; a video of "
    "the enrolled person moving their head shows the motion the liveness check looks for, and only "
    "screen texture, moiré or glare can betray it.",
    "- **Injected frames**: whoever steals a door's API key can send any JPEG frames (a rendered or "
    "recorded live face) straight to the service; liveness judges pixels and cannot tell that no camera "
    "took them. Key hygiene and a second factor are the defences.",
)


def liveness_section(report: LivenessReport, attacks_per_type: int, out_dir: Path) -> Section:
    """The `eval liveness` table as Markdown (``out_dir`` unused: no chart)."""
    del out_dir
    by_type = report.apcer_by_type()
    rows = []
    for attack_type in ATTACK_TYPES:
        of_type = [b for b in report.attacks if b.label == attack_type]
        rows.append([attack_type, *_outcome_cells(of_type), f"APCER {_rate(by_type[attack_type])}"])
    judged_live = any(b.result is not None for b in report.live)
    rows.append(
        [
            "live video",
            *_outcome_cells(report.live),
            f"BPCER {_rate(report.bpcer())}" if judged_live else "n/a",
        ]
    )
    table = "\n".join(
        [
            "| set | bursts | live | spoof | undetermined | no face | error rate |",
            "|---|---|---|---|---|---|---|",
            *("| " + " | ".join(r) + " |" for r in rows),
        ]
    )
    summary: list[tuple[str, str]] = []
    if any(r.total for r in by_type.values()):
        worst_type, worst_rate = report.worst()
        summary.append(("APCER, worst attack type", f"{_rate(worst_rate)} ({worst_type})"))
    if judged_live:
        summary += [
            ("BPCER (live bursts not let in)", _rate(report.bpcer())),
            ("  of which undetermined (asked to turn)", _rate(report.live_undetermined())),
            ("  of which called spoof", _rate(report.live_called_spoof())),
        ]
        if report.attacks:
            point = report.bpcer_at_apcer(0.01)
            threshold = "none reaches it" if math.isinf(point.threshold) else f"{point.threshold:.4f}"
            summary.append(
                ("BPCER at APCER ≤ 1% (every type)", f"{pct(point.bpcer)} (threshold on P(live) {threshold})")
            )
    failures = {t: acquisition_failures(ps) for t, ps in report.attacks_by_type().items()}
    failures["live video"] = acquisition_failures(report.live_presentations)
    summary.append(
        (
            f"failures to acquire (face in < {MIN_FACE_FRAMES} frames; not in the rates)",
            ", ".join(f"{k} {v}" for k, v in failures.items()),
        )
    )
    if report.photos_without_face:
        summary.append(("photos with no face (no attack rendered)", str(len(report.photos_without_face))))
    summary_table = "\n".join(["| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in summary)])
    intro = (
        f"ISO/IEC 30107-3 terms; a burst of frames is one presentation, judged as the service judges a "
        f"door request. {attacks_per_type} photos from `../shared/faces` rendered as each attack type "
        "(flat print, bent print, screen); bona fide bursts are windows cut from the real video. APCER = "
        "attacks let in as live, BPCER = live bursts not let in (spoof or undetermined). With "
        f"{attacks_per_type} attacks per type, an APCER of 0 only bounds the true rate below about "
        f"{3 / attacks_per_type:.0%} (rule of three)."
    )
    parts = [intro, "", table, "", summary_table, ""]
    if report.stills:
        parts += [
            "Stills (`spoof/silent_face_antispoofing`, each sent as a burst of noisy copies; a smoke "
            "test, no error rate):\n",
            "| truth | image | verdict | P(live) | decided by |",
            "|---|---|---|---|---|",
        ]
        for s in report.stills:
            r = s.result
            verdict = "no face" if r is None else r.outcome
            score = "-" if r is None or r.score is None else f"{r.score:.3f}"
            drivers = "-" if r is None or not r.drivers else ", ".join(r.drivers)
            parts.append(f"| {s.label} | `{s.source}` | {verdict} | {score} | {drivers} |")
        parts.append("")
    parts += ["Known limits, not measured here:\n", *LIVENESS_LIMITS, ""]
    return Section("liveness", "\n".join(parts))


# ----------------------------------------------------------------------------- the page


def render(sections: Sequence[Section], title: str = "FaceGate evaluation") -> str:
    by_key = {s.key: s for s in sections}
    if len(by_key) != len(sections):
        raise ValueError("two sections with the same key")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"# {title}\n", f"Generated {stamp} by `facegate eval report`.\n"]
    for key in SECTION_ORDER:
        if key in by_key:
            out.append(f"## {SECTION_TITLES[key]}\n\n{by_key[key].body.rstrip()}\n")
    missing = [SECTION_TITLES[k] for k in SECTION_ORDER if k not in by_key]
    if missing:
        out.append("Not in this report: " + ", ".join(missing) + ".\n")
    return "\n".join(out)


def write_report(out_dir: Path, sections: Sequence[Section]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / REPORT_NAME
    path.write_text(render(sections), encoding="utf-8")
    return path
