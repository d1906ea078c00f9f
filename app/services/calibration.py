"""Calibration on the live gallery: templates from SQL, math from app.gallery.calibration.

The impostor distances (the expensive part) are cached by gallery version, so asking again
costs a version read plus the curves; a change made through any replica bumps the version and
the next request recomputes. One computation runs at a time; callers run it in a thread.

The service also owns the 1:K threshold in force (:attr:`CalibrationService.tau`): the operator's
pinned τ, or else the τ calibrated for the stranger false-accept target at the current number of
enrolled people (``applied_tau``: the stricter of the gallery's own estimate and the encoder's
dev-data prior from the manifest). It is recomputed after every gallery change, in the
background; until a recomputation finishes, the previous τ stays in force.
"""

from __future__ import annotations

import csv
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.gallery.calibration import (
    DEFAULT_GRID,
    DEFAULT_MAX_COMPARISONS,
    AppliedTau,
    CalibrationReport,
    ImpostorSample,
    TailModel,
    applied_tau,
    applied_tau_1to1,
    calibrate,
    impostor_sample,
    stranger_sample,
)
from app.gallery.metric import Metric
from app.store import queries
from app.store.models import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GalleryCalibration:
    gallery_version: int
    model_version: str
    report: CalibrationReport
    applied: AppliedTau  # the 1:K tau in force for this gallery version
    applied_1to1: AppliedTau  # the 1:1 (claim) tau in force for this gallery version
    names: dict[int, str]  # people named in report.look_alikes
    computed_at: datetime
    compute_ms: float  # the impostor distances' computation (0 when they came from the cache)


