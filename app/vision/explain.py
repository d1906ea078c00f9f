"""Occlusion sensitivity (Zeiler & Fergus, 2014) for one probe face against one reference face.

A grey square slides over the probe's aligned face; every occluded copy is re-encoded (all of them
in batched encoder runs) and its distance to the reference is compared with the unoccluded
distance. Where occluding raises the distance, that part of the probe made the two faces look
alike; where it lowers the distance, that part made them look different.

**The frame.** The map lives on the chip of the profile's first encoder (SFace's 112x112 chip for
``sface`` and ``fusion``, dlib's 150x150 chip for ``dlib``): what the encoder sees, aligned so
that eyes, nose and mouth sit at fixed places, whatever the photo.

**The fusion's two chips.** The fusion encodes each face twice: SFace on its chip (YuNet's five
points), dlib's ResNet on dlib's chip (dlib's five points). Both are similarity warps of the same
photo, so one square on the SFace chip is one rotated square of the photo, which is again a square
(scaled, rotated) on dlib's chip. Each patch is therefore occluded on *both* chips, at the same
place of the face: the result is what occluding that part of the face itself does to the fused
distance, as if the grey patch had been on the photo before alignment (only the patch's edge
pixels differ, by the warp's interpolation), without re-running alignment per patch. Landmarks
stay those of the unoccluded face: the map shows what the encoders use, not how an occluder
would move the alignment. The fused score is ``a (1 - cos) + b L2^2``, a sum, so its map is
exactly the sum of an SFace map and a dlib map; both are drawn too.

Pure numpy/OpenCV and the pipeline's own encoders; CPU-heavy (about 100 encodings per encoder).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from numpy.typing import NDArray

from app.gallery.metric import from_squared_l2
from app.vision.align import extract_chip, face_chip_details
from app.vision.align_sface import similarity_matrix
from app.vision.pipeline import Face, FacePipeline, StageTimer

Affine = NDArray[np.float64]  # 2x3, maps (x, y, 1) -> (x', y')

DEFAULT_GRID = 8  # patch positions per side: 64 occluded copies per encoder
DEFAULT_PATCH_FRACTION = 0.25  # patch side / chip side (28 px of SFace's 112, 38 of dlib's 150)
DEFAULT_FILL = 128  # the grey of the occluder (each channel)
MAX_GRID = 32

# Figure layout (pixels): panels of PANEL x PANEL with a margin between them, a title line above,
# a caption line under each panel, and a colour bar under the row.
PANEL = 224
MARGIN = 8
TITLE_H = 30
CAPTION_H = 22
BAR_H = 44


class ExplainError(ValueError):
    """A pair that cannot be explained (no face in one image): ``code`` says which case."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class AlignedFace:
    """One face as the profile's encoders see it: their chips and the photo -> chip transforms."""

    face: Face
    chips: tuple[NDArray[np.uint8], ...]  # one per encoder; chips[0] is the map's frame
    to_chip: tuple[Affine, ...]  # image -> chip, one per encoder

    @property
    def frame(self) -> NDArray[np.uint8]:
        return self.chips[0]

    def box_in_frame(self) -> NDArray[np.float64]:
        """The detector's face box as a (4, 2) polygon in frame (first chip) coordinates."""
        left, top, right, bottom = self.face.box
        corners = np.array(
            [[left, top], [right + 1, top], [right + 1, bottom + 1], [left, bottom + 1]], float
        )
        return map_corners(self.to_chip[0], corners)


@dataclass(frozen=True)
class OcclusionMap:
    """Mean change of the distance to the reference over the patches covering each frame pixel."""

    delta: NDArray[np.float32]  # (H, W) on the frame; + means occluding there raises the distance
    parts: dict[str, NDArray[np.float32]]  # the fusion's per-encoder maps (they sum to ``delta``)
    base_distance: float  # unoccluded probe to reference, in the profile's metric
    patch_px: int
    grid: int
    patch_deltas: NDArray[np.float32]  # (grid, grid): each patch position's own change
    encodings: int = field(default=0)  # occluded copies encoded, per encoder

    def mass_inside(self, polygon: NDArray[np.float64]) -> float:
        """Share of the map's positive mass (occluding raises the distance) inside ``polygon``."""
        positive = np.maximum(self.delta, 0.0).astype(np.float64)
        total = float(positive.sum())
        if total <= 0.0:
            return 0.0
        return float(positive[polygon_mask(polygon, self.delta.shape)].sum() / total)


