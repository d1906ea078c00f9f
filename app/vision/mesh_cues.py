"""Geometry cues over a burst of 468-point face meshes (app.vision.face_mesh): 3-D head or flat print?

The mesh model gives a print a face-like depth too, so one frame's z proves nothing. Across frames:
- a flat print's image points move by a plane homography whatever the print does as a rigid
  sheet, while a turning head's points do not (the nose moves against the cheeks);
- the same 8 degrees of freedom as a homography, spent on an affine camera looking at the first
  frame's 3-D mesh (x, y, z), explain a turning head's motion; for a print's the depth the model
  invented is wrong, so the homography should explain it at least as well;
- eyelids close in a blink; a print's cannot.

Residuals use the points fixed to the skull: the face oval (silhouette points slide over the
surface as the head turns, which neither model describes) and the lips (expressions) are left out.

All functions are pure: a track is (F, 468, 3) points in image pixels with z scaled like x, one
mesh per frame (FaceMesh.predict_batch with each frame's detection; see FaceMesh.track for why
MediaPipe's own tracking ROI is unsafe at burst frame rates). Residuals are RMS distances in
units of the first frame's inter-ocular distance (IOD).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import NDArray

Track = NDArray[np.float64]  # (F, 468, 3)

# Eye rings for the eye aspect ratio, p1..p6 as in Soukupova & Cech: corners p1, p4; upper lid
# p2, p3; lower lid p6, p5. The first eye is on the image's left for an upright face.
IMAGE_LEFT_EYE = (33, 160, 158, 133, 153, 144)
IMAGE_RIGHT_EYE = (263, 387, 385, 362, 380, 373)
# MediaPipe's FACEMESH_FACE_OVAL and FACEMESH_LIPS point sets.
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
    176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
LIPS = (
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409, 78, 95,
    88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415,
)  # fmt: skip
RIGID_POINTS: NDArray[np.intp] = np.setdiff1d(np.arange(468), np.array(FACE_OVAL + LIPS))


def interocular(track: Track) -> NDArray[np.float64]:
    """(F,) distance between the two eyes' corner midpoints."""
    left = track[:, [IMAGE_LEFT_EYE[0], IMAGE_LEFT_EYE[3]], :2].mean(axis=1)
    right = track[:, [IMAGE_RIGHT_EYE[0], IMAGE_RIGHT_EYE[3]], :2].mean(axis=1)
    return np.asarray(np.linalg.norm(right - left, axis=1), dtype=np.float64)


def _rms(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    return float(np.sqrt(np.mean(np.sum((a - b) ** 2, axis=-1))))


def homography_residuals(
    track: Track, ref: int = 0, points: NDArray[np.intp] = RIGID_POINTS
) -> NDArray[np.float64]:
    """(F,) RMS error of the best plane homography from frame ref's (x, y) to each frame's, / IOD."""
    src = track[ref, points, :2].astype(np.float64)
    iod = float(interocular(track[ref : ref + 1])[0])
    out = np.zeros(len(track))
    for f in range(len(track)):
        dst = track[f, points, :2].astype(np.float64)
        h, _ = cv2.findHomography(src, dst, 0)
        if h is None:
            out[f] = np.inf
            continue
        mapped = cv2.perspectiveTransform(src[None], h)[0]
        out[f] = _rms(mapped, dst) / iod
    return out


def affine_depth_residuals(
    track: Track, ref: int = 0, points: NDArray[np.intp] = RIGID_POINTS
) -> NDArray[np.float64]:
    """(F,) RMS error of the best affine camera (2x4, 8 degrees of freedom like a homography)
    taking frame ref's 3-D mesh to each frame's (x, y), / IOD."""
    pts = track[ref, points].astype(np.float64)
    design = np.hstack([pts, np.ones((len(pts), 1))])
    iod = float(interocular(track[ref : ref + 1])[0])
    out = np.zeros(len(track))
    for f in range(len(track)):
        dst = track[f, points, :2].astype(np.float64)
        coef, *_ = np.linalg.lstsq(design, dst, rcond=None)
        out[f] = _rms(design @ coef, dst) / iod
    return out


def similarity_3d(
    src: NDArray[np.float64], dst: NDArray[np.float64]
) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
    """Umeyama: scale s, rotation R, translation t minimising |s R src + t - dst|."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2] = -1.0
    rot = u @ np.diag(d) @ vt
    scale = float((sig * d).sum() / (a**2).sum(axis=1).mean())
    return scale, rot, mu_d - scale * rot @ mu_s


def rigid_residuals(
    track: Track, ref: int = 0, points: NDArray[np.intp] = RIGID_POINTS
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per frame: RMS error of the best 3-D similarity from frame ref's mesh to it (/ IOD), and the
    out-of-plane rotation angle of that fit in degrees (how far the head turned or nodded)."""
    src = track[ref, points].astype(np.float64)
    iod = float(interocular(track[ref : ref + 1])[0])
    res, angle = np.zeros(len(track)), np.zeros(len(track))
    for f in range(len(track)):
        dst = track[f, points].astype(np.float64)
        s, rot, t = similarity_3d(src, dst)
        res[f] = _rms(src @ (s * rot).T + t, dst) / iod
        # Angle between the face's normal (z) before and after: yaw and pitch, not roll.
        angle[f] = float(np.degrees(np.arccos(np.clip(rot[2, 2], -1.0, 1.0))))
    return res, angle


def eye_aspect_ratio(track: Track) -> NDArray[np.float64]:
    """(F,) mean of both eyes' aspect ratio (lid opening over eye width) in the image plane."""

    def ear(ring: tuple[int, ...]) -> NDArray[np.float64]:
        p = track[:, list(ring), :2]
        vertical = np.linalg.norm(p[:, 1] - p[:, 5], axis=1) + np.linalg.norm(p[:, 2] - p[:, 4], axis=1)
        return np.asarray(vertical / (2.0 * np.linalg.norm(p[:, 0] - p[:, 3], axis=1)), dtype=np.float64)

    return (ear(IMAGE_LEFT_EYE) + ear(IMAGE_RIGHT_EYE)) / 2.0


def blink_depth(track: Track) -> float:
    """How far the eyes closed during the burst: 1 - min(EAR) / median(EAR); about 0 without a blink."""
    e = eye_aspect_ratio(track)
    return float(1.0 - e.min() / np.median(e)) if len(e) else 0.0


def depth_parallax(track: Track) -> tuple[float, float]:
    """(ratio, excess) over frames 1..F-1 against frame 0, residuals pooled over the frames:
    ratio = RMS homography residual / RMS affine-depth residual (about 1 for a flat print, above 1
    when the mesh's depth explains the motion better than a plane); excess = sqrt of the
    difference of the mean squares, in IOD (0 for a motionless head: the ratio is then noise)."""
    if len(track) < 2:
        return 1.0, 0.0
    h2 = float(np.mean(homography_residuals(track)[1:] ** 2))
    a2 = float(np.mean(affine_depth_residuals(track)[1:] ** 2))
    ratio = math.sqrt(h2 / a2) if a2 > 0 else 1.0
    return ratio, math.sqrt(max(h2 - a2, 0.0))


def burst_geometry(track: Track) -> dict[str, float]:
    """The per-burst summaries."""
    ratio, excess = depth_parallax(track)
    res_r, angle = rigid_residuals(track)
    return {
        "parallax_ratio": ratio,
        "parallax_excess": excess,
        "homography_residual": float(homography_residuals(track).max()),
        "rigid_residual": float(res_r.max()),
        "rotation_deg": float(angle.max()),
        "blink_depth": blink_depth(track),
    }
