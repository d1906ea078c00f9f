"""Evaluation results as text: the lines the CLI prints, the PNG charts, one Markdown report.

The report is a list of :class:`Section` objects, each made by a function that takes result
objects and the report directory (where it draws its charts), and returns Markdown whose image
links are relative to that directory. :func:`render` puts sections in :data:`SECTION_ORDER`
whatever order they come in, and names the slots with no section, so a partial report says
what it lacks.

Slots in the report and who fills them:

- ``verification``: :func:`verification_section` (``PairsReport``, 1:1 on image pairs)
- ``openset``: :func:`openset_section` (``OpenSetResult``, 1:N at the door)
- ``calibration``: τ calibration (not here yet): a ``calibration_section(result, out_dir)``
- ``pair_classifier``: the learned pair classifier vs the distance (not here yet)
- ``liveness``: presentation-attack detection (not here yet)

A new section is a function ``(result objects, out_dir: Path) -> Section`` with its ``key`` one
of these; the ``eval report`` command collects the ones it can compute.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from app.evaluation.metrics import OperatingPoint, operating_point
from app.evaluation.openset import FPIR_TARGETS, OpenSetResult
from app.evaluation.pairs import FAR_TARGETS, PairsReport
from app.evaluation.plots import BLUE, ORANGE, RED, VLine, det_chart, histogram_chart, roc_chart

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
        for far in FAR_TARGETS:
            p = report.tar_at_far(far)
            lines.append(
                f"TAR at FAR={far:g}: {pct(p.true_accept)} (tau={_tau(p)}, FAR {pct(p.false_accept, 3)}, "
                f"{_allowed(report.pairs - same, far)} of {report.pairs - same} impostor pairs allowed)"
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
        f"operating point at tau={result.tau:.3f}: FPIR {pct(at.false_accept)}, FNIR {pct(at.false_reject)}",
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