@dataclass(frozen=True)
class Explanation:
    probe: AlignedFace
    reference: AlignedFace
    occlusion: OcclusionMap
    profile: str
    metric: str


def _apply(m: Affine, points: NDArray[np.float64]) -> NDArray[np.float64]:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    out: NDArray[np.float64] = pts @ m[:, :2].T + m[:, 2]
    return out


def map_corners(m: Affine, points: NDArray[np.float64]) -> NDArray[np.float64]:
    """Points in pixel-corner coordinates (pixel x covers [x, x + 1)) through a warp that, as
    OpenCV's, maps pixel centres (pixel x at x): shift to centres, map, shift back."""
    return _apply(m, np.asarray(points, dtype=np.float64) - 0.5) + 0.5


def _invert(m: Affine) -> Affine:
    return np.asarray(cv2.invertAffineTransform(np.asarray(m, dtype=np.float64)), dtype=np.float64)


def _compose(outer: Affine, inner: Affine) -> Affine:
    """outer(inner(p)) as one 2x3 matrix."""
    out = np.empty((2, 3), dtype=np.float64)
    out[:, :2] = outer[:, :2] @ inner[:, :2]
    out[:, 2] = outer[:, :2] @ inner[:, 2] + outer[:, 2]
    return out


def dlib_chip_transform(landmarks: NDArray[np.float64], size: int, padding: float) -> Affine:
    """Image -> dlib chip, from the rotated rectangle that ``extract_chip`` samples (its corners
    are the chip's corners: dlib's extract_image_chip)."""
    details = face_chip_details(landmarks, size, padding)
    left, top, right, bottom = details.rect
    cx, cy = (left + right) / 2.0, (top + bottom) / 2.0
    s, c = math.sin(details.angle), math.cos(details.angle)

    def rot(x: float, y: float) -> tuple[float, float]:
        dx, dy = x - cx, y - cy
        return (c * dx - s * dy + cx, s * dx + c * dy + cy)

    image_pts = np.array([rot(left, top), rot(right, top), rot(left, bottom)], dtype=np.float32)
    chip_pts = np.array([[0, 0], [details.cols - 1, 0], [0, details.rows - 1]], dtype=np.float32)
    return np.asarray(cv2.getAffineTransform(image_pts, chip_pts), dtype=np.float64)


def align_face(pipeline: FacePipeline, rgb: NDArray[np.uint8], face: Face) -> AlignedFace:
    """The chips the profile's encoders see for ``face`` of ``rgb`` and where they come from."""
    dlib_size = 150
    if pipeline.profile.detector == "yunet":
        if face.points is None:
            raise ValueError("a YuNet profile's face carries its alignment points")
        chips = [face.chip]
        transforms = [similarity_matrix(face.points)]
        if pipeline.dlib_encoder is not None:
            chips.append(extract_chip(rgb, face.landmarks, size=dlib_size, padding=pipeline.chip_padding))
            transforms.append(dlib_chip_transform(face.landmarks, dlib_size, pipeline.chip_padding))
        return AlignedFace(face, tuple(chips), tuple(transforms))
    to_chip = dlib_chip_transform(face.landmarks, face.chip.shape[0], pipeline.chip_padding)
    return AlignedFace(face, (face.chip,), (to_chip,))


def largest_face(pipeline: FacePipeline, rgb: NDArray[np.uint8], image: str) -> AlignedFace:
    """The largest face of an RGB image, aligned (as /v1/verify chooses by default)."""
    faces = pipeline.faces_rgb(rgb)
    if not faces:
        raise ExplainError("no_face", f"no face was found in the {image} image")
    face = max(faces, key=lambda f: (f.box[2] - f.box[0] + 1) * (f.box[3] - f.box[1] + 1))
    return align_face(pipeline, rgb, face)