class CalibrationService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        model_version: str,
        dim: int,
        *,
        tau: float | None,
        target_far: float,
        metric: Metric = "l2",
        prior: TailModel | None = None,
        reference_tau: float | None = None,
        grid: tuple[float, ...] = DEFAULT_GRID,
        max_comparisons: int = DEFAULT_MAX_COMPARISONS,
        target_fmr_1to1: float = 1e-5,
    ) -> None:
        self.sessions = sessions
        self.model_version = model_version
        self.dim = dim
        self.pinned_tau = tau
        self.target_far = target_far
        self.metric: Metric = metric
        self.prior = prior
        self.reference_tau = reference_tau
        self.grid = grid
        self.max_comparisons = max_comparisons
        self._compute_lock = threading.Lock()
        self._sample: tuple[int, ImpostorSample] | None = None
        self._state_lock = threading.Lock()
        self._latest: GalleryCalibration | None = None
        self._refreshing = False
        self._warned_version: int | None = None
        self._applied: AppliedTau | None = None
        self.target_fmr_1to1 = target_fmr_1to1
        self._applied_1to1: AppliedTau | None = None

    @property
    def tau(self) -> float:
        """The 1:K threshold in force (pinned, or calibrated for the current gallery)."""
        if self.pinned_tau is not None:
            return self.pinned_tau
        with self._state_lock:
            applied = self._applied
        if applied is None:
            raise RuntimeError("calibration has not run yet: call compute() at start-up")
        return applied.tau

    @property
    def applied(self) -> AppliedTau | None:
        with self._state_lock:
            return self._applied

    @property
    def tau_1to1(self) -> float:
        """The 1:1 (verification, claim) threshold in force: FACEGATE_TARGET_FMR_1TO1 per claim,
        independent of the number of enrolled people; recomputed with the 1:K one."""
        with self._state_lock:
            applied = self._applied_1to1
        if applied is None:
            raise RuntimeError("calibration has not run yet: call compute() at start-up")
        return applied.tau

    @property
    def applied_1to1(self) -> AppliedTau | None:
        with self._state_lock:
            return self._applied_1to1

    def compute(
        self, target_far: float | None = None, strangers: NDArray[np.float32] | None = None
    ) -> GalleryCalibration:
        """Calibrate the current gallery (blocking: call it in a thread)."""
        target = self.target_far if target_far is None else target_far
        with self._compute_lock, self.sessions() as session:
            version = queries.gallery_version(session)
            started = time.perf_counter()
            computed_ms = 0.0
            arrays: queries.TemplateArrays | None = None
            cached = self._sample
            if cached is None or cached[0] != version or strangers is not None:
                version, arrays = queries.gallery_snapshot(session, self.model_version, self.dim)
            if cached is not None and cached[0] == version:
                sample = cached[1]
            else:
                sample = self._sample_of(version, arrays)
                computed_ms = (time.perf_counter() - started) * 1000.0
            reference = None
            if strangers is not None and arrays is not None:
                reference = stranger_sample(strangers, arrays.person_ids, arrays.vectors, self.metric)
            # The τ in force is always the one for the configured target; a report for another
            # target only changes the recommendations.
            applied = applied_tau(
                sample, self.target_far, self.prior, pinned=self.pinned_tau, reference=self.reference_tau
            )
            applied_1to1 = applied_tau_1to1(
                sample, self.target_fmr_1to1, self.prior, reference=self.reference_tau
            )
            report = calibrate(
                sample, tau=applied.tau, target_far=target, strangers=reference, grid=self.grid
            )
            names = self._names(session, report)
        result = GalleryCalibration(
            version, self.model_version, report, applied, applied_1to1, names, utcnow(), computed_ms
        )
        if target_far is None and strangers is None:
            self._publish(result)
        return result

    def _sample_of(self, version: int, arrays: queries.TemplateArrays | None) -> ImpostorSample:
        if arrays is None:
            raise RuntimeError(f"no gallery snapshot for version {version}")
        sample = impostor_sample(
            arrays.ids,
            arrays.person_ids,
            arrays.vectors,
            max_comparisons=self.max_comparisons,
            metric=self.metric,
        )
        self._sample = (version, sample)
        return sample

    @staticmethod
    def _names(session: Session, report: CalibrationReport) -> dict[int, str]:
        names: dict[int, str] = {}
        for pair in report.look_alikes:
            for pid in (pair.person_a, pair.person_b):
                if pid not in names:
                    person = queries.get_person(session, pid)
                    names[pid] = person.name if person is not None else ""
        return names

    def _publish(self, result: GalleryCalibration) -> None:
        """Keep the result for /readyz and log the warning once per gallery version that has it."""
        report = result.report
        with self._state_lock:
            previous = self._latest
            self._latest = result
            changed = self._applied is None or self._applied.tau != result.applied.tau
            self._applied = result.applied
            self._applied_1to1 = result.applied_1to1
            warn = report.warning is not None and self._warned_version != result.gallery_version
            if warn:
                self._warned_version = result.gallery_version
        if changed and self.pinned_tau is None:
            a = result.applied
            if a.source == "reference":
                log.warning(
                    "no calibration prior in the manifest and too few enrolled people to calibrate: "
                    "using the model's published operating point tau %.4f; run "
                    "`python models/calibrate_prior.py` and `facegate models build`",
                    a.tau,
                )
            log.info(
                "tau %.4f in force (%s) for stranger FAR %g at K=%d",
                a.tau,
                a.source,
                a.target_far,
                a.people,
                extra={"gallery_version": result.gallery_version},
            )
        if warn:
            log.warning(
                "calibration: %s",
                report.warning,
                extra={
                    "people": report.people,
                    "max_people_at_tau": report.max_people_at_tau,
                    "gallery_version": result.gallery_version,
                },
            )
        elif report.warning is None and previous is not None and previous.report.warning is not None:
            log.info("calibration: tau=%g supports the gallery again (%d people)", report.tau, report.people)

    def latest(self) -> GalleryCalibration | None:
        with self._state_lock:
            return self._latest

    def refresh_in_background(self, gallery_version: int) -> bool:
        """Start recomputing unless the latest result is for this version or a refresh runs.

        True when a refresh was started.
        """
        with self._state_lock:
            latest = self._latest
            if self._refreshing or (latest is not None and latest.gallery_version == gallery_version):
                return False
            self._refreshing = True
        threading.Thread(target=self._refresh, name="calibration", daemon=True).start()
        return True

    def _refresh(self) -> None:
        try:
            self.compute()
        # Advice only: a failed refresh is logged and retried on the next readiness probe.
        except (SQLAlchemyError, RuntimeError, ValueError, MemoryError):
            log.exception("calibration refresh failed")
        finally:
            with self._state_lock:
                self._refreshing = False


