"""Geometric liveness cues from landmarks across a burst: is the face a 3-D head or a flat picture?

Pure functions of an (F, P, 2) landmark array (P = 5 in dlib's order, or 68), used both by the
classifier's training (``models.train_liveness`` on simulated bursts) and by the service, so
the features the classifier learned are exactly the ones it is given.

Each frame is first normalised by the similarity that puts the two eye centres at (-0.5, 0)
and (0.5, 0): translation, roll and scale are gone, lengths are in inter-ocular distances
(IOD). What is left is what out-of-plane rotation does to the shape:

* per frame: p = the nose's x offset from the eye midpoint, q = its y offset, a = the two eye
  widths' asymmetry, f = log(IOD / q) (foreshortening); each smoothed over the burst by a
  low-degree polynomial in time (landmark noise is ~0.03 IOD per coordinate and white);
* a real head turning by yaw moves p by about 0.33 IOD per radian (the base of the nose is in
  front of the eye corners) and a by about -0.34 (the outer corners are behind the inner ones):
  first order, correlated, p/a near -1; f changes only with the turn's offset (tan yaw);
* a flat picture turned by yaw at distance Z moves a by perspective only, about (outer corners' half-span
  / Z) per radian: -0.2 at 30 cm, -0.1 at 60 cm, and p by about a third of that, so p/a
  is near -0.3; but a picture tilted in pitch by phi shears: p then moves by about 0.77 tan(phi)
  per radian of yaw, as much as a head's parallax at phi ~ 12 degrees. Five points cannot tell
  such a tilted print from a head to first order; the classifier sees the magnitudes and the
  direction of the (a, p) motion and learns what the simulation's spread of poses allows;
* a print bent around a vertical axis moves a a lot and p little; around a horizontal axis p
  moves and a does not.

The abstain rule's evidence (``motion_snr``) is the change of p and a over their noise: a nod or
any motion of a flat picture without turning leaves the burst "undetermined" (turn your head),
rather than judged on second-order effects. A free 2-D affine fit is not used: with four
collinear points it absorbs the nose's parallax as shear.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

# dlib's 5-point order: the eye on the image's right (outer, inner corner), then the eye on the
# image's left (outer, inner), then the base of the nose.
RIGHT_OUTER, RIGHT_INNER, LEFT_OUTER, LEFT_INNER, NOSE = range(5)
# The same five points in the 68-point (iBUG) layout: 45/42 and 36/39 eye corners, 33 nose base.
FIVE_OF_68 = (45, 42, 36, 39, 33)

# The classifier's inputs, in this order (the ONNX graph takes them as one float row).
FEATURE_NAMES: tuple[str, ...] = (
    "log_nose_x_sd",  # p: sideways parallax of the nose (IOD), log10: first order in yaw for a head
    "log_nose_y_sd",  # q: vertical nose offset (IOD), log10: first order in pitch for a head
    "log_eye_asym_sd",  # a: change of the two eye widths' asymmetry, log10
    "log_foreshortening_sd",  # f = log(IOD / eye-to-nose height): the plane's own cue, log10 of sd
    "nose_x_eye_asym_corr",  # a real head moves p and a together
    "nose_x_eye_asym_cos2",  # direction of the (a, p) motion: cos of twice its angle to the a axis
    "nose_x_eye_asym_sin2",  # ... and sin: head ~ -100 deg, bent about a vertical axis ~ 0, horizontal ~ 180
    "nose_x_foreshortening_corr",  # |corr(p, f)|: a turned plane's p follows its foreshortening
    "log_parallax_over_foreshortening",  # log10 (sd p / sd f): parallax against foreshortening
    "log_jitter",  # frame-to-frame landmark noise (IOD), log10: the scale of the rest
    "log_motion_snr",  # turning evidence: p and a changes against their noise, log10 (abstain rule)
    "log_view_snr",  # the whole normalised shape's change against landmark noise, log10
    "tk_s3_s2",  # Tomasi-Kanade: third / second singular value of the centred 2F x P matrix
    "frames",  # burst length: the noise of every spread depends on it
)
_FLOOR = 1e-4  # IOD: below any landmark noise; keeps log10 finite


def five_points(landmarks: NDArray[np.float64]) -> NDArray[np.float64]:
    """(F, 5, 2) in dlib's 5-point order from (F, 5, 2) or (F, 68, 2) landmarks."""
    if landmarks.ndim != 3 or landmarks.shape[2] != 2:
        raise ValueError(f"expected landmarks shaped (frames, points, 2), got {landmarks.shape}")
    if landmarks.shape[1] == 5:
        return landmarks.astype(np.float64)
    if landmarks.shape[1] == 68:
        return landmarks[:, FIVE_OF_68].astype(np.float64)
    raise ValueError(f"expected 5 or 68 landmarks per frame, got {landmarks.shape[1]}")


