"""PNG charts for the evaluation reports, drawn with OpenCV (already a dependency; no matplotlib).

Two kinds: line charts (ROC, DET; either axis linear or log10) and overlaid histograms
(genuine vs impostor distances). Everything (axes, ticks, grid, labels, legend) is drawn with
``cv2.line``/``cv2.putText``; the y-axis label is drawn on its own strip and rotated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from app.evaluation.metrics import OperatingPoint, Tradeoff

Color = tuple[int, int, int]  # BGR

BLUE: Color = (180, 119, 31)
ORANGE: Color = (14, 127, 255)
GREEN: Color = (44, 160, 44)
RED: Color = (40, 39, 214)
PURPLE: Color = (189, 103, 148)
PALETTE: tuple[Color, ...] = (BLUE, ORANGE, GREEN, RED, PURPLE)

_BLACK: Color = (0, 0, 0)
_GRID: Color = (225, 225, 225)
_WHITE: Color = (255, 255, 255)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_SMALL = 0.45
_MEDIUM = 0.55
_WIDTH, _HEIGHT = 860, 620
_LEFT, _RIGHT, _TOP, _BOTTOM = 90, 30, 50, 70


@dataclass(frozen=True)
class Axis:
    label: str
    lo: float
    hi: float
    log: bool = False

    def __post_init__(self) -> None:
        if not self.hi > self.lo or (self.log and self.lo <= 0.0):
            raise ValueError(f"bad axis range [{self.lo}, {self.hi}] (log={self.log})")

    def fraction(self, values: NDArray[np.float64]) -> NDArray[np.float64]:
        """0 at ``lo``, 1 at ``hi``; values outside are clipped to the frame."""
        v = np.clip(np.asarray(values, dtype=np.float64), self.lo, self.hi)
        if self.log:
            out = (np.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        else:
            out = (v - self.lo) / (self.hi - self.lo)
        return np.asarray(out, dtype=np.float64)

    def ticks(self) -> list[tuple[float, str, bool]]:
        """(value, label, major) for the tick marks: decades (and 2..9 minors) on a log axis."""
        if self.log:
            out: list[tuple[float, str, bool]] = []
            for k in range(math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi)) + 1):
                for m in range(1, 10):
                    v = m * 10.0**k
                    if self.lo * (1 - 1e-9) <= v <= self.hi * (1 + 1e-9):
                        out.append((v, _decade_label(k) if m == 1 else "", m == 1))
            return out
        step = _nice_step((self.hi - self.lo) / 6.0)
        first = math.ceil(self.lo / step - 1e-9)
        last = math.floor(self.hi / step + 1e-9)
        decimals = max(0, -math.floor(math.log10(step) + 1e-9))
        return [(i * step, f"{i * step:.{decimals}f}", True) for i in range(first, last + 1)]


@dataclass(frozen=True)
class Series:
    label: str
    x: NDArray[np.float64]
    y: NDArray[np.float64]
    color: Color = BLUE


@dataclass(frozen=True)
class Marker:
    """A labelled point (an operating point) drawn as a circle."""

    label: str
    x: float
    y: float
    color: Color = _BLACK


@dataclass(frozen=True)
class VLine:
    label: str
    x: float
    color: Color = _BLACK


@dataclass
class _Canvas:
    title: str
    x: Axis
    y: Axis
    image: NDArray[np.uint8] = field(init=False)

    def __post_init__(self) -> None:
        self.image = np.full((_HEIGHT, _WIDTH, 3), 255, dtype=np.uint8)
        self.x0, self.x1 = _LEFT, _WIDTH - _RIGHT
        self.y0, self.y1 = _HEIGHT - _BOTTOM, _TOP  # y grows downwards in the image

    def points(self, x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.int32]:
        px = self.x0 + self.x.fraction(x) * (self.x1 - self.x0)
        py = self.y0 - self.y.fraction(y) * (self.y0 - self.y1)
        return np.stack([np.round(px), np.round(py)], axis=1).astype(np.int32)

    def frame(self) -> None:
        img = self.image
        for value, label, major in self.x.ticks():
            ((px, _),) = self.points(np.array([value]), np.array([self.y.lo]))
            if major:
                cv2.line(img, (int(px), self.y1), (int(px), self.y0), _GRID, 1)
            cv2.line(img, (int(px), self.y0), (int(px), self.y0 + (6 if major else 3)), _BLACK, 1)
            if label:
                _text(img, label, (int(px), self.y0 + 22), _SMALL, center=True)
        for value, label, major in self.y.ticks():
            ((_, py),) = self.points(np.array([self.x.lo]), np.array([value]))
            if major:
                cv2.line(img, (self.x0, int(py)), (self.x1, int(py)), _GRID, 1)
            cv2.line(img, (self.x0 - (6 if major else 3), int(py)), (self.x0, int(py)), _BLACK, 1)
            if label:
                (w, h), _ = cv2.getTextSize(label, _FONT, _SMALL, 1)
                _text(img, label, (self.x0 - 10 - w, int(py) + h // 2), _SMALL)
        cv2.rectangle(img, (self.x0, self.y1), (self.x1, self.y0), _BLACK, 1)
        _text(img, self.title, (_WIDTH // 2, 30), 0.65, center=True, thickness=2)
        _text(img, self.x.label, ((self.x0 + self.x1) // 2, _HEIGHT - 20), _MEDIUM, center=True)
        self._y_label()

    def _y_label(self) -> None:
        (w, h), base = cv2.getTextSize(self.y.label, _FONT, _MEDIUM, 1)
        strip = np.full((h + base + 4, w + 4, 3), 255, dtype=np.uint8)
        _text(strip, self.y.label, (2, h + 2), _MEDIUM)
        rotated = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
        top = max(0, (self.y0 + self.y1) // 2 - rotated.shape[0] // 2)
        left = 8
        rh, rw = min(rotated.shape[0], _HEIGHT - top), rotated.shape[1]
        self.image[top : top + rh, left : left + rw] = rotated[:rh]

    def polyline(self, series: Series, thickness: int = 2) -> None:
        keep = np.isfinite(series.x) & np.isfinite(series.y)
        pts = self.points(series.x[keep], series.y[keep])
        if len(pts) >= 2:
            cv2.polylines(self.image, [pts.reshape(-1, 1, 2)], False, series.color, thickness, cv2.LINE_AA)

    def marker(self, marker: Marker) -> None:
        ((px, py),) = self.points(np.array([marker.x]), np.array([marker.y]))
        cv2.circle(self.image, (int(px), int(py)), 5, marker.color, 2, cv2.LINE_AA)

    def vline(self, line: VLine) -> None:
        ((px, _),) = self.points(np.array([line.x]), np.array([self.y.lo]))
        for y in range(self.y1, self.y0, 12):  # dashed
            cv2.line(self.image, (int(px), y), (int(px), min(y + 6, self.y0)), line.color, 2, cv2.LINE_AA)

    def legend(self, entries: Sequence[tuple[str, Color, str]], corner: str) -> None:
        """entries: (label, colour, "line" | "circle" | "dash"); corner: "tl", "tr", "bl" or "br"."""
        if not entries:
            return
        sizes = [cv2.getTextSize(label, _FONT, _SMALL, 1)[0] for label, _, _ in entries]
        row = 22
        width = 50 + max(w for w, _ in sizes)
        height = row * len(entries) + 8
        left = self.x0 + 10 if corner in ("tl", "bl") else self.x1 - 10 - width
        top = self.y1 + 10 if corner in ("tl", "tr") else self.y0 - 10 - height
        cv2.rectangle(self.image, (left, top), (left + width, top + height), _WHITE, -1)
        cv2.rectangle(self.image, (left, top), (left + width, top + height), (150, 150, 150), 1)
        for i, (label, color, kind) in enumerate(entries):
            cy = top + 15 + i * row
            if kind == "circle":
                cv2.circle(self.image, (left + 22, cy), 5, color, 2, cv2.LINE_AA)
            elif kind == "dash":
                cv2.line(self.image, (left + 8, cy), (left + 18, cy), color, 2, cv2.LINE_AA)
                cv2.line(self.image, (left + 26, cy), (left + 36, cy), color, 2, cv2.LINE_AA)
            else:
                cv2.line(self.image, (left + 8, cy), (left + 36, cy), color, 2, cv2.LINE_AA)
            _text(self.image, label, (left + 44, cy + 5), _SMALL)

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), self.image):
            raise OSError(f"cannot write {path}")
        return path


def _text(
    img: NDArray[np.uint8],
    text: str,
    org: tuple[int, int],
    scale: float,
    *,
    center: bool = False,
    thickness: int = 1,
) -> None:
    x, y = org
    if center:
        (w, _), _ = cv2.getTextSize(text, _FONT, scale, thickness)
        x -= w // 2
    cv2.putText(img, text, (x, y), _FONT, scale, _BLACK, thickness, cv2.LINE_AA)


def _decade_label(k: int) -> str:
    return {0: "1", 1: "10", -1: "0.1", -2: "0.01"}.get(k, f"1e{k}")


def _nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least ``raw``."""
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 5.0, 10.0):
        if m * power >= raw * (1 - 1e-9):
            return m * power
    return 10.0 * power


