"""Render presentation-attack bursts from a real face photo, as a door camera would capture them.

An attack is a physical object held in front of the camera: a printed photo (flat, or bent
around a vertical or horizontal axis) or a phone/tablet screen showing the photo. The object is
a 3-D surface (a plane or a cylinder) in camera coordinates, moved by a hand-held motion over the
burst; each frame is rendered by casting one ray per camera pixel (pinhole camera, 640x480, a
door camera's wide lens) onto that surface, which gives a dense warp of the sheet's texture
(``cv2.remap``). Prints are lit (Lambertian paper with a weak gloss under a ceiling light: a bent
print is shaded across its curvature); screens emit their picture (gamma, colour cast, black
level, dimming off-axis), show the sub-pixel grid where it aliases with the sensor (moiré) and
reflect the ceiling light on their glass. The camera then adds defocus and motion blur, an
auto-exposure drift, shot and read noise, and JPEG re-encoding.

What is not modelled: the attacker's hand and fingers, halftone dots (invisible at this
distance), rolling-shutter skew, and any live person behind the object. Everything is
deterministic for a seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

# Bump when a change alters the rendered frames (cached renderings are keyed by it).
RENDER_VERSION = "render-v1"

AttackType = Literal["print_flat", "print_bent", "screen"]
ATTACK_TYPES: tuple[AttackType, ...] = ("print_flat", "print_bent", "screen")
BendAxis = Literal["none", "vertical", "horizontal"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Camera:
    """Pinhole door camera. 400 px focal length at 640 px width is a 77° horizontal field of view."""

    width: int = 640
    height: int = 480
    focal_px: float = 400.0

    @property
    def cx(self) -> float:
        return (self.width - 1) / 2.0

    @property
    def cy(self) -> float:
        return (self.height - 1) / 2.0


@dataclass(frozen=True)
class Sheet:
    """The held object's surface: ``width_cm`` x ``height_cm``, flat or bent into a cylinder.

    Sheet coordinates (u, v) in cm: u to the right, v down, origin at the sheet's centre. A bent
    sheet keeps its size along the arc. ``bulge`` +1: the centre is nearer the camera than the
    edges; -1: the edges are nearer.
    """

    width_cm: float
    height_cm: float
    bend_axis: BendAxis = "none"
    radius_cm: float = math.inf
    bulge: int = 1


@dataclass(frozen=True)
class Pose:
    """Sheet to camera: X_cam = rotation @ X_sheet + translation (cm; camera looks along +z)."""

    rotation: FloatArray
    translation: FloatArray


@dataclass(frozen=True)
class Lighting:
    light_pos: FloatArray  # a ceiling light, camera coordinates (cm)
    scene_level: float  # pixel value of white paper facing the light
    ambient: float
    diffuse: float
    specular: float  # gloss strength (pixel value at the highlight's centre)
    shininess: float


@dataclass(frozen=True)
class Photo:
    """A real face photo and the box of its face (left, top, right, bottom; pixels)."""

    image: NDArray[np.uint8]  # BGR
    face_box: tuple[int, int, int, int]
    name: str = ""


@dataclass(frozen=True)
class SheetTexture:
    """What is on the sheet: reflectance (0..1), emitted light (0..1) and coverage (0..1), all HxW.

    ``photo_to_tex`` maps photo pixels to texture pixels: tex = photo * scale + offset.
    """

    albedo: NDArray[np.float32]  # HxWx3
    emission: NDArray[np.float32] | None  # HxWx3, screens only
    alpha: NDArray[np.float32]  # HxW: 0 outside the object (rounded corners)
    photo_scale: float
    photo_offset: tuple[float, float]
    moire_pitch_cm: float = 0.0  # screen pixel pitch; 0 = no sub-pixel pattern
    moire_amplitude: float = 0.0
    screen_gamma: float = 1.0
    screen_level: float = 0.0  # pixel value of a full-white screen


@dataclass(frozen=True)
class BurstSpec:
    attack_type: AttackType
    sheet: Sheet
    poses: list[Pose]
    timestamps: list[float]
    lighting: Lighting
    defocus_sigma: float
    exposure_gains: list[float]
    noise_shot: float  # variance per unit of intensity
    noise_read: float  # read noise standard deviation
    jpeg_qualities: list[int]
    shutter_fraction: float  # exposure time / frame interval (motion blur length)
    noise_seed: int


@dataclass
class AttackBurst:
    attack_type: AttackType
    source: str
    jpegs: list[bytes]
    timestamps: list[float]
    spec: BurstSpec
    texture: SheetTexture
    details: dict[str, float] = field(default_factory=dict)


def rotation_matrix(yaw_deg: float, pitch_deg: float, roll_deg: float) -> FloatArray:
    """Yaw about the camera's y axis, pitch about x, roll about z (applied roll, pitch, then yaw)."""
    y, p, r = (math.radians(a) for a in (yaw_deg, pitch_deg, roll_deg))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return np.asarray(ry @ rx @ rz, dtype=np.float64)