def largest_chips(pipeline: FacePipeline, rgb: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], ...] | None:
    """The largest face's chips, one per encoder of the profile, without encoding (the service's
    own detection, landmarks and alignment); None when no face is found."""
    located = pipeline._locate(rgb, StageTimer())  # the pipeline's stages short of the encoders
    if not located.detections:
        return None
    areas = [(d.box[2] - d.box[0] + 1) * (d.box[3] - d.box[1] + 1) for d in located.detections]
    i = int(np.argmax(areas))
    if located.dlib_chips:
        return located.chips[i], located.dlib_chips[i]
    return (located.chips[i],)


def polygon_mask(polygon: NDArray[np.float64], shape: tuple[int, ...]) -> NDArray[np.bool_]:
    """Pixels (centres) inside a convex polygon given in pixel-corner coordinates."""
    mask = np.zeros(shape[:2], dtype=np.uint8)
    # Pixel (x, y) covers [x, x+1): its centre is x + 0.5, so shift the polygon by -0.5; 4 bits subpixel.
    pts = np.round((np.asarray(polygon, dtype=np.float64) - 0.5) * 16).astype(np.int32)
    cv2.fillConvexPoly(mask, pts, 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _fill(chip: NDArray[np.uint8], polygon: NDArray[np.float64], fill: int) -> None:
    """Grey the convex polygon (pixel-corner coordinates) on the chip, in place."""
    pts = np.round((np.asarray(polygon, dtype=np.float64) - 0.5) * 16).astype(np.int32)
    cv2.fillConvexPoly(chip, pts, (fill, fill, fill), lineType=cv2.LINE_8, shift=4)


def patch_squares(frame_size: int, grid: int, patch_px: int) -> NDArray[np.float64]:
    """(grid * grid, 4, 2) squares of side ``patch_px`` centred on a grid x grid lattice that
    covers the frame (centres at (i + 0.5) * size / grid), row by row; edges may hang off the chip."""
    step = frame_size / grid
    half = patch_px / 2.0
    centres = (np.arange(grid) + 0.5) * step
    squares = []
    for cy in centres:
        for cx in centres:
            squares.append(
                [
                    [cx - half, cy - half],
                    [cx + half, cy - half],
                    [cx + half, cy + half],
                    [cx - half, cy + half],
                ]
            )
    return np.asarray(squares, dtype=np.float64)


def occluded_chips(
    probe: AlignedFace, grid: int, patch_px: int, fill: int
) -> tuple[list[NDArray[np.uint8]], NDArray[np.float64]]:
    """For each encoder, (grid^2, S, S, 3) copies of its chip with one patch greyed (the same
    place of the face on every chip), and the patches' squares on the frame."""
    squares = patch_squares(probe.frame.shape[0], grid, patch_px)
    frame_to_image = _invert(probe.to_chip[0])
    stacks = []
    for k, chip in enumerate(probe.chips):
        stack = np.repeat(chip[None], len(squares), axis=0)
        to_this = _compose(probe.to_chip[k], frame_to_image) if k else None
        for i, square in enumerate(squares):
            _fill(stack[i], square if to_this is None else map_corners(to_this, square), fill)
        stacks.append(stack)
    return stacks, squares


def _squared_parts(
    pipeline: FacePipeline, embeddings: NDArray[np.float32], reference: NDArray[np.float32]
) -> dict[str, NDArray[np.float64]]:
    """Squared L2 distance of each row to the reference, split by encoder block for the fusion."""
    diff = np.asarray(embeddings, dtype=np.float64) - np.asarray(reference, dtype=np.float64)[None, :]
    sq = diff * diff
    if pipeline.dlib_encoder is None:
        return {"all": sq.sum(axis=1)}
    n = pipeline.encoder.dim
    return {"SFace": sq[:, :n].sum(axis=1), "dlib": sq[:, n:].sum(axis=1)}


def occlusion_map(
    pipeline: FacePipeline,
    probe: AlignedFace,
    reference: NDArray[np.float32],
    *,
    grid: int = DEFAULT_GRID,
    patch_fraction: float = DEFAULT_PATCH_FRACTION,
    fill: int = DEFAULT_FILL,
) -> OcclusionMap:
    """Occlusion sensitivity of the probe's distance to ``reference`` (a template of the same
    profile): grid^2 occluded copies (plus the probe itself) through each encoder in batches."""
    if not 2 <= grid <= MAX_GRID:
        raise ValueError(f"grid must be 2..{MAX_GRID}, got {grid}")
    if not 0.0 < patch_fraction <= 0.5:
        raise ValueError(f"patch fraction must be in (0, 0.5], got {patch_fraction}")
    if not 0 <= fill <= 255:
        raise ValueError(f"fill must be 0..255, got {fill}")
    size = probe.frame.shape[0]
    patch_px = max(2, round(size * patch_fraction))
    stacks, squares = occluded_chips(probe, grid, patch_px, fill)
    batches = [np.concatenate([chip[None], stack]) for chip, stack in zip(probe.chips, stacks, strict=True)]
    embeddings = pipeline.encode(batches[0], batches[1] if len(batches) > 1 else None)
    metric = pipeline.profile.metric
    parts = _squared_parts(pipeline, embeddings, reference)
    total = sum(parts.values())
    distances = from_squared_l2(np.asarray(total), metric)
    base = float(distances[0])
    deltas = distances[1:] - base
    coverage = np.zeros((size, size), dtype=np.float64)
    masks = [polygon_mask(sq, (size, size)) for sq in squares]
    for m in masks:
        coverage += m
    coverage = np.maximum(coverage, 1.0)

    def spread(values: NDArray[np.float64]) -> NDArray[np.float32]:
        acc = np.zeros((size, size), dtype=np.float64)
        for m, v in zip(masks, values, strict=True):
            acc[m] += v
        return (acc / coverage).astype(np.float32)

    part_maps: dict[str, NDArray[np.float32]] = {}
    if len(parts) > 1:
        # The fused score is half the squared distance: each block's share is additive.
        for name, sq in parts.items():
            part_maps[name] = spread(0.5 * (sq[1:] - sq[0]))
    return OcclusionMap(
        delta=spread(deltas),
        parts=part_maps,
        base_distance=base,
        patch_px=patch_px,
        grid=grid,
        patch_deltas=deltas.reshape(grid, grid).astype(np.float32),
        encodings=len(squares),
    )


def explain_pair(
    pipeline: FacePipeline,
    probe_rgb: NDArray[np.uint8],
    reference_rgb: NDArray[np.uint8],
    *,
    grid: int = DEFAULT_GRID,
    patch_fraction: float = DEFAULT_PATCH_FRACTION,
    fill: int = DEFAULT_FILL,
) -> Explanation:
    """The largest face of each RGB image; the occlusion map of the probe against the reference."""
    probe = largest_face(pipeline, probe_rgb, "probe")
    reference = largest_face(pipeline, reference_rgb, "reference")
    occlusion = occlusion_map(
        pipeline, probe, reference.face.embedding, grid=grid, patch_fraction=patch_fraction, fill=fill
    )
    return Explanation(probe, reference, occlusion, pipeline.profile.name, pipeline.profile.metric)


# --- the figure ----------------------------------------------------------------------------------

# A diverging blue - white - red scale (ColorBrewer RdBu, reversed), RGB.
_STOPS = np.array(
    [
        [33, 102, 172],
        [103, 169, 207],
        [209, 229, 240],
        [247, 247, 247],
        [253, 219, 199],
        [239, 138, 98],
        [178, 24, 43],
    ],
    dtype=np.float64,
)


def diverging_colours(values: NDArray[np.floating], vmax: float) -> NDArray[np.uint8]:
    """RGB colours for values in [-vmax, vmax] (clipped): blue below 0, white at 0, red above."""
    t = np.clip(np.asarray(values, dtype=np.float64) / max(vmax, 1e-12), -1.0, 1.0)
    pos = (t + 1.0) / 2.0 * (len(_STOPS) - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, len(_STOPS) - 2)
    frac = (pos - lo)[..., None]
    rgb = _STOPS[lo] * (1.0 - frac) + _STOPS[lo + 1] * frac
    out: NDArray[np.uint8] = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    return out


def overlay(chip: NDArray[np.uint8], values: NDArray[np.float32], vmax: float) -> NDArray[np.uint8]:
    """The map over a grey copy of the chip, more opaque where the change is larger (RGB)."""
    grey = cv2.cvtColor(cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB).astype(np.float64)
    colours = diverging_colours(values, vmax).astype(np.float64)
    weight = (0.25 + 0.6 * np.clip(np.abs(values) / max(vmax, 1e-12), 0.0, 1.0))[..., None]
    return np.clip(np.round(grey * (1.0 - weight) + colours * weight), 0, 255).astype(np.uint8)


def figure_size(panels: int) -> tuple[int, int]:
    """(width, height) of a figure with ``panels`` panels."""
    return panels * PANEL + (panels + 1) * MARGIN, TITLE_H + PANEL + CAPTION_H + BAR_H + MARGIN


def _text(img: NDArray[np.uint8], text: str, org: tuple[int, int], scale: float = 0.45) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), 1, cv2.LINE_AA)