def log_floor(smallest_positive: float) -> float:
    """The decade at or below a value: the lower end of a log axis that must show it."""
    return 10.0 ** math.floor(math.log10(smallest_positive) + 1e-9)


def false_accept_floor(curves: Sequence[tuple[str, Tradeoff]]) -> float:
    """Lower end of a log false-accept axis: half a false accept below the smallest non-zero rate,
    so that zero stays apart from it."""
    return log_floor(0.5 / max(c.negatives for _, c in curves))


def line_chart(
    path: Path,
    title: str,
    *,
    x: Axis,
    y: Axis,
    series: Sequence[Series],
    markers: Sequence[Marker] = (),
    legend_corner: str = "br",
) -> Path:
    """ROC / DET style chart; values outside an axis (e.g. 0 on a log axis) sit on its edge."""
    canvas = _Canvas(title, x, y)
    canvas.frame()
    for s in series:
        canvas.polyline(s)
    for m in markers:
        canvas.marker(m)
    entries = [(s.label, s.color, "line") for s in series] + [(m.label, m.color, "circle") for m in markers]
    canvas.legend(entries, legend_corner)
    return canvas.save(path)


def histogram_chart(
    path: Path,
    title: str,
    *,
    x_label: str,
    groups: Sequence[tuple[str, NDArray[np.float64], Color]],
    bins: int = 60,
    lines: Sequence[VLine] = (),
) -> Path:
    """Overlaid density histograms of several score sets (finite values only) on common bins."""
    finite = [np.asarray(v, dtype=np.float64)[np.isfinite(v)] for _, v, _ in groups]
    every = np.concatenate([f for f in finite if len(f)] or [np.array([0.0, 1.0])])
    lo, hi = float(every.min()), float(every.max())
    for line in lines:
        lo, hi = min(lo, line.x), max(hi, line.x)
    if hi <= lo:
        hi = lo + 1.0
    pad = 0.03 * (hi - lo)
    edges = np.linspace(lo - pad, hi + pad, bins + 1)
    densities = [np.histogram(f, bins=edges, density=True)[0] if len(f) else np.zeros(bins) for f in finite]
    top = max(float(max((d.max() for d in densities), default=0.0)), 1e-9) * 1.08
    canvas = _Canvas(title, Axis(x_label, float(edges[0]), float(edges[-1])), Axis("density", 0.0, top))
    canvas.frame()
    overlay = canvas.image.copy()
    outlines = []
    for (label, _, color), density in zip(groups, densities, strict=True):
        xs = np.repeat(edges, 2)[1:-1]
        ys = np.repeat(density, 2)
        xs = np.concatenate([[edges[0]], xs, [edges[-1]]])
        ys = np.concatenate([[0.0], ys, [0.0]])
        pts = canvas.points(xs, ys)
        cv2.fillPoly(overlay, [pts.reshape(-1, 1, 2)], color, cv2.LINE_AA)
        outlines.append(Series(label, xs, ys, color))
    canvas.image = np.asarray(cv2.addWeighted(overlay, 0.25, canvas.image, 0.75, 0.0), dtype=np.uint8)
    for s in outlines:
        canvas.polyline(s, thickness=1)
    for line in lines:
        canvas.vline(line)
    entries = [(s.label, s.color, "line") for s in outlines] + [(v.label, v.color, "dash") for v in lines]
    canvas.legend(entries, "tr")
    return canvas.save(path)