# --- geometry ------------------------------------------------------------------------------------


def sheet_points(sheet: Sheet, u: FloatArray, v: FloatArray) -> FloatArray:
    """Sheet coordinates (cm) -> 3-D points in the sheet's frame, (..., 3)."""
    if sheet.bend_axis == "none":
        return np.stack([u, v, np.zeros_like(u)], axis=-1)
    r, s = sheet.radius_cm, sheet.bulge
    along = u if sheet.bend_axis == "vertical" else v
    theta = along / r
    a = r * np.sin(theta)
    z = s * r * (1.0 - np.cos(theta))
    if sheet.bend_axis == "vertical":
        return np.stack([a, v, z], axis=-1)
    return np.stack([u, a, z], axis=-1)


def sheet_normals(sheet: Sheet, u: FloatArray, v: FloatArray) -> FloatArray:
    """Unit normals facing the camera side (-z at the sheet's centre), (..., 3)."""
    if sheet.bend_axis == "none":
        n = np.zeros((*u.shape, 3))
        n[..., 2] = -1.0
        return n
    along = u if sheet.bend_axis == "vertical" else v
    theta = along / sheet.radius_cm
    side = sheet.bulge * np.sin(theta)
    zero = np.zeros_like(theta)
    if sheet.bend_axis == "vertical":
        return np.stack([side, zero, -np.cos(theta)], axis=-1)
    return np.stack([zero, side, -np.cos(theta)], axis=-1)


def project(camera: Camera, points_cam: FloatArray) -> FloatArray:
    """Camera-frame points (..., 3) -> pixel coordinates (..., 2)."""
    z = points_cam[..., 2]
    x = camera.focal_px * points_cam[..., 0] / z + camera.cx
    y = camera.focal_px * points_cam[..., 1] / z + camera.cy
    return np.stack([x, y], axis=-1)


def project_sheet(camera: Camera, sheet: Sheet, pose: Pose, u: FloatArray, v: FloatArray) -> FloatArray:
    """Where sheet points (cm) appear in the frame (pixels)."""
    local = sheet_points(sheet, u, v)
    return project(camera, local @ pose.rotation.T + pose.translation)


def tex_to_sheet(texture: SheetTexture, sheet: Sheet, tx: FloatArray, ty: FloatArray) -> FloatArray:
    """Texture pixel coordinates -> sheet coordinates (cm), (..., 2)."""
    h, w = texture.alpha.shape
    u = ((tx + 0.5) / w - 0.5) * sheet.width_cm
    v = ((ty + 0.5) / h - 0.5) * sheet.height_cm
    return np.stack([u, v], axis=-1)


def photo_to_frame(
    camera: Camera, sheet: Sheet, pose: Pose, texture: SheetTexture, points: FloatArray
) -> FloatArray:
    """Photo pixel coordinates (N, 2) -> frame pixel coordinates (N, 2) for one pose."""
    tex = points * texture.photo_scale + np.asarray(texture.photo_offset)
    uv = tex_to_sheet(texture, sheet, tex[:, 0], tex[:, 1])
    return project_sheet(camera, sheet, pose, uv[:, 0], uv[:, 1])


@dataclass(frozen=True)
class RayHits:
    """Per frame pixel: the sheet point it sees. ``valid`` False where the ray misses the sheet."""

    u: FloatArray
    v: FloatArray
    valid: NDArray[np.bool_]
    points: FloatArray  # camera-frame 3-D points, (H, W, 3)
    normals: FloatArray  # camera-frame unit normals, (H, W, 3)


Region = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) in frame pixels