def _panel(img: NDArray[np.uint8]) -> NDArray[np.uint8]:
    return np.asarray(cv2.resize(img, (PANEL, PANEL), interpolation=cv2.INTER_LINEAR), dtype=np.uint8)


def _format(v: float) -> str:
    return f"{v:+.3f}" if abs(v) >= 1e-3 else f"{v:+.1e}"


def render(explanation: Explanation) -> NDArray[np.uint8]:
    """The figure as a BGR image: both aligned faces, the map over the probe (and, for the
    fusion, each encoder's share), a title with the distance and a colour bar."""
    occ = explanation.occlusion
    probe_frame = explanation.probe.frame
    vmax = float(np.abs(occ.delta).max())
    for part in occ.parts.values():
        vmax = max(vmax, float(np.abs(part).max()))
    vmax = max(vmax, 1e-6)
    panels: list[tuple[NDArray[np.uint8], str]] = [
        (_panel(probe_frame), "probe (aligned)"),
        (_panel(explanation.reference.frame), "reference (aligned)"),
        (_panel(overlay(probe_frame, occ.delta, vmax)), f"occlusion: {explanation.metric} distance"),
    ]
    for name, part in occ.parts.items():
        panels.append((_panel(overlay(probe_frame, part, vmax)), f"{name} share"))
    width, height = figure_size(len(panels))
    fig = np.full((height, width, 3), 255, dtype=np.uint8)
    _text(
        fig,
        f"profile {explanation.profile}   distance {occ.base_distance:.3f}   "
        f"grey patch {occ.patch_px} px, {occ.grid}x{occ.grid} positions",
        (MARGIN, 20),
    )
    for i, (img, caption) in enumerate(panels):
        x = MARGIN + i * (PANEL + MARGIN)
        fig[TITLE_H : TITLE_H + PANEL, x : x + PANEL] = img
        _text(fig, caption, (x + 2, TITLE_H + PANEL + 16))
    # Colour bar: -vmax .. +vmax across the panels' width.
    bar_y = TITLE_H + PANEL + CAPTION_H
    bar_w = width - 2 * MARGIN
    ramp = np.linspace(-vmax, vmax, bar_w)[None, :].repeat(12, axis=0)
    fig[bar_y : bar_y + 12, MARGIN : MARGIN + bar_w] = diverging_colours(ramp, vmax)
    _text(
        fig,
        f"{_format(-vmax)}  (looks more different when hidden: supports a mismatch)",
        (MARGIN, bar_y + 30),
        0.4,
    )
    right = f"(supports the match) {_format(vmax)}"
    (tw, _), _ = cv2.getTextSize(right, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    _text(fig, right, (width - MARGIN - tw, bar_y + 30), 0.4)
    return np.asarray(cv2.cvtColor(fig, cv2.COLOR_RGB2BGR), dtype=np.uint8)


def encode_png(bgr: NDArray[np.uint8], compression: int = 3) -> bytes:
    """PNG bytes; ``compression`` 0-9 (9: smallest, slowest)."""
    ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return bytes(buf.tobytes())
