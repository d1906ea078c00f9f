"""`facegate explain` and `facegate visualize units` (registered in app/cli.py).

``explain``: the occlusion sensitivity map of a probe face against a reference face (two image
files, or an access event's snapshot against its person's kept enrolment photo), as a PNG.
``visualize units``: the image patches that most excite units of an encoder layer (a grid PNG).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from numpy.typing import NDArray

from app.settings import get_settings

visualize_cli = typer.Typer(no_args_is_help=True, help="Look inside the encoders (model inspection).")

ProfileOpt = Annotated[
    str | None,
    typer.Option("--profile", help="Model profile: fusion, sface or dlib; default FACEGATE_PROFILE."),
]


# Refusals that are about a picture (exit 1), not about the call (exit 2).
PICTURE_ERRORS = frozenset({"no_face", "not_an_image", "image_too_large"})


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def explain(
    *,
    probe: Annotated[Path | None, typer.Argument(help="The probe image (whose face is occluded).")] = None,
    reference: Annotated[Path | None, typer.Argument(help="The reference image.")] = None,
    out: Annotated[Path, typer.Option("--out", help="The PNG to write.")] = Path("explain.png"),
    event: Annotated[
        int | None,
        typer.Option(
            "--event",
            min=1,
            help="Explain an access event: its face snapshot against its person's kept photo.",
        ),
    ] = None,
    profile: ProfileOpt = None,
    grid: Annotated[int, typer.Option(min=2, max=32, help="Patch positions per side of the chip.")] = 8,
    patch: Annotated[
        float, typer.Option(min=0.05, max=0.5, help="Patch side as a share of the chip's side.")
    ] = 0.25,
) -> None:
    """Occlusion sensitivity: which parts of the probe's face the distance to the reference
    depends on (red: hiding it raises the distance). The largest face of each image is used."""
    import cv2

    from app.cli import _checked_engine, _setup_logging, ensure_models
    from app.store.db import SchemaError, make_session_factory
    from app.vision.explain import ExplainError, encode_png, explain_pair, render
    from app.vision.imageio import ImageError, decode_image
    from app.vision.manifest import ModelArtifactError
    from app.vision.pipeline import FacePipeline
    from app.vision.profiles import profile_spec

    if event is not None and (probe is not None or reference is not None):
        raise _fail("give PROBE and REFERENCE images, or --event ID (not both)")
    pair = (probe, reference) if probe is not None and reference is not None else None
    if event is None and pair is None:
        raise _fail("give PROBE and REFERENCE images, or --event ID")
    _setup_logging("WARNING")
    settings = get_settings()
    try:
        name = profile_spec(profile or settings.profile).name
        ensure_models(settings)
        pipeline = FacePipeline.load(settings, profile=name)
        start = time.perf_counter()
        if event is not None:
            # The store and the event use case only here: a pair needs no database.
            from app.services.explain import ExplainEventError, explain_event

            try:
                with _checked_engine(settings) as engine:
                    sessions = make_session_factory(engine)
                    explanation = explain_event(
                        sessions, pipeline, settings, event, grid=grid, patch_fraction=patch
                    )
            except ExplainEventError as exc:  # no face, an unreadable picture: 1; no such event...: 2
                raise _fail(exc.message, 1 if exc.code in PICTURE_ERRORS else 2) from exc
        elif pair is not None:
            images: list[NDArray[np.uint8]] = []
            for path in pair:
                try:
                    bgr = decode_image(
                        path.read_bytes(), max_pixels=settings.max_image_pixels, apply_exif_orientation=True
                    )
                except ImageError as exc:
                    raise _fail(f"{path}: {exc.message}", 1) from exc
                images.append(np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8))
            explanation = explain_pair(pipeline, images[0], images[1], grid=grid, patch_fraction=patch)
        png = encode_png(render(explanation))
        seconds = time.perf_counter() - start
        out.write_bytes(png)
    except ExplainError as exc:
        raise _fail(exc.message, 1) from exc
    except (SchemaError, ModelArtifactError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from exc
    occ = explanation.occlusion
    typer.echo(
        f"{out}: profile {name}, distance {occ.base_distance:.4f} ({explanation.metric}), "
        f"{occ.grid}x{occ.grid} patches of {occ.patch_px} px, "
        f"largest change {float(abs(occ.patch_deltas).max()):+.4f}; {seconds:.2f} s"
    )


@visualize_cli.command("units")
def visualize_units(
    *,
    layer: Annotated[
        str | None, typer.Option("--layer", help="A tensor (or node) name of the encoder graph; see --list.")
    ] = None,
    folder: Annotated[Path | None, typer.Option("--folder", help="Photos to search (recursively).")] = None,
    units: Annotated[int, typer.Option("--units", min=1, max=64, help="Show units 0..N-1.")] = 8,
    channels: Annotated[
        str | None, typer.Option("--channels", help="Comma-separated units to show instead, e.g. 3,17,40.")
    ] = None,
    top: Annotated[int, typer.Option("--top", min=1, max=32, help="Patches per unit.")] = 8,
    cell: Annotated[int, typer.Option("--cell", min=16, max=256, help="Patch side in the grid (px).")] = 72,
    out: Annotated[Path, typer.Option("--out", help="The grid PNG to write.")] = Path("units.png"),
    encoder: Annotated[
        str | None,
        typer.Option("--encoder", help="sface or dlib (the profile's encoders); default its first."),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many photos.")] = 1000,
    list_layers: Annotated[
        bool, typer.Option("--list", help="List the layers with a receptive field, then stop.")
    ] = False,
    profile: ProfileOpt = None,
) -> None:
    """Zeiler & Fergus: the face patches that most excite units of an encoder layer, as a grid
    (rows: units; columns: their strongest patches, each the unit's receptive field on the chip)."""
    import onnx

    from app.cli import _setup_logging, ensure_models
    from app.evaluation.receptive_field import ReceptiveFieldError, spatial_tensors
    from app.evaluation.units import LayerProbe, collect_chips, image_files, render_grid, top_patches
    from app.vision.explain import encode_png, largest_chips
    from app.vision.manifest import ModelArtifactError, load_manifest
    from app.vision.pipeline import FacePipeline
    from app.vision.profiles import profile_spec

    _setup_logging("INFO")
    settings = get_settings()
    try:
        spec = profile_spec(profile or settings.profile)
        names = {"sface": "sface", "dlib": "encoder"}
        entry = names.get(encoder or "", spec.encoder) if encoder else spec.encoder
        if entry not in spec.encoders:
            raise ValueError(f"profile {spec.name} has no encoder {encoder!r} (it has {spec.encoders})")
        ensure_models(settings)
        model_path = settings.models_path / load_manifest(settings.models_path).entry(entry).file
        if list_layers:
            for field in spatial_tensors(onnx.load(str(model_path))):
                typer.echo(field.describe())
            return
        if layer is None or folder is None:
            raise ValueError("give --layer and --folder (or --list)")
        chosen = [int(c) for c in channels.split(",")] if channels else list(range(units))
        probe = LayerProbe(
            model_path, layer, providers=settings.onnx_providers, threads=settings.onnx_intra_op_threads
        )
        pipeline = FacePipeline.load(settings, profile=spec.name)
        which = spec.encoders.index(entry)

        def align(rgb: NDArray[np.uint8]) -> NDArray[np.uint8] | None:
            chips = largest_chips(pipeline, rgb)
            return None if chips is None else chips[which]

        files = image_files(folder, limit)
        start = time.perf_counter()
        chips = collect_chips(files, align, progress=lambda m: typer.echo(m, err=True))
        result = top_patches(probe, chips, chosen, top, cell=cell)
        field = result.field
        title = (
            f"{entry}.onnx {result.layer} ({result.channels} units): top {top} of {result.images} faces; "
            f"field {field.height.extent}x{field.width.extent} px, jump {field.height.jump}"
        )
        out.write_bytes(encode_png(render_grid(result, title), compression=9))
    except (ReceptiveFieldError, ModelArtifactError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from exc
    typer.echo(field.describe())
    for unit, row in zip(result.units, result.top, strict=True):
        where = " ".join(f"({p.row},{p.col})" for p in row)
        share = float(result.position_share[unit])
        typer.echo(
            f"unit {unit}: top at map positions {where}; its commonest position in {share:.0%} of faces"
        )
    typer.echo(
        f"all {result.channels} units: median {float(np.median(result.position_share)):.0%} of faces at a "
        f"unit's commonest position (1 in {result.map_positions} if position did not matter)"
    )
    typer.echo(
        f"{out}: {len(chosen)} units x {top} patches from {result.images} faces "
        f"({time.perf_counter() - start:.1f} s)"
    )