def sheet_region(camera: Camera, sheet: Sheet, pose: Pose, margin: int = 4) -> Region:
    """Frame pixels the sheet can cover: the box of a dense grid of its projected points."""
    u = np.linspace(-sheet.width_cm / 2, sheet.width_cm / 2, 41)
    v = np.linspace(-sheet.height_cm / 2, sheet.height_cm / 2, 41)
    gu, gv = np.meshgrid(u, v)
    pts = project_sheet(camera, sheet, pose, gu, gv).reshape(-1, 2)
    x0 = int(np.clip(np.floor(pts[:, 0].min()) - margin, 0, camera.width))
    x1 = int(np.clip(np.ceil(pts[:, 0].max()) + margin + 1, 0, camera.width))
    y0 = int(np.clip(np.floor(pts[:, 1].min()) - margin, 0, camera.height))
    y1 = int(np.clip(np.ceil(pts[:, 1].max()) + margin + 1, 0, camera.height))
    return x0, y0, max(x0, x1), max(y0, y1)


def cast_rays(camera: Camera, sheet: Sheet, pose: Pose, region: Region | None = None) -> RayHits:
    """Intersect each pixel's viewing ray with the sheet (nearest hit within the sheet's extent).

    ``region`` limits the work to a part of the frame; the arrays are then that part's size.
    """
    x0, y0, x1, y1 = region or (0, 0, camera.width, camera.height)
    xs = (np.arange(x0, x1, dtype=np.float64) - camera.cx) / camera.focal_px
    ys = (np.arange(y0, y1, dtype=np.float64) - camera.cy) / camera.focal_px
    gx, gy = np.meshgrid(xs, ys)
    d_cam = np.stack([gx, gy, np.ones_like(gx)], axis=-1)
    rot = pose.rotation
    origin = -rot.T @ pose.translation  # camera centre in sheet coordinates
    d = d_cam @ rot  # ray directions in sheet coordinates (R^T d for each ray)
    half_w, half_h = sheet.width_cm / 2.0, sheet.height_cm / 2.0
    if sheet.bend_axis == "none":
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -origin[2] / d[..., 2]
        p = origin + t[..., None] * d
        u, v = p[..., 0], p[..., 1]
        valid = (t > 0) & (np.abs(u) <= half_w) & (np.abs(v) <= half_h)
    else:
        ai = 0 if sheet.bend_axis == "vertical" else 1  # the coordinate that bends
        bi = 1 - ai
        r, s = sheet.radius_cm, float(sheet.bulge)
        oa, oz = origin[ai], origin[2] - s * r
        ra, rz = d[..., ai], d[..., 2]
        qa = ra * ra + rz * rz
        qb = 2.0 * (oa * ra + oz * rz)
        qc = oa * oa + oz * oz - r * r
        disc = qb * qb - 4.0 * qa * qc
        root = np.sqrt(np.maximum(disc, 0.0))
        best_t = np.full(qa.shape, np.inf)
        best_along = np.zeros(qa.shape)
        best_axial = np.zeros(qa.shape)
        half_along = half_w if ai == 0 else half_h
        half_axial = half_h if ai == 0 else half_w
        for sign in (-1.0, 1.0):
            t = (-qb + sign * root) / (2.0 * qa)
            pa = origin[ai] + t * ra
            pz = origin[2] + t * rz
            pb = origin[bi] + t * d[..., bi]
            theta = np.arctan2(pa, r - s * pz)
            along = r * theta
            ok = (disc >= 0) & (t > 0) & (np.abs(along) <= half_along) & (np.abs(pb) <= half_axial)
            ok &= np.abs(theta) < math.pi / 2
            take = ok & (t < best_t)
            best_t = np.where(take, t, best_t)
            best_along = np.where(take, along, best_along)
            best_axial = np.where(take, pb, best_axial)
        valid = np.isfinite(best_t)
        u, v = (best_along, best_axial) if ai == 0 else (best_axial, best_along)
        t = np.where(valid, best_t, 0.0)
    u = np.where(valid, u, 0.0)
    v = np.where(valid, v, 0.0)
    local_points = sheet_points(sheet, u, v)
    points = local_points @ rot.T + pose.translation
    normals = sheet_normals(sheet, u, v) @ rot.T
    return RayHits(u, v, valid, points, normals)


# --- textures ------------------------------------------------------------------------------------


def _rounded_rect_alpha(h: int, w: int, radius_px: float) -> NDArray[np.float32]:
    alpha = np.ones((h, w), dtype=np.float32)
    if radius_px < 1:
        return alpha
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cx = np.clip(xx, radius_px, w - 1 - radius_px)
    cy = np.clip(yy, radius_px, h - 1 - radius_px)
    dist = np.hypot(xx - cx, yy - cy)
    return np.asarray(np.clip(radius_px + 0.5 - dist, 0.0, 1.0), dtype=np.float32)