def read_stranger_files(csv_path: Path) -> list[Path]:
    """The ``file`` column of a CSV, as paths relative to the CSV's folder."""
    with csv_path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "file" not in reader.fieldnames:
            raise ValueError(f"{csv_path} has no 'file' column")
        return [csv_path.parent / row["file"] for row in reader if row["file"]]


def report_lines(result: GalleryCalibration, *, curve_step: float = 0.05) -> list[str]:
    """A plain-text report for the command line."""
    r = result.report
    a = result.applied
    lines = [
        f"gallery version {result.gallery_version}: {r.people} people, {r.templates} templates "
        f"({result.model_version})",
        f"tau in force: {a.tau:.4f} ({a.source}; stranger FAR target {a.target_far:g} at K={a.people})",
        f"1:1 (claim) tau in force: {result.applied_1to1.tau:.4f} ({result.applied_1to1.source}; "
        f"FMR target {result.applied_1to1.target_far:g} per claim, any K)",
        f"impostor comparisons (template to other person): {r.comparisons:,}"
        + ("" if r.complete else f" from a deterministic subset of {r.probes:,} templates"),
    ]
    if r.model is None:
        lines.append("too few comparisons to model the tail: no estimate")
        return lines
    m = r.model
    lines.append(
        f"tail model: normal mu={m.mu:.4f} sigma={m.sigma:.4f} fitted to the lowest {m.tail_fraction:.1%} "
        f"({m.points:,} comparisons, up to {m.upper:.3f}), probit R^2 {m.r2:.4f}"
    )
    k_max = "unbounded" if r.max_people_at_tau is None else f"{r.max_people_at_tau:,}"
    lines.append(
        f"at tau={r.tau:.3f}: FMR {r.fmr_at_tau:.3g} per comparison, predicted stranger FAR "
        f"{r.far_at_tau:.3g} per attempt at K={r.people}; largest K for FAR {r.target_far:g}: {k_max}"
    )
    if r.strangers is not None:
        s = r.strangers
        lines.append(
            f"reference strangers: {s.strangers}; observed FAR at tau={r.tau:.3f}: "
            f"{s.observed_far_at_tau:.3g} ({s.matches_at_tau} of {s.strangers}), predicted "
            f"{s.predicted_far_at_tau:.3g}; their per-comparison FMR {s.fmr_empirical_at_tau:.3g} "
            f"over {s.comparisons:,} comparisons"
        )
    lines.append("recommended tau (largest meeting the target at this K):")
    lines.append("  target FAR  FMR/comparison  tau     gallery  strangers")
    for rec in r.recommendations:
        mark = "  <- FACEGATE_TARGET_STRANGER_FAR" if rec.target_far == r.target_far else ""
        enough = "" if rec.strangers_sufficient in (None, True) else " (too few strangers to show it)"
        lines.append(
            f"  {rec.target_far:<10g}  {rec.fmr_per_comparison:<14.3g}  {_fmt(rec.tau)}   "
            f"{_fmt(rec.tau_gallery)}    {_fmt(rec.tau_strangers)}{enough}{mark}"
        )
    lines.append("curve: tau, impostor matches, FMR empirical, FMR model, predicted FAR, stranger FAR seen")
    for p in r.curve:
        if abs(p.tau / curve_step - round(p.tau / curve_step)) < 1e-6 or p.tau == r.tau:
            model = f"{p.fmr_model:.3g}" if p.fmr_model is not None else "-"
            observed = f"{p.stranger_far:.3g}" if p.stranger_far is not None else "-"
            lines.append(
                f"  {p.tau:.2f}  {p.matches:>9,}  {p.fmr_empirical:<9.3g}  {model:<9}  "
                f"{p.far_attempt:<9.3g}  {observed}"
            )
    if r.look_alikes:
        lines.append("closest different people (second factor or a stricter threshold):")
        for pair in r.look_alikes:
            below = "  below tau" if pair.distance < r.tau else ""
            lines.append(
                f"  {pair.distance:.3f}  #{pair.person_a} {result.names.get(pair.person_a, '')}  /  "
                f"#{pair.person_b} {result.names.get(pair.person_b, '')}{below}"
            )
    if r.warning:
        lines.append(f"WARNING: {r.warning}")
    return lines


def _fmt(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "  -  "
