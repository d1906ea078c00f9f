"""The `facegate` command line."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from app.settings import Settings, get_settings
from app.vision.manifest import ModelArtifactError

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="FaceGate face-entry access control.")
models_cli = typer.Typer(no_args_is_help=True, help="Build and check the model artifacts.")
cli.add_typer(models_cli, name="models")
eval_cli = typer.Typer(no_args_is_help=True, help="Measure accuracy on labelled photos.")
cli.add_typer(eval_cli, name="eval")
db_cli = typer.Typer(no_args_is_help=True, help="Database schema (Alembic migrations).")
cli.add_typer(db_cli, name="db")
keys_cli = typer.Typer(no_args_is_help=True, help="API keys.")
cli.add_typer(keys_cli, name="keys")

log = logging.getLogger("facegate")


def _setup_logging(level: str = "INFO") -> None:
    # Logs go to stderr so stdout stays machine-readable (JSON lines, key secrets).
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def ensure_models(settings: Settings) -> None:
    """Build the artifacts when the model directory has none (first start on a fresh machine)."""
    from app.vision.manifest import MANIFEST_NAME

    if not (settings.models_path / MANIFEST_NAME).exists():
        from models.build import build_models

        log.info("no model artifacts in %s: building them now", settings.models_path)
        build_models(settings.models_path)


@models_cli.command("build")
def models_build(
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when up to date.")] = False,
    model_dir: Annotated[Path | None, typer.Option(help="Default: FACEGATE_MODEL_DIR.")] = None,
) -> None:
    """Convert dlib's pretrained models to ONNX/npz and write manifest.json (idempotent)."""
    from models.build import build_models

    _setup_logging()
    target = model_dir or get_settings().models_path
    manifest = build_models(target, force=force)
    for name, entry in manifest.models.items():
        typer.echo(f"{name:10s} {target / entry.file}  sha256 {entry.sha256[:16]}…  version {entry.version}")


@cli.command()
def embed(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per image.")] = False,
) -> None:
    """Detect, align and encode every face in each image (dlib's coordinate conventions)."""
    from app.vision.imageio import ImageError, decode_image
    from app.vision.pipeline import FacePipeline

    _setup_logging("WARNING")
    settings = get_settings()
    try:
        ensure_models(settings)
        # The embed contract is dlib's own encoding, so never the flip-averaged one.
        pipeline = FacePipeline.load(settings, flip_average=False)
    except ModelArtifactError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    failed = 0
    for path in images:
        try:
            data = path.read_bytes()
            bgr = decode_image(data, max_pixels=settings.max_image_pixels)
        except (OSError, ImageError) as exc:
            failed += 1
            code = exc.code if isinstance(exc, ImageError) else "unreadable_file"
            message = exc.message if isinstance(exc, ImageError) else f"cannot read file: {exc.strerror}"
            typer.echo(f"error: {path}: {message}", err=True)
            if as_json:
                typer.echo(json.dumps({"file": str(path), "error": {"code": code, "message": message}}))
            continue
        faces = pipeline.faces(bgr)
        if as_json:
            record = {
                "file": str(path),
                "faces": [
                    {
                        "box": list(f.box),
                        "score": float(f.score),
                        "landmarks": [[int(x), int(y)] for x, y in f.landmarks],
                        "embedding": [float(v) for v in f.embedding],
                    }
                    for f in faces
                ],
            }
            typer.echo(json.dumps(record))
        else:
            typer.echo(f"{path}: {len(faces)} face(s)")
            for f in faces:
                typer.echo(f"  box={list(f.box)} score={f.score:.3f}")
    if failed:
        raise typer.Exit(1)


@eval_cli.command("verify")
def eval_verify(
    pairs: Annotated[Path, typer.Option(help="CSV fold,img1,img2,same (paths relative to the CSV).")],
    tau: Annotated[float | None, typer.Option(help="Threshold; default FACEGATE_TAU.")] = None,
    limit: Annotated[int | None, typer.Option(help="Use only this many pairs (half same, half not).")] = None,
) -> None:
    """Verification accuracy of the whole pipeline (detect, landmarks, align, encode) on image pairs."""
    from app.evaluation.pairs import evaluate_pairs
    from app.vision.pipeline import FacePipeline

    _setup_logging()
    settings = get_settings()
    ensure_models(settings)
    pipeline = FacePipeline.load(settings)
    report = evaluate_pairs(
        pipeline,
        pairs,
        tau if tau is not None else settings.tau,
        limit,
        cache_dir=settings.data_dir / "cache",
    )
    typer.echo(
        f"pairs {report.pairs}, images {report.images}, images with no face found {len(report.no_face)}"
    )
    for path in report.no_face:
        typer.echo(f"  no face: {path}")
    typer.echo(f"accuracy at tau={report.tau:.3f}: {report.accuracy_at_tau * 100:.2f}%")
    if report.folds:
        for fold in report.folds:
            typer.echo(
                f"  fold {fold.fold}: tau={fold.tau:.4f} (chosen on the other folds) "
                f"accuracy {fold.accuracy * 100:.2f}%"
            )
        typer.echo(
            f"accuracy with tau chosen on the other folds: {report.cv_accuracy * 100:.2f}% "
            f"+/- {report.cv_std * 100:.2f} over {len(report.folds)} folds"
        )


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database (FACEGATE_DATABASE_URL) to the newest schema."""
    from app.store.db import upgrade

    _setup_logging()
    settings = get_settings()
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.db_url)
    typer.echo("database schema is up to date")


@keys_cli.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="admin, door or auditor.")],
    name: Annotated[str, typer.Option(help="Who or what holds the key.")],
    door_id: Annotated[int | None, typer.Option(help="The door a door key may post frames for.")] = None,
) -> None:
    """Create an API key; the secret is printed once, alone on the last line of stdout."""
    from app.store import queries
    from app.store.db import SchemaError, check_schema, make_engine, make_session_factory

    _setup_logging("WARNING")
    settings = get_settings()
    engine = make_engine(settings.db_url)
    try:
        check_schema(engine)
        with make_session_factory(engine)() as session:
            if door_id is not None and queries.get_door(session, door_id) is None:
                raise ValueError(f"door {door_id} does not exist")
            key, secret = queries.create_api_key(session, role, name, door_id)
            session.commit()
    except (SchemaError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        engine.dispose()
    typer.echo(f"created {key.role} key {key.id} ({key.name}); store the secret now, it is not shown again:")
    typer.echo(secret)


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Run the HTTP service (builds the models first if none exist)."""
    import uvicorn

    from app.logging_setup import setup_logging
    from app.main import create_app
    from app.store.db import SchemaError, check_schema, make_engine

    settings = get_settings()
    setup_logging(settings.log_level, settings.log_json)
    try:
        ensure_models(settings)
        engine = make_engine(settings.db_url)
        check_schema(engine)
        engine.dispose()
    except (ModelArtifactError, SchemaError) as exc:
        log.error("%s", exc)
        raise typer.Exit(2) from exc
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