def _resample(image: NDArray[np.uint8], scale: float) -> NDArray[np.uint8]:
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return np.asarray(cv2.resize(image, size, interpolation=interp), dtype=np.uint8)


def print_texture(
    photo: Photo, rng: np.random.Generator, px_per_cm: float, face_cm: float
) -> tuple[SheetTexture, float, float]:
    """A photo printed on paper: a crop around the face, printed so the face box is ``face_cm`` wide.

    Returns the texture and the sheet's width and height (cm). The printer compresses the
    photo's range to ink on paper (black ink reflects ~5-10%, paper ~85-92%) and may leave a
    white margin.
    """
    img = photo.image
    ih, iw = img.shape[:2]
    left, top, right, bottom = photo.face_box
    face_w = right - left + 1
    fcx, fcy = (left + right) / 2.0, (top + bottom) / 2.0
    # The attacker prints the head and shoulders, or the whole photo when it is already tight.
    half = face_w * rng.uniform(1.1, 2.2)
    x0, x1 = max(0, round(fcx - half)), min(iw, round(fcx + half))
    y0, y1 = max(0, round(fcy - half * 1.15)), min(ih, round(fcy + half * 1.25))
    crop = img[y0:y1, x0:x1]
    cm_per_photo_px = face_cm / face_w
    scale = px_per_cm * cm_per_photo_px  # texture pixels per photo pixel
    body = _resample(crop, scale).astype(np.float32) / 255.0
    margin_cm = rng.choice([0.0, 0.0, rng.uniform(0.3, 1.2)])
    margin = round(margin_cm * px_per_cm)
    paper = np.array([rng.uniform(0.85, 0.92)] * 3, dtype=np.float32)
    paper *= np.array([1.0, rng.uniform(0.98, 1.0), rng.uniform(0.95, 1.0)], dtype=np.float32)
    black = rng.uniform(0.05, 0.10)
    ink_gamma = rng.uniform(0.9, 1.15)
    printed = black + (paper - black) * np.power(body, ink_gamma)
    h, w = body.shape[0] + 2 * margin, body.shape[1] + 2 * margin
    albedo = np.empty((h, w, 3), dtype=np.float32)
    albedo[:] = paper
    albedo[margin : margin + body.shape[0], margin : margin + body.shape[1]] = printed
    # Paper fibre: a faint fixed texture.
    albedo *= 1.0 + rng.normal(0.0, 0.01, size=(h, w, 1)).astype(np.float32)
    tex = SheetTexture(
        albedo=np.clip(albedo, 0.0, 1.0),
        emission=None,
        alpha=np.ones((h, w), dtype=np.float32),
        photo_scale=scale,
        photo_offset=(margin - x0 * scale, margin - y0 * scale),
    )
    return tex, w / px_per_cm, h / px_per_cm