def roc_chart(
    path: Path,
    title: str,
    curves: Sequence[tuple[str, Tradeoff]],
    points: Sequence[tuple[str, OperatingPoint]] = (),
) -> Path:
    """TAR against FAR, FAR on a log axis down to one false accept among the negatives."""
    x_lo = false_accept_floor(curves)
    visible = [c.true_accept[c.false_accept >= x_lo] for _, c in curves]
    lowest = min((float(v.min()) for v in visible if len(v)), default=0.0)
    y_lo = max(0.0, math.floor(lowest * 20.0 - 1e-9) / 20.0)
    series = [
        Series(label, c.false_accept, c.true_accept, PALETTE[i % len(PALETTE)])
        for i, (label, c) in enumerate(curves)
    ]
    markers = [
        Marker(label, max(p.false_accept, x_lo), p.true_accept, PALETTE[(i + len(curves)) % len(PALETTE)])
        for i, (label, p) in enumerate(points)
    ]
    return line_chart(
        path,
        title,
        x=Axis("FAR (impostor pairs accepted)", x_lo, 1.0, log=True),
        y=Axis("TAR (genuine pairs accepted)", y_lo, 1.0 if y_lo < 1.0 else 1.05),
        series=series,
        markers=markers,
    )


def det_chart(
    path: Path,
    title: str,
    curves: Sequence[tuple[str, Tradeoff]],
    points: Sequence[tuple[str, OperatingPoint]] = (),
) -> Path:
    """FNIR against FPIR, both on log axes (NIST FRVT 1:N style); zeros sit on the axis edge."""
    x_lo = false_accept_floor(curves)
    fnir = np.concatenate([c.false_reject[c.false_reject > 0] for _, c in curves] + [np.array([1.0])])
    y_lo = log_floor(min(float(fnir.min()), 1.0 / max(c.positives for _, c in curves)))
    series = [
        Series(label, c.false_accept, c.false_reject, PALETTE[i % len(PALETTE)])
        for i, (label, c) in enumerate(curves)
    ]
    markers = [
        Marker(
            label,
            max(p.false_accept, x_lo),
            max(p.false_reject, y_lo),
            PALETTE[(i + len(curves)) % len(PALETTE)],
        )
        for i, (label, p) in enumerate(points)
    ]
    return line_chart(
        path,
        title,
        x=Axis("FPIR (non-enrolled searches matched)", x_lo, 1.0, log=True),
        y=Axis("FNIR (enrolled searches missed at rank 1)", y_lo, 1.0, log=True),
        series=series,
        markers=markers,
        legend_corner="bl",
    )