def eye_centres(points5: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(left, right) eye centres in the image, each (F, 2)."""
    left = (points5[:, LEFT_OUTER] + points5[:, LEFT_INNER]) / 2.0
    right = (points5[:, RIGHT_OUTER] + points5[:, RIGHT_INNER]) / 2.0
    return left, right


def inter_ocular(points5: NDArray[np.float64]) -> NDArray[np.float64]:
    left, right = eye_centres(points5)
    iod: NDArray[np.float64] = np.linalg.norm(right - left, axis=1)
    return iod


def normalise(landmarks: NDArray[np.float64]) -> NDArray[np.float64]:
    """Each frame mapped by the similarity taking the eye centres to (-0.5, 0) and (0.5, 0)."""
    pts = five_points(landmarks)
    left, right = eye_centres(pts)
    z = pts[..., 0] + 1j * pts[..., 1]
    zl = left[:, 0] + 1j * left[:, 1]
    zr = right[:, 0] + 1j * right[:, 1]
    span = zr - zl
    if np.any(np.abs(span) < 1e-9):
        raise ValueError("degenerate landmarks: the two eye centres coincide")
    w = (z - ((zl + zr) / 2.0)[:, None]) / span[:, None]
    return np.stack([w.real, w.imag], axis=-1)


def eye_asymmetry(norm: NDArray[np.float64]) -> NDArray[np.float64]:
    """(width of the image-right eye - image-left eye) / sum, per frame; constant for a plane."""
    wr = np.linalg.norm(norm[:, RIGHT_OUTER] - norm[:, RIGHT_INNER], axis=1)
    wl = np.linalg.norm(norm[:, LEFT_OUTER] - norm[:, LEFT_INNER], axis=1)
    out: NDArray[np.float64] = (wr - wl) / np.maximum(wr + wl, 1e-9)
    return out


def _smoother(t: NDArray[np.float64]) -> tuple[NDArray[np.float64], int]:
    """Hat matrix of a least-squares polynomial in time, and its degree (1-3 by burst length).

    Head motion over a burst of a second is smooth and landmark noise is white, so the fitted
    tracks keep the motion and about (degree + 1) / F of the noise variance.
    """
    frames = len(t)
    degree = 1 if frames < 6 else 2 if frames < 9 else 3
    span = float(t[-1] - t[0])
    u = (t - t[0]) / span * 2.0 - 1.0 if span > 0 else np.linspace(-1.0, 1.0, frames)
    design = np.vander(u, degree + 1, increasing=True)
    hat: NDArray[np.float64] = design @ np.linalg.pinv(design)
    return hat, degree


def _frame_times(frames: int, t: NDArray[np.float64] | None) -> NDArray[np.float64]:
    if t is None:
        return np.arange(frames, dtype=np.float64)
    times = np.asarray(t, dtype=np.float64)
    if times.shape != (frames,):
        raise ValueError(f"expected {frames} timestamps, got shape {times.shape}")
    if np.any(np.diff(times) < 0):
        raise ValueError("timestamps must not decrease")
    return times


@dataclass(frozen=True)
class Tracks:
    """A burst's normalised landmarks, their smoothed tracks and the noise around them."""

    norm: NDArray[np.float64]  # (F, 5, 2) normalised landmarks
    smooth: NDArray[np.float64]  # (F, 5, 2) polynomial fit in time
    jitter: float  # residual sd per coordinate (IOD), corrected for the fit's degrees of freedom
    degree: int

    @property
    def frames(self) -> int:
        return int(self.norm.shape[0])


def tracks(landmarks: NDArray[np.float64], t: NDArray[np.float64] | None = None) -> Tracks:
    """Normalise and smooth a burst of >= 2 frames (``t``: seconds; None means evenly spaced)."""
    norm = normalise(landmarks)
    frames = norm.shape[0]
    if frames < 2:
        raise ValueError("geometry cues need at least two frames")
    hat, degree = _smoother(_frame_times(frames, t))
    if frames <= degree + 1:
        return Tracks(norm=norm, smooth=norm, jitter=0.0, degree=degree)
    flat = norm.reshape(frames, -1)
    smooth = hat @ flat
    # The eye centres are pinned at (+-0.5, 0): only the corners' and the nose's noise counts.
    residual = (flat - smooth).reshape(frames, 5, 2)
    dof = frames - degree - 1
    noise = float(np.sqrt(np.sum(residual**2) / (dof * 10)))
    return Tracks(norm=norm, smooth=smooth.reshape(frames, 5, 2), jitter=noise, degree=degree)


def tomasi_kanade(norm: NDArray[np.float64]) -> NDArray[np.float64]:
    """Singular values of the centred 2F x P measurement matrix (each frame centred on its mean)."""
    centred = norm - norm.mean(axis=1, keepdims=True)
    w = np.concatenate([centred[..., 0], centred[..., 1]], axis=0)  # (2F, P)
    sv: NDArray[np.float64] = np.linalg.svd(w, compute_uv=False)
    return np.concatenate([sv, np.zeros(max(0, 5 - len(sv)))])


def _view_change(points: NDArray[np.float64]) -> float:
    """RMS change (IOD) of a normalised shape about its mean over the burst, per point."""
    deviation = points - points.mean(axis=0, keepdims=True)
    return float(np.sqrt(np.mean(np.sum(deviation**2, axis=2))))


def view_snr(tr: Tracks) -> float:
    """Mean-square change of the whole smoothed shape over what the fit of pure noise would leave."""
    change = _view_change(tr.smooth)
    expected = 2.0 * tr.jitter**2 * tr.degree / tr.frames
    return change**2 / max(expected, _FLOOR**2)


def _residual_sd(raw: NDArray[np.float64], smooth: NDArray[np.float64], degree: int) -> float:
    dof = len(raw) - degree - 1
    return float(np.sqrt(np.sum((raw - smooth) ** 2) / dof)) if dof > 0 else 0.0


def motion_snr(tr: Tracks) -> float:
    """Turning evidence: change of the smoothed nose offset p and eye asymmetry a over their noise.

    Both move at first order when a head turns (yaw); each term is about 1 when nothing turned
    (the smoothed track of pure noise keeps ``degree / frames`` of its variance), and the mean of
    the two is returned. A nod moves neither, nor does any motion of a flat picture: those bursts
    abstain ("turn_head") rather than being judged on second-order foreshortening alone.
    """
    raw, smooth = shape_tracks(tr.norm), shape_tracks(tr.smooth)
    keep = tr.degree / tr.frames
    total = 0.0
    for key in ("p", "a"):
        noise = _residual_sd(raw[key], smooth[key], tr.degree)
        # The pooled landmark jitter steadies the per-track estimate (p is one coordinate of it).
        noise = max(noise, tr.jitter if key == "p" else 1.4 * tr.jitter)
        total += float(np.var(smooth[key])) / max(noise**2 * keep, _FLOOR**2)
    return total / 2.0


def rotation_evidence(landmarks: NDArray[np.float64], t: NDArray[np.float64] | None = None) -> float:
    """``motion_snr`` of a burst: has the view changed beyond landmark noise?"""
    return motion_snr(tracks(landmarks, t))


def _corr(x: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    sx, sy = float(np.std(x)), float(np.std(y))
    if sx < 1e-9 or sy < 1e-9:
        return 0.0
    return float(np.mean((x - x.mean()) * (y - y.mean())) / (sx * sy))


def _direction(x: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[float, float]:
    """(cos 2phi, sin 2phi) of the principal direction phi of the (x, y) scatter: no wrap at +-90 deg."""
    dx, dy = x - x.mean(), y - y.mean()
    c = float(np.mean(dx * dx) - np.mean(dy * dy))
    s = 2.0 * float(np.mean(dx * dy))
    r = math.hypot(c, s)
    return (c / r, s / r) if r > 1e-12 else (0.0, 0.0)


def shape_tracks(smooth: NDArray[np.float64]) -> dict[str, NDArray[np.float64]]:
    """Per-frame p (nose x), q (nose y), a (eye asymmetry), f (log IOD / nose height) of normalised points."""
    nose = smooth[:, NOSE]
    q = nose[:, 1]
    return {
        "p": nose[:, 0],
        "q": q,
        "a": eye_asymmetry(smooth),
        "f": -np.log(np.maximum(q, 0.05)),
    }


def geometry_features(
    landmarks: NDArray[np.float64], t: NDArray[np.float64] | None = None
) -> NDArray[np.float64]:
    """The classifier's input row (FEATURE_NAMES order) for one burst of >= 2 frames."""
    tr = tracks(landmarks, t)
    s = shape_tracks(tr.smooth)
    p, q, a, f = s["p"], s["q"], s["a"], s["f"]
    p_sd, q_sd, a_sd, f_sd = (max(float(np.std(v)), _FLOOR) for v in (p, q, a, f))
    cos2, sin2 = _direction(a, p)
    sv = tomasi_kanade(tr.norm)
    s2, s3 = (max(float(v), _FLOOR) for v in sv[1:3])
    return np.array(
        [
            math.log10(p_sd),
            math.log10(q_sd),
            math.log10(a_sd),
            math.log10(f_sd),
            _corr(p, a),
            cos2,
            sin2,
            abs(_corr(p, f)),
            math.log10(p_sd / f_sd),
            math.log10(max(tr.jitter, _FLOOR)),
            math.log10(max(motion_snr(tr), _FLOOR)),
            math.log10(max(view_snr(tr), _FLOOR)),
            s3 / s2,
            float(tr.frames),
        ],
        dtype=np.float64,
    )


def motionless(landmarks: NDArray[np.float64], t: NDArray[np.float64], *, max_iod: float = 0.01) -> bool:
    """The face did not move in the image at all over at least half a second.

    A live person at a door sways by millimetres, which is pixels; a picture on a stand, or a
    replayed still, does not. Image coordinates (not normalised): translation counts here.
    """
    pts = five_points(landmarks)
    if pts.shape[0] < 3 or float(t[-1] - t[0]) < 0.5:
        return False
    iod = float(np.median(inter_ocular(pts)))
    spread = float(np.max(np.abs(pts - pts.mean(axis=0, keepdims=True))))
    return spread < max_iod * iod


# -- blink (68 points only) -----------------------------------------------------------------
_EYES_68 = ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47))


def eye_aspect_ratio(landmarks68: NDArray[np.float64]) -> NDArray[np.float64]:
    """Soukupová & Čech's eye-aspect ratio per frame, mean of both eyes: ~0.3 open, < 0.2 closed."""
    if landmarks68.ndim != 3 or landmarks68.shape[1:] != (68, 2):
        raise ValueError("the eye-aspect ratio needs (frames, 68, 2) landmarks")
    ratios = []
    for p1, p2, p3, p4, p5, p6 in _EYES_68:
        pts = landmarks68
        vertical = np.linalg.norm(pts[:, p2] - pts[:, p6], axis=1) + np.linalg.norm(
            pts[:, p3] - pts[:, p5], axis=1
        )
        horizontal = np.linalg.norm(pts[:, p1] - pts[:, p4], axis=1)
        ratios.append(vertical / np.maximum(2.0 * horizontal, 1e-9))
    out: NDArray[np.float64] = np.mean(ratios, axis=0)
    return out


def blink_depth(ear: NDArray[np.float64]) -> float:
    """How far the eyes closed and reopened in the burst: 1 - min EAR / open EAR, 0 without reopening.

    Open EAR is the burst's 80th percentile; a blink needs a frame after the minimum that is open
    again (a burst that ends with closed eyes, or a photo of closed eyes, is no blink).
    """
    if len(ear) < 3:
        return 0.0
    open_level = float(np.percentile(ear, 80))
    if open_level <= 0:
        return 0.0
    low = int(np.argmin(ear))
    depth = 1.0 - float(ear[low]) / open_level
    before = ear[:low]
    after = ear[low + 1 :]
    reopened = after.size > 0 and before.size > 0
    reopened = reopened and float(after.max()) > open_level * 0.9 and float(before.max()) > open_level * 0.9
    return max(0.0, depth) if reopened else 0.0