def screen_texture(
    photo: Photo, rng: np.random.Generator, px_per_cm: float
) -> tuple[SheetTexture, float, float]:
    """A phone or tablet showing the photo zoomed on the face, in a dark bezel with round corners."""
    if rng.random() < 0.55:  # phone, portrait
        screen_w, screen_h = rng.uniform(6.3, 7.2), rng.uniform(13.5, 15.5)
        bezel = rng.uniform(0.25, 0.5)
        face_frac = rng.uniform(0.5, 0.8)
        pitch_cm = rng.uniform(0.0055, 0.0085)
    else:  # tablet, either orientation
        screen_w, screen_h = rng.uniform(13.5, 17.5), rng.uniform(19.5, 24.0)
        if rng.random() < 0.4:
            screen_w, screen_h = screen_h, screen_w
        bezel = rng.uniform(0.6, 1.1)
        face_frac = rng.uniform(0.35, 0.6)
        pitch_cm = rng.uniform(0.0085, 0.012)
    img = photo.image
    left, top, right, bottom = photo.face_box
    face_w = right - left + 1
    fcx, fcy = (left + right) / 2.0, (top + bottom) / 2.0
    face_cm = min(face_frac * screen_w, 17.0)
    cm_per_photo_px = face_cm / face_w
    scale = px_per_cm * cm_per_photo_px
    sw, sh = round(screen_w * px_per_cm), round(screen_h * px_per_cm)
    # Photo pixels -> screen texture pixels, face centred (slightly above the middle).
    off_x = sw / 2.0 - fcx * scale
    off_y = sh * rng.uniform(0.4, 0.5) - fcy * scale
    m = np.array([[scale, 0.0, off_x], [0.0, scale, off_y]])
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    content = cv2.warpAffine(img, m, (sw, sh), flags=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    content_f = np.asarray(content, dtype=np.float32) / 255.0
    b = round(bezel * px_per_cm)
    h, w = sh + 2 * b, sw + 2 * b
    emission = np.zeros((h, w, 3), dtype=np.float32)
    black_level = rng.choice([0.0, rng.uniform(0.02, 0.05)])  # OLED or LCD
    gamma = rng.uniform(0.85, 1.2)
    cast = np.array([rng.uniform(1.0, 1.12), rng.uniform(0.97, 1.03), rng.uniform(0.88, 1.0)], np.float32)
    if rng.random() < 0.5:  # "night mode" warm cast instead of the usual cool one (BGR order)
        cast = cast[::-1].copy()
    screen = black_level + (1.0 - black_level) * np.power(content_f, gamma) * cast
    emission[b : b + sh, b : b + sw] = np.clip(screen, 0.0, 1.0)
    albedo = np.full((h, w, 3), rng.uniform(0.03, 0.12), dtype=np.float32)  # the bezel
    albedo[b : b + sh, b : b + sw] = 0.03  # glass over the panel reflects a little
    alpha = _rounded_rect_alpha(h, w, rng.uniform(0.5, 1.2) * px_per_cm)
    tex = SheetTexture(
        albedo=albedo,
        emission=emission,
        alpha=alpha,
        photo_scale=scale,
        photo_offset=(off_x + b, off_y + b),
        moire_pitch_cm=pitch_cm if rng.random() < 0.7 else 0.0,
        moire_amplitude=rng.uniform(0.04, 0.15),
        screen_gamma=gamma,
        screen_level=rng.uniform(170.0, 255.0),
    )
    return tex, w / px_per_cm, h / px_per_cm


# --- rendering -----------------------------------------------------------------------------------


def render_radiance(
    camera: Camera, sheet: Sheet, pose: Pose, texture: SheetTexture, lighting: Lighting
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """The object's light as the camera sees it (HxWx3, pixel units) and its coverage (HxW)."""
    region = sheet_region(camera, sheet, pose)
    hits = cast_rays(camera, sheet, pose, region)
    h, w = texture.alpha.shape
    tx = (hits.u / sheet.width_cm + 0.5) * w - 0.5
    ty = (hits.v / sheet.height_cm + 0.5) * h - 0.5
    map_x = np.where(hits.valid, tx, -10.0).astype(np.float32)
    map_y = np.where(hits.valid, ty, -10.0).astype(np.float32)

    def warp(img: NDArray[np.float32]) -> NDArray[np.float32]:
        out = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return np.asarray(out, dtype=np.float32)

    alpha = warp(texture.alpha) * hits.valid.astype(np.float32)
    albedo = warp(texture.albedo)
    to_light = lighting.light_pos - hits.points
    to_light /= np.linalg.norm(to_light, axis=-1, keepdims=True)
    n = hits.normals
    cos_l = np.clip(np.sum(n * to_light, axis=-1), 0.0, 1.0)
    irradiance = lighting.ambient + lighting.diffuse * cos_l
    radiance = albedo * (lighting.scene_level * irradiance)[..., None]
    view = -hits.points / np.linalg.norm(hits.points, axis=-1, keepdims=True)
    cos_v = np.clip(np.sum(n * view, axis=-1), 0.0, 1.0)
    if texture.emission is not None:
        emission = warp(texture.emission)
        if texture.moire_pitch_cm > 0:
            # The panel's pixel grid, point-sampled by the sensor: where its projected frequency
            # falls near a multiple of the sensor's, the alias is a slow beat (moiré); the lens
            # blur applied later removes the fast aliases.
            p = texture.moire_pitch_cm
            grid = 0.5 * (np.cos(2 * math.pi * hits.u / p) + np.cos(2 * math.pi * hits.v / p))
            emission *= (1.0 + texture.moire_amplitude * grid)[..., None].astype(np.float32)
        # Panels dim off-axis.
        radiance += emission * (texture.screen_level * np.power(cos_v, 0.5))[..., None]
    if lighting.specular > 0:
        reflect = 2.0 * cos_l[..., None] * n - to_light
        spec = np.power(np.clip(np.sum(reflect * view, axis=-1), 0.0, 1.0), lighting.shininess)
        radiance += (lighting.specular * spec)[..., None]
    x0, y0, x1, y1 = region
    full_radiance = np.zeros((camera.height, camera.width, 3), dtype=np.float32)
    full_alpha = np.zeros((camera.height, camera.width), dtype=np.float32)
    full_radiance[y0:y1, x0:x1] = radiance * alpha[..., None]
    full_alpha[y0:y1, x0:x1] = alpha
    return full_radiance, full_alpha


def _motion_kernel(dx: float, dy: float) -> NDArray[np.float32] | None:
    length = math.hypot(dx, dy)
    if length < 1.0:
        return None
    size = math.ceil(length) | 1
    k = np.zeros((size, size), dtype=np.float32)
    c = size // 2
    for s in np.linspace(-0.5, 0.5, 4 * size):
        k[round(c + s * dy), round(c + s * dx)] += 1.0
    return np.asarray(k / k.sum(), dtype=np.float32)


def compose_frame(
    background: NDArray[np.float32],
    radiance: NDArray[np.float32],
    alpha: NDArray[np.float32],
    *,
    defocus_sigma: float,
    motion: tuple[float, float],
    gain: float,
    noise_shot: float,
    noise_read: float,
    rng: np.random.Generator,
) -> NDArray[np.uint8]:
    """Blur the moving object (motion and defocus), lay it over the background, expose, add noise."""
    kernel = _motion_kernel(*motion)
    if kernel is not None:
        radiance = np.asarray(cv2.filter2D(radiance, -1, kernel), dtype=np.float32)
        alpha = np.asarray(cv2.filter2D(alpha, -1, kernel), dtype=np.float32)
    frame = background * (1.0 - alpha[..., None]) + radiance
    if defocus_sigma > 0.05:
        frame = np.asarray(cv2.GaussianBlur(frame, (0, 0), defocus_sigma), dtype=np.float32)
    frame = frame * gain
    sigma = np.sqrt(np.maximum(frame, 0.0) * noise_shot + noise_read**2)
    frame = frame + rng.standard_normal(frame.shape).astype(np.float32) * sigma
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8)


def encode_jpeg(frame: NDArray[np.uint8], quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return bytes(buf.tobytes())


# --- backgrounds ---------------------------------------------------------------------------------


def make_background(
    camera: Camera, rng: np.random.Generator, scenes: Sequence[NDArray[np.uint8]] = ()
) -> NDArray[np.float32]:
    """A plain wall, a wall with a lighting gradient, or a real photo thrown out of focus."""
    h, w = camera.height, camera.width
    kind = rng.choice(["plain", "gradient", "scene"] if scenes else ["plain", "gradient"])
    if kind == "scene":
        scene = scenes[int(rng.integers(len(scenes)))]
        sh, sw = scene.shape[:2]
        scale = max(w / sw, h / sh) * rng.uniform(1.0, 1.5)
        resized = cv2.resize(
            scene, (math.ceil(sw * scale), math.ceil(sh * scale)), interpolation=cv2.INTER_AREA
        )
        y0 = int(rng.integers(resized.shape[0] - h + 1))
        x0 = int(rng.integers(resized.shape[1] - w + 1))
        crop = np.asarray(resized[y0 : y0 + h, x0 : x0 + w], dtype=np.float32)
        # Far behind the object, well out of focus: no face in it stays detectable.
        return np.asarray(cv2.GaussianBlur(crop, (0, 0), rng.uniform(9.0, 16.0)), dtype=np.float32)
    tint = np.array([rng.uniform(0.9, 1.05), rng.uniform(0.95, 1.05), rng.uniform(0.95, 1.1)])
    level = rng.uniform(90.0, 210.0)
    bg = np.empty((h, w, 3), dtype=np.float32)
    bg[:] = (level * tint).astype(np.float32)
    if kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = (np.cos(angle) * (xx / w - 0.5) + np.sin(angle) * (yy / h - 0.5)).astype(np.float32)
        bg *= (1.0 + rng.uniform(0.2, 0.6) * ramp)[..., None]
    return bg


# --- the attack burst ----------------------------------------------------------------------------


def _hand_motion(rng: np.random.Generator, n: int, dt: float) -> tuple[FloatArray, FloatArray]:
    """Hand-held motion: a drift, a slow deliberate swing (the attacker tilting the object to fake
    a head turn) and tremor. Returns per-frame (yaw, pitch, roll) degrees and (x, y, z) cm offsets."""
    t = np.arange(n) * dt
    span = max(t[-1], dt)
    base = rng.uniform(-12.0, 12.0, size=3) * np.array([1.0, 1.0, 0.8])
    swing_amp = rng.uniform(0.0, 12.0, size=3) * (rng.random(3) < 0.6)
    swing_phase = rng.uniform(0, 2 * math.pi, size=3)
    swing_freq = rng.uniform(0.3, 1.0, size=3) / span
    angles = base + swing_amp * np.sin(2 * math.pi * swing_freq * t[:, None] + swing_phase)
    angles += np.cumsum(rng.normal(0.0, 0.4, size=(n, 3)), axis=0)
    angles = np.clip(angles, -25.0, 25.0)
    drift = rng.uniform(-1.0, 1.0, size=3) * np.array([4.0, 3.0, 6.0])
    offsets = drift * (t[:, None] / span) + np.cumsum(rng.normal(0.0, 0.2, size=(n, 3)), axis=0)
    return angles, offsets


def sample_burst(
    photo: Photo,
    attack_type: AttackType,
    rng: np.random.Generator,
    camera: Camera,
) -> tuple[BurstSpec, SheetTexture]:
    """Draw one attack presentation: the object, its path in front of the camera, light and camera."""
    n = int(rng.integers(5, 16))
    fps = 29.97 / int(rng.integers(2, 4))  # the door client sends every 2nd or 3rd frame
    dt = 1.0 / fps
    # The attacker shows the face at the size the door expects of a visitor (its framing guide):
    # the face box 75-170 px wide, which sets how far the object is held.
    target_px = rng.uniform(75.0, 170.0)
    if attack_type == "screen":
        # A screen's face is small: the attacker holds it nearer, so the face looks like a visitor's.
        # The screen is drawn once coarsely to learn its size, then again finely enough for the
        # distance it is held at (the same draws, so the same screen).
        screen_seed = int(rng.integers(2**31))
        coarse = 10.0
        texture, _, _ = screen_texture(photo, np.random.default_rng(screen_seed), coarse)
        face_cm = (photo.face_box[2] - photo.face_box[0] + 1) * texture.photo_scale / coarse
        distance = float(np.clip(camera.focal_px * face_cm / target_px, 15.0, 80.0))
        px_per_cm = camera.focal_px / distance * 1.5
        texture, width_cm, height_cm = screen_texture(photo, np.random.default_rng(screen_seed), px_per_cm)
        sheet = Sheet(width_cm, height_cm)
    else:
        # Life-size or a little smaller: the face box of an adult is ~13-16 cm wide.
        face_cm = rng.uniform(11.0, 17.0)
        distance = float(np.clip(camera.focal_px * face_cm / target_px, 30.0, 80.0))
        px_per_cm = camera.focal_px / distance * 1.5
        texture, width_cm, height_cm = print_texture(photo, rng, px_per_cm, face_cm)
        if attack_type == "print_bent":
            axis: BendAxis = "vertical" if rng.random() < 0.6 else "horizontal"
            span_cm = width_cm if axis == "vertical" else height_cm
            # Radius from a gentle curl to a strong bow; the arc never exceeds ~140°.
            radius = max(
                rng.choice([rng.uniform(8.0, 15.0), rng.uniform(15.0, 30.0), rng.uniform(30.0, 60.0)]),
                span_cm / 2.4,
            )
            sheet = Sheet(width_cm, height_cm, axis, float(radius), int(rng.choice([-1, 1])))
        else:
            sheet = Sheet(width_cm, height_cm)
    angles, offsets = _hand_motion(rng, n, dt)
    # Aim so the face lands near the middle of the frame (the door client's framing guide).
    face = photo.face_box
    face_tex = np.array([(face[0] + face[2]) / 2.0, (face[1] + face[3]) / 2.0]) * texture.photo_scale
    face_tex += np.asarray(texture.photo_offset)
    fu, fv = tex_to_sheet(texture, sheet, face_tex[:1], face_tex[1:])[0]
    face_local = sheet_points(sheet, np.array([fu]), np.array([fv]))[0]
    aim = np.array([rng.uniform(-60.0, 60.0), rng.uniform(-50.0, 40.0)])  # pixels from the centre
    poses = []
    for k in range(n):
        rot = rotation_matrix(*angles[k])
        z = distance + offsets[k, 2]
        want = np.array([aim[0] * z / camera.focal_px, aim[1] * z / camera.focal_px, z])
        translation = want - rot @ face_local + np.array([offsets[k, 0], offsets[k, 1], 0.0])
        poses.append(Pose(rot, translation))
    glossy = attack_type == "screen" or rng.random() < 0.35
    lighting = Lighting(
        light_pos=np.array([rng.uniform(-80, 80), rng.uniform(-220, -60), rng.uniform(-100, 60)]),
        scene_level=rng.uniform(190.0, 255.0),
        ambient=rng.uniform(0.4, 0.65),
        diffuse=rng.uniform(0.35, 0.6),
        specular=rng.uniform(20.0, 90.0) if glossy else 0.0,
        shininess=rng.uniform(40.0, 300.0),
    )
    spec = BurstSpec(
        attack_type=attack_type,
        sheet=sheet,
        poses=poses,
        timestamps=[k * dt for k in range(n)],
        lighting=lighting,
        defocus_sigma=rng.uniform(0.3, 1.3),
        exposure_gains=list(1.0 + np.cumsum(rng.normal(0.0, 0.015, size=n))),
        noise_shot=rng.uniform(0.02, 0.12),
        noise_read=rng.uniform(1.0, 3.0),
        jpeg_qualities=[int(q) for q in rng.integers(70, 91, size=n)],
        shutter_fraction=rng.uniform(0.1, 0.5),
        noise_seed=int(rng.integers(2**31)),
    )
    return spec, texture


def render_frames(
    spec: BurstSpec, texture: SheetTexture, background: NDArray[np.float32], camera: Camera
) -> list[NDArray[np.uint8]]:
    """The burst's frames before JPEG (BGR uint8)."""
    rng = np.random.default_rng(spec.noise_seed)
    centre_u = np.array([0.0])
    frames = []
    prev_centre: FloatArray | None = None
    for k, pose in enumerate(spec.poses):
        radiance, alpha = render_radiance(camera, spec.sheet, pose, texture, spec.lighting)
        centre = project_sheet(camera, spec.sheet, pose, centre_u, centre_u)[0]
        if prev_centre is None and len(spec.poses) > 1:
            nxt = project_sheet(camera, spec.sheet, spec.poses[1], centre_u, centre_u)[0]
            step = nxt - centre
        else:
            step = centre - (prev_centre if prev_centre is not None else centre)
        prev_centre = centre
        blur = step * spec.shutter_fraction
        frames.append(
            compose_frame(
                background,
                radiance,
                alpha,
                defocus_sigma=spec.defocus_sigma,
                motion=(float(blur[0]), float(blur[1])),
                gain=spec.exposure_gains[k],
                noise_shot=spec.noise_shot,
                noise_read=spec.noise_read,
                rng=rng,
            )
        )
    return frames


def render_attack(
    photo: Photo,
    attack_type: AttackType,
    seed: int,
    *,
    scenes: Sequence[NDArray[np.uint8]] = (),
    camera: Camera | None = None,
) -> AttackBurst:
    """One attack burst (JPEG frames as the door camera sends them), deterministic for ``seed``."""
    camera = camera or Camera()
    rng = np.random.default_rng(seed)
    spec, texture = sample_burst(photo, attack_type, rng, camera)
    background = make_background(camera, rng, scenes)
    frames = render_frames(spec, texture, background, camera)
    jpegs = [encode_jpeg(f, q) for f, q in zip(frames, spec.jpeg_qualities, strict=True)]
    left, top, right, bottom = photo.face_box
    corners = np.array([[left, top], [right, top], [right, bottom], [left, bottom]], dtype=np.float64)
    face = photo_to_frame(camera, spec.sheet, spec.poses[0], texture, corners)
    # How far the object's nearest outer edge is from the face centre, in face widths (on the sheet).
    tex_corners = corners * texture.photo_scale + np.asarray(texture.photo_offset)
    uv = tex_to_sheet(texture, spec.sheet, tex_corners[:, 0], tex_corners[:, 1])
    face_cm = float(np.ptp(uv[:, 0]))
    cu, cv = uv.mean(axis=0)
    half_w, half_h = spec.sheet.width_cm / 2.0, spec.sheet.height_cm / 2.0
    edge_cm = min(half_w - cu, half_w + cu, half_h - cv, half_h + cv)
    details = {
        "distance_cm": float(spec.poses[0].translation[2]),
        "frames": float(len(frames)),
        "face_px": float(np.ptp(face[:, 0])),  # the photo's face box, as wide as it looks in frame 0
        "edge_face_widths": float(edge_cm / face_cm),
    }
    if spec.sheet.bend_axis != "none":
        details["radius_cm"] = spec.sheet.radius_cm
    return AttackBurst(attack_type, photo.name, jpegs, spec.timestamps, spec, texture, details)
