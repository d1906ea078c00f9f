"""The `facegate` command line."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import typer

from app.cli_access import access_cli
from app.cli_explain import explain, visualize_cli
from app.cli_lockdown import lockdown_cli
from app.settings import Settings, get_settings
from app.vision.manifest import ModelArtifactError

if TYPE_CHECKING:  # the CLI imports the models lazily: `facegate db upgrade` needs none of them
    from sqlalchemy.engine import Engine

    from app.evaluation.liveness_eval import LivenessReport
    from app.evaluation.liveness_real import RealReport
    from app.vision.pipeline import FacePipeline

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="FaceGate face-entry access control.")
models_cli = typer.Typer(no_args_is_help=True, help="Build and check the model artifacts.")
cli.add_typer(models_cli, name="models")
eval_cli = typer.Typer(no_args_is_help=True, help="Measure accuracy on labelled photos.")
cli.add_typer(eval_cli, name="eval")
db_cli = typer.Typer(no_args_is_help=True, help="Database schema (Alembic migrations).")
cli.add_typer(db_cli, name="db")
keys_cli = typer.Typer(no_args_is_help=True, help="API keys.")
cli.add_typer(keys_cli, name="keys")
gallery_cli = typer.Typer(no_args_is_help=True, help="The enrolled gallery: template versions, re-encoding.")
cli.add_typer(gallery_cli, name="gallery")
audit_cli = typer.Typer(no_args_is_help=True, help="The tamper-evident audit log (hash chain).")
cli.add_typer(audit_cli, name="audit")
events_cli = typer.Typer(no_args_is_help=True, help="The access log: event snapshots.")
cli.add_typer(events_cli, name="events")
labels_cli = typer.Typer(no_args_is_help=True, help="Reviewer labels on access events.")
cli.add_typer(labels_cli, name="labels")
train_cli = typer.Typer(no_args_is_help=True, help="Train models on labelled faces (build time, CPU).")
cli.add_typer(train_cli, name="train")
cli.add_typer(lockdown_cli, name="lockdown")
cli.add_typer(access_cli, name="access")
cli.command("explain")(explain)
cli.add_typer(visualize_cli, name="visualize")

log = logging.getLogger("facegate")


def _setup_logging(level: str = "INFO") -> None:
    # Logs go to stderr so stdout stays machine-readable (JSON lines, key secrets).
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def ensure_models(settings: Settings) -> None:
    """Build the artifacts when the model directory has none (first start on a fresh machine), or
    lacks the 68-point model that FACEGATE_LIVENESS_LANDMARKS68 asks for."""
    from app.vision.manifest import MANIFEST_NAME, read_manifest

    path = settings.models_path
    if (path / MANIFEST_NAME).exists() and (
        not settings.liveness_landmarks68 or "landmarks68" in read_manifest(path).models
    ):
        return
    from models.build import build_models

    log.info("model artifacts missing in %s: building them now", path)
    try:
        build_models(path, landmarks68=settings.liveness_landmarks68)
    except OSError as exc:  # e.g. the image's read-only model folder
        raise ModelArtifactError(
            f"cannot build the models in {path} ({exc.strerror or exc}); build them where it is "
            "writable: `facegate models build` (add --landmarks68 for the 68-point model)"
        ) from exc


@contextmanager
def _checked_engine(settings: Settings) -> Iterator[Engine]:
    """An engine on a database at exactly this code's schema (else SchemaError), disposed on exit."""
    from app.store.db import check_schema, make_engine

    engine = make_engine(settings.db_url)
    try:
        check_schema(engine)
        yield engine
    finally:
        engine.dispose()


def _evaluate_liveness(
    settings: Settings, pipeline: FacePipeline, faces: Path, cache_dir: Path | None, **options: Any
) -> LivenessReport:
    """The liveness evaluation with the service's own models, detection settings and face gate."""
    from app.evaluation.liveness_eval import evaluate_liveness

    return evaluate_liveness(
        pipeline.faces,
        pipeline.liveness.judge,
        faces,
        operating_threshold=pipeline.liveness.threshold,
        cache_dir=cache_dir,
        model_key=_liveness_faces_key(settings, pipeline),
        min_face_px=settings.recognize_min_face_px,
        progress=log.info,
        **options,
    )


def _liveness_faces_key(settings: Settings, pipeline: FacePipeline) -> str:
    """What the cached faces depend on, whatever the profile: the built models, the detection
    settings and the pipeline's template version (which names its profile)."""
    from app.evaluation.liveness_real import faces_model_key

    detection = {
        name: value
        for name, value in settings.model_dump().items()
        if name.startswith("detect_") or name == "liveness_landmarks68"
    }
    detection["templates"] = pipeline.model_version
    return faces_model_key(settings.models_path, detection)


def _evaluate_real_liveness(
    settings: Settings, pipeline: FacePipeline, folder: Path, cache_dir: Path | None
) -> RealReport:
    """The real captures (../shared/faces/liveness) as door bursts, on the service's own path."""
    from app.evaluation.liveness_real import evaluate_real

    return evaluate_real(
        pipeline.faces,
        pipeline.liveness.judge,
        folder,
        cache_dir=cache_dir,
        model_key=_liveness_faces_key(settings, pipeline),
        min_face_px=settings.recognize_min_face_px,
        operating_threshold=pipeline.liveness.threshold,
        progress=log.info,
    )


ProfileOption = Annotated[
    str | None, typer.Option("--profile", help="Model profile: sface or dlib; default FACEGATE_PROFILE.")
]


def _evaluation_pipeline(profile: str | None = None) -> tuple[Settings, FacePipeline]:
    """Settings and the service's own pipeline (models built when missing) for the eval commands."""
    from app.vision.pipeline import FacePipeline
    from app.vision.profiles import profile_spec

    _setup_logging()
    settings = get_settings()
    try:
        name = profile_spec(profile or settings.profile).name
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    ensure_models(settings)
    pipeline = FacePipeline.load(settings, profile=name)
    typer.echo(f"profile {name} ({pipeline.profile.metric} distance), templates {pipeline.model_version}")
    return settings, pipeline


@models_cli.command("build")
def models_build(
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when up to date.")] = False,
    model_dir: Annotated[Path | None, typer.Option(help="Default: FACEGATE_MODEL_DIR.")] = None,
    landmarks68: Annotated[
        bool | None,
        typer.Option(
            "--landmarks68/--no-landmarks68",
            help="Also build dlib's 68-point model (non-commercial terms); default "
            "FACEGATE_LIVENESS_LANDMARKS68.",
        ),
    ] = None,
) -> None:
    """Convert dlib's pretrained models to ONNX/npz and write manifest.json (idempotent)."""
    from models.build import build_models

    _setup_logging()
    settings = get_settings()
    target = model_dir or settings.models_path
    with68 = settings.liveness_landmarks68 if landmarks68 is None else landmarks68
    manifest = build_models(target, force=force, landmarks68=with68)
    for name, entry in manifest.models.items():
        typer.echo(f"{name:10s} {target / entry.file}  sha256 {entry.sha256[:16]}…  version {entry.version}")


@models_cli.command("import-pad")
def models_import_pad(
    files: Annotated[
        list[Path], typer.Argument(help="The two MiniFASNet .onnx files, or the folder that holds them.")
    ],
    model_dir: Annotated[Path | None, typer.Option(help="Default: FACEGATE_MODEL_DIR.")] = None,
) -> None:
    """Import the operator's MiniFASNet pair as the PAD model (checked by sha256, added to the manifest)."""
    from models.import_pad import PadImportError, import_pad

    _setup_logging("WARNING")
    target = model_dir or get_settings().models_path
    try:
        manifest = import_pad(files, target)
    except (PadImportError, ModelArtifactError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    details = manifest.details("pad")
    for spec in details["files"]:
        path, digest = target / spec["file"], spec["sha256"][:16]
        typer.echo(f"pad  {path}  {spec['model']} at crop scale {spec['scale']}  sha256 {digest}…")
    typer.echo(f"pad  version {manifest.entry('pad').version}  licence {details['licence']}")


@cli.command()
def embed(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per image.")] = False,
    profile: ProfileOption = None,
) -> None:
    """Detect, align and encode every face in each image (boxes in dlib's coordinate conventions).

    ``--profile dlib`` gives dlib's own outputs; ``sface`` gives the unit-length SFace encodings
    the service stores, with YuNet's five points.
    """
    from app.vision.imageio import ImageError, decode_image
    from app.vision.pipeline import FacePipeline

    _setup_logging("WARNING")
    settings = get_settings()
    try:
        ensure_models(settings)
        # dlib's contract is its own plain encoding; other profiles give what the service stores.
        name = profile or settings.profile
        flip = False if name == "dlib" else None
        pipeline = FacePipeline.load(settings, flip_average=flip, profile=name)
    except (ModelArtifactError, ValueError) as exc:
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
                        **(
                            {"points": [[float(x), float(y)] for x, y in f.points]}
                            if f.points is not None and pipeline.profile.name != "dlib"
                            else {}
                        ),
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
    plots: Annotated[Path | None, typer.Option(help="PNG chart folder; default <data_dir>/reports.")] = None,
    profile: ProfileOption = None,
) -> None:
    """Verification accuracy (fold cross-validation), ROC, TAR@FAR and EER of the whole pipeline on pairs."""
    from app.evaluation.pairs import evaluate_pairs
    from app.evaluation.report import verification_charts, verification_lines

    settings, pipeline = _evaluation_pipeline(profile)
    report = evaluate_pairs(
        pipeline,
        pairs,
        tau if tau is not None else _reference_tau(settings, pipeline),
        limit,
        cache_dir=settings.data_dir / "cache",
    )
    for line in verification_lines(report):
        typer.echo(line)
    if 0 < report.same.sum() < report.pairs:
        charts = verification_charts(report, plots or settings.data_dir / "reports")
        typer.echo(f"charts: {charts.roc} {charts.distances}")


def _reference_tau(settings: Settings, pipeline: FacePipeline) -> float:
    """A pinned FACEGATE_TAU, else the profile's published 1:1 operating point (reports only)."""
    return settings.tau if settings.tau is not None else pipeline.profile.reference_tau


@eval_cli.command("openset")
def eval_openset(
    gallery: Annotated[Path, typer.Option(help="CSV identity,file,min_shots (paths relative to the CSV).")],
    probes: Annotated[Path, typer.Option(help="CSV file,true_identity,is_enrolled (relative paths).")],
    *,
    shots: Annotated[int, typer.Option(help="Enrol the gallery rows with min_shots <= this (1 or 3).")] = 1,
    tau: Annotated[float | None, typer.Option(help="Operating point; default FACEGATE_TAU.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N enrolled people, N strangers.")] = None,
    plots: Annotated[Path | None, typer.Option(help="DET chart folder; default <data_dir>/reports.")] = None,
    profile: ProfileOption = None,
) -> None:
    """Open-set search at the door: FNIR at FPIR 1%, 0.3%, 0.1%, rank-1 rate, DET curve (NIST FRVT 1:N).

    The door figures use the τ the service would apply to this gallery (calibrated for
    FACEGATE_TARGET_STRANGER_FAR at its K) unless --tau or FACEGATE_TAU pins one.
    """
    from app.evaluation.openset import evaluate_openset
    from app.evaluation.report import openset_chart, openset_lines

    settings, pipeline = _evaluation_pipeline(profile)
    try:
        cache = settings.data_dir / "cache"
        result = evaluate_openset(
            pipeline, settings, gallery, probes, shots, tau=tau, limit=limit, cache_dir=cache
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    for line in openset_lines(result):
        typer.echo(line)
    target = plots or settings.data_dir / "reports"
    chart = openset_chart([result], target / f"openset-shots{shots}-det.png")
    typer.echo(f"chart: {chart}")


@eval_cli.command("report")
def eval_report(
    *,
    pairs: Annotated[list[Path] | None, typer.Option(help="Pairs CSV (repeat for several).")] = None,
    gallery: Annotated[Path | None, typer.Option(help="Open-set gallery CSV (with --probes).")] = None,
    probes: Annotated[Path | None, typer.Option(help="Open-set probes CSV (with --gallery).")] = None,
    out: Annotated[Path | None, typer.Option(help="Report directory; default <data_dir>/reports.")] = None,
    limit: Annotated[int | None, typer.Option(help="Quick run: --limit for every evaluation.")] = None,
    pair_classifier: Annotated[
        Path, typer.Option(help="The pair head (ONNX + JSON sidecar) scored on --pairs; skipped if absent.")
    ] = Path("var/models-extra/pair_classifier.onnx"),
    liveness_attacks: Annotated[
        int, typer.Option(min=0, help="Liveness: attacks per type (slow; 0 leaves the section out).")
    ] = 0,
    faces: Annotated[Path, typer.Option(help="The shared real-face folder (liveness).")] = Path(
        "../shared/faces"
    ),
    profile: ProfileOption = None,
) -> None:
    """One Markdown page (report.md, plus its PNG charts) with every evaluation it is given data for."""
    from app.evaluation.openset import evaluate_openset
    from app.evaluation.pair_classifier import PairClassifier
    from app.evaluation.pairs import evaluate_pairs
    from app.evaluation.report import (
        Section,
        calibration_section,
        liveness_section,
        openset_calibration,
        openset_section,
        pair_classifier_section,
        pair_classifier_skipped,
        score_pairs,
        verification_section,
        write_report,
    )

    if (gallery is None) != (probes is None):
        typer.echo("error: --gallery and --probes go together", err=True)
        raise typer.Exit(2)
    if not pairs and gallery is None:
        typer.echo("error: nothing to report: give --pairs and/or --gallery with --probes", err=True)
        raise typer.Exit(2)
    settings, pipeline = _evaluation_pipeline(profile)
    cache, target = settings.data_dir / "cache", out or settings.data_dir / "reports"
    sections: list[Section] = []
    if pairs:
        tau = _reference_tau(settings, pipeline)
        reports = [evaluate_pairs(pipeline, p, tau, limit, cache_dir=cache) for p in pairs]
        sections.append(verification_section(reports, target))
        try:
            head = PairClassifier(pair_classifier, model_version=pipeline.model_version)
        except ModelArtifactError as exc:
            log.warning("pair classifier section skipped: %s", exc)
            sections.append(pair_classifier_skipped(pair_classifier, str(exc)))
        else:
            scored = [
                score_pairs(head, pipeline, p, r, limit=limit, cache_dir=cache)
                for p, r in zip(pairs, reports, strict=True)
            ]
            sections.append(pair_classifier_section(scored, pair_classifier, target))
    if gallery is not None and probes is not None:
        try:
            results = [
                evaluate_openset(pipeline, settings, gallery, probes, shots, limit=limit, cache_dir=cache)
                for shots in (1, 3)
            ]
            calibrations = [
                openset_calibration(pipeline, settings, gallery, probes, s, limit=limit, cache_dir=cache)
                for s in (1, 3)
            ]
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        sections.append(openset_section(results, target))
        sections.append(calibration_section(calibrations, target))
    if liveness_attacks > 0:
        if not faces.is_dir():
            typer.echo(f"error: liveness needs the folder {faces}", err=True)
            raise typer.Exit(2)
        live_report = _evaluate_liveness(
            settings, pipeline, faces, cache / "liveness", attacks_per_type=liveness_attacks
        )
        sections.append(liveness_section(live_report, liveness_attacks, target))
    typer.echo(f"report: {write_report(target, sections)}")


@eval_cli.command("liveness")
def eval_liveness(
    *,
    faces: Annotated[Path, typer.Option(help="The shared real-face folder.")] = Path("../shared/faces"),
    attacks_per_type: Annotated[int, typer.Option(min=1, help="Photos rendered as each attack type.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the photo sample and the attack renderings.")] = 0,
    save_frames: Annotated[Path | None, typer.Option(help="Write every attack frame (JPEG) here.")] = None,
    cues: Annotated[
        bool,
        typer.Option("--cues", help="Also print each rendered set's median cues and the real cue audit."),
    ] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every burst's verdict here.")] = None,
    cache: Annotated[
        bool, typer.Option(help="Keep rendered bursts and found faces in <data_dir>/cache/liveness.")
    ] = True,
    real: Annotated[
        bool | None,
        typer.Option(
            "--real/--no-real",
            help="The real captures in <faces>/liveness; default: when that folder exists.",
        ),
    ] = None,
    rendered: Annotated[
        bool,
        typer.Option("--rendered/--no-rendered", help="The rendered attacks, live stage video and stills."),
    ] = True,
) -> None:
    """Liveness in ISO/IEC 30107-3 terms: APCER per attack type, BPCER, BPCER at APCER 1%."""
    from app.evaluation.liveness_eval import format_cues, format_report, report_records
    from app.evaluation.liveness_real import (
        LIVENESS_FOLDER,
        cue_audit,
        format_cue_audit,
        format_real,
        real_records,
    )
    from app.vision.liveness import cue_rules

    real_dir = faces / LIVENESS_FOLDER
    with_real = real_dir.is_dir() if real is None else real
    if not faces.is_dir() or (with_real and not real_dir.is_dir()):
        typer.echo(f"error: {real_dir if faces.is_dir() else faces} is not a folder", err=True)
        raise typer.Exit(2)
    if not (with_real or rendered):
        typer.echo("error: nothing to evaluate: --no-real and --no-rendered", err=True)
        raise typer.Exit(2)
    settings, pipeline = _evaluation_pipeline()
    cache_dir = settings.data_dir / "cache" / "liveness" if cache else None
    records: list[dict[str, object]] = []
    if rendered:
        report = _evaluate_liveness(
            settings,
            pipeline,
            faces,
            cache_dir,
            attacks_per_type=attacks_per_type,
            seed=seed,
            save_frames=save_frames,
        )
        for line in format_report(report) + (format_cues(report) if cues else []):
            typer.echo(line)
        records += report_records(report)
    if with_real:
        real_report = _evaluate_real_liveness(settings, pipeline, real_dir, cache_dir)
        lines = format_real(real_report)
        if cues:
            limits = pipeline.liveness.limits
            audit = cue_audit(real_report, lambda c: cue_rules(c, limits), limits.rejects)
            lines += format_cue_audit(audit, limits.rejects)
        for line in lines:
            typer.echo(line)
        records += real_records(real_report)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(records, indent=1))


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
    role: Annotated[str, typer.Option(help="admin, door, auditor or verifier (1:1 verification only).")],
    name: Annotated[str, typer.Option(help="Who or what holds the key.")],
    door_id: Annotated[int | None, typer.Option(help="The door a door key may post frames for.")] = None,
    expires_in: Annotated[
        str | None,
        typer.Option(
            "--expires-in",
            help="The key stops working after this long: 3600, 90s, 30m, 12h or 90d, or never.",
        ),
    ] = None,
) -> None:
    """Create an API key; the secret is printed once, alone on the last line of stdout."""
    from app.audit.log import record_admin_action
    from app.store import queries
    from app.store.db import SchemaError, make_session_factory

    _setup_logging("WARNING")
    settings = get_settings()
    try:
        lifetime = _duration(expires_in) if expires_in is not None else None
        with _checked_engine(settings) as engine, make_session_factory(engine)() as session:
            if door_id is not None and queries.get_door(session, door_id) is None:
                raise ValueError(f"door {door_id} does not exist")
            key, secret = queries.create_api_key(session, role, name, door_id)
            # Who: no key (the local CLI, run by whoever can reach the database).
            target: dict[str, object] = {"key_id": key.id, "role": key.role, "door_id": key.door_id}
            if lifetime is not None:
                key.expires_at = key.created_at + lifetime
                target["expires_at"] = key.expires_at.isoformat()
            record_admin_action(session, None, "key.create", target)
            session.commit()
    except (SchemaError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    until = f", expires {key.expires_at.isoformat(timespec='seconds')}" if key.expires_at else ""
    typer.echo(
        f"created {key.role} key {key.id} ({key.name}{until}); store the secret now, it is not shown again:"
    )
    typer.echo(secret)


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> timedelta:
    """'3600', '90s', '30m', '12h' or '90d' (at least a minute, at most ten years)."""
    value = text.strip().lower()
    unit = _DURATION_UNITS.get(value[-1:], 0)
    number = value[:-1] if unit else value
    if not number.isdigit():
        raise ValueError(f"--expires-in {text!r}: give seconds, or a number with s, m, h or d (90d)")
    seconds = int(number) * (unit or 1)
    if not 60 <= seconds <= 10 * 366 * 86400:
        raise ValueError("--expires-in must be between a minute and ten years")
    return timedelta(seconds=seconds)


@keys_cli.command("signing-secret")
def keys_signing_secret(
    door_id: Annotated[int, typer.Option("--door-id", min=1, help="The door whose signing secret to issue.")],
) -> None:
    """Issue a new signing secret for a door (the previous one stops working); printed once, alone on
    the last line of stdout. Needs the service's master key (FACEGATE_SECRET_KEY or its key file)."""
    from app.audit.log import record_admin_action
    from app.services.signing import RequestSigning, SigningConfigError
    from app.store import queries
    from app.store.db import SchemaError, make_session_factory

    _setup_logging("WARNING")
    settings = get_settings()
    try:
        with _checked_engine(settings) as engine:
            sessions = make_session_factory(engine)
            with sessions() as session:
                door = queries.get_door(session, door_id)
                if door is None:
                    raise ValueError(f"door {door_id} does not exist")
                issued = RequestSigning(sessions, settings).issue(session, door)
                target = {"door_id": door_id, "generation": issued.generation, "key_id": issued.key_id}
                record_admin_action(session, None, "door.signing_secret", target)
                session.commit()
    except (SchemaError, SigningConfigError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"door {door_id}: signing secret generation {issued.generation} (master key {issued.key_id}); "
        "give it to the door client as FACEGATE_DOOR_SIGNING_SECRET, it is not shown again:"
    )
    typer.echo(issued.secret)


@audit_cli.command("verify")
def audit_verify() -> None:
    """Walk the audit chain and recompute every link. Exit 0 on an intact log; exit 1 and name the
    first altered, inserted or missing record (event or audit record id) otherwise."""
    from app.audit.log import verify
    from app.store.db import SchemaError, make_session_factory

    _setup_logging("WARNING")
    settings = get_settings()
    try:
        with _checked_engine(settings) as engine, make_session_factory(engine)() as session:
            result = verify(session)
    except SchemaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"{result.records} records checked ({result.events} access events, {result.admin_actions} admin "
        f"actions); head seq {result.head_seq} hash {result.head_hash}"
    )
    if result.legacy_events:
        unchained = result.legacy_events
        typer.echo(f"{unchained} access events from before the chain (migration 0005) are not chained")
    if result.problem is not None:
        typer.echo(f"audit chain broken: {result.problem}", err=True)
        raise typer.Exit(1)
    typer.echo("audit chain intact")


@events_cli.command("purge-snapshots")
def events_purge_snapshots(
    retention_days: Annotated[
        int | None,
        typer.Option(min=1, max=3650, help="Days to keep (default: FACEGATE_SNAPSHOT_RETENTION_DAYS)."),
    ] = None,
) -> None:
    """Delete the snapshots of events older than the retention period now (the service also does it
    periodically). The events themselves stay."""
    from app.services.snapshots import purge_expired, retention_cutoff
    from app.store.db import SchemaError, make_session_factory

    _setup_logging("WARNING")
    settings = get_settings()
    days = settings.snapshot_retention_days if retention_days is None else retention_days
    try:
        with _checked_engine(settings) as engine:
            removed = purge_expired(make_session_factory(engine), days)
    except SchemaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    cutoff = retention_cutoff(days).isoformat(timespec="seconds")
    typer.echo(f"{removed} snapshots purged (events before {cutoff}, retention {days} days)")


@labels_cli.command("export")
def labels_export(
    out: Annotated[Path | None, typer.Option("--out", help="Write here (default: stdout).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    snapshots: Annotated[
        Path | None,
        typer.Option(
            "--snapshots",
            help="Also write each labelled event's face crop to DIR/<event_id>.jpg (biometric data: "
            "only when asked; events without a snapshot are skipped).",
        ),
    ] = None,
) -> None:
    """Every labelled event: event id and time, door, decision, predicted person, label, true
    person, reviewer key, model version. Ids and decisions only: no face, photo or template
    unless --snapshots asks for the face crops."""
    from app.store.db import SchemaError, make_session_factory
    from app.store.labels import event_snapshot, iter_labelled_events, write_labels

    _setup_logging("WARNING")
    if fmt not in ("jsonl", "csv"):
        typer.echo(f"error: --format must be jsonl or csv, not {fmt!r}", err=True)
        raise typer.Exit(2)
    settings = get_settings()
    try:
        with _checked_engine(settings) as engine, make_session_factory(engine)() as session:
            kind: Literal["jsonl", "csv"] = "csv" if fmt == "csv" else "jsonl"
            if out is None:
                count = write_labels(iter_labelled_events(session), sys.stdout, kind)
            else:
                with out.open("w", newline="", encoding="utf-8") as fh:
                    count = write_labels(iter_labelled_events(session), fh, kind)
            pictures = 0
            if snapshots is not None:
                snapshots.mkdir(parents=True, exist_ok=True)
                for row in iter_labelled_events(session):
                    jpeg = event_snapshot(session, row.event_id)
                    if jpeg is not None:
                        (snapshots / f"{row.event_id}.jpg").write_bytes(jpeg)
                        pictures += 1
    except (SchemaError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"{count} labelled events exported", err=True)
    if snapshots is not None:
        typer.echo(f"{pictures} face crops written to {snapshots}", err=True)


@train_cli.command(
    "triplet",
    add_help_option=False,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def train_triplet(ctx: typer.Context) -> None:
    """A triplet-loss adaptation head on a frozen encoder's embeddings (`--help` for the options)."""
    from models.train_triplet import main as train_main

    raise typer.Exit(train_main(list(ctx.args)))


@gallery_cli.command("reencode")
def gallery_reencode(
    profile: Annotated[
        str, typer.Option("--profile", help="The profile to move the gallery to: sface or dlib.")
    ],
    allow_missing: Annotated[
        bool,
        typer.Option(
            "--allow-missing",
            help="Switch even though the people listed (no kept photo the profile can encode) lose access.",
        ),
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=1024, help="Photos per batch and transaction.")] = 32,
) -> None:
    """Encode every kept enrolment photo with PROFILE beside the old templates, while the service keeps
    serving, then switch the gallery (and every replica) to them at once. Safe to rerun."""
    from app.services.reencode import GalleryVersionError, ReencodeRefusedError, reencode
    from app.store.db import SchemaError, make_session_factory
    from app.vision.manifest import load_manifest
    from app.vision.profiles import profile_spec

    _setup_logging()
    settings = get_settings()
    try:
        name = profile_spec(profile).name
        ensure_models(settings)
        with _checked_engine(settings) as engine:
            report = reencode(
                make_session_factory(engine),
                settings,
                load_manifest(settings.models_path),
                name,
                allow_missing=allow_missing,
                batch_size=batch_size,
            )
    except ReencodeRefusedError as exc:
        for line in exc.report.lines():
            typer.echo(line)
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except (SchemaError, ModelArtifactError, GalleryVersionError, OSError, ValueError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    for line in report.lines():
        typer.echo(line)


@gallery_cli.command("status")
def gallery_status() -> None:
    """The template version the gallery serves, templates per version, and kept photos."""
    from app.services.reencode import producers
    from app.store import queries
    from app.store.db import SchemaError, make_session_factory
    from app.vision.manifest import read_manifest

    _setup_logging("WARNING")
    settings = get_settings()
    try:
        made = producers(read_manifest(settings.models_path), settings)
        with _checked_engine(settings) as engine, make_session_factory(engine)() as session:
            version, active = queries.gallery_state(session)
            versions = queries.template_versions(session)
            photos = queries.count_photos(session)
    except (SchemaError, ModelArtifactError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"gallery version {version}; serving {active or '(not pinned yet: the configured profile)'}")
    typer.echo(f"kept enrolment photos: {photos}")
    for v, n in sorted(versions.items()):
        maker = made.get(v)
        by = f"profile {maker[0]}" if maker else "no profile of this build"
        typer.echo(f"  {n:>8} templates  {v}  ({by}){'  <- serving' if v == active else ''}")


@cli.command()
def calibrate(
    strangers: Annotated[
        Path | None,
        typer.Option(help="CSV with a 'file' column (paths relative to it): photos of people not enrolled."),
    ] = None,
    target_far: Annotated[
        float | None,
        typer.Option(min=1e-9, max=0.1, help="False-accept target; default FACEGATE_TARGET_STRANGER_FAR."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON instead of text.")] = False,
    profile: ProfileOption = None,
) -> None:
    """How often strangers would match someone at tau, for this gallery's size; the tau to use."""
    from app.api.gallery import calibration_out
    from app.evaluation.pairs import encode_images
    from app.gallery.calibration import prior_model
    from app.services.calibration import CalibrationService, read_stranger_files, report_lines
    from app.services.reencode import GalleryVersionError, serving_choice
    from app.store.db import SchemaError, make_session_factory
    from app.vision.manifest import load_manifest
    from app.vision.pipeline import FacePipeline, calibration_prior, profile_encoding_version
    from app.vision.profiles import profile_spec

    _setup_logging("WARNING")
    settings = get_settings()
    try:
        with _checked_engine(settings) as engine:
            ensure_models(settings)
            # The gallery's encodings need only the encoder's version and size; strangers need the models.
            manifest = load_manifest(settings.models_path)
            if profile is None:  # the version the gallery serves (a reencode may have switched it)
                with make_session_factory(engine)() as session:
                    choice = serving_choice(session, manifest, settings)
                spec, version = profile_spec(choice.profile), choice.version
            else:
                spec = profile_spec(profile)
                version = profile_encoding_version(manifest, spec.name, settings.flip_average_for(spec.name))
            encoder = manifest.details(spec.encoder)
            dim = sum(int(manifest.details(name)["output"]["size"]) for name in spec.encoders)
            encodings = None
            if strangers is not None:
                pipeline = FacePipeline.from_manifest(
                    settings.models_path, manifest, settings, profile=spec.name
                )
                found = encode_images(pipeline, read_stranger_files(strangers), settings.data_dir / "cache")
                faces = [v for v in found.values() if v is not None]
                if len(faces) < len(found):
                    typer.echo(
                        f"{len(found) - len(faces)} stranger photo(s) without a face skipped", err=True
                    )
                encodings = np.stack(faces) if faces else np.empty((0, dim), np.float32)
            service = CalibrationService(
                make_session_factory(engine),
                version,
                dim,
                tau=settings.tau,
                target_far=settings.target_stranger_far,
                metric=spec.metric,
                prior=prior_model(calibration_prior(encoder, version, spec.name)),
                reference_tau=spec.reference_tau,
                grid=spec.calibration_grid,
            )
            result = service.compute(target_far, encodings)
    except (SchemaError, ModelArtifactError, GalleryVersionError, OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc

    if as_json:
        typer.echo(calibration_out(result).model_dump_json(indent=2))
    else:
        for line in report_lines(result):
            typer.echo(line)


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Run the HTTP service (builds the models first if none exist)."""
    import uvicorn

    from app.logging_setup import setup_logging
    from app.main import create_app
    from app.services.reencode import GalleryVersionError, serving_choice
    from app.store.db import SchemaError, make_session_factory
    from app.vision.manifest import load_manifest

    settings = get_settings()
    setup_logging(settings.log_level, settings.log_json)
    try:
        ensure_models(settings)
        # Refuse, before binding the port, a schema that is behind or a gallery of templates no
        # profile of this build makes.
        with _checked_engine(settings) as engine, make_session_factory(engine)() as session:
            serving_choice(session, load_manifest(settings.models_path), settings)
    except (ModelArtifactError, SchemaError, GalleryVersionError) as exc:
        log.error("%s", exc)
        raise typer.Exit(2) from exc
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)


@cli.command()
def door(
    *,
    server: Annotated[
        str, typer.Option("--server", help="The service's base URL, e.g. http://127.0.0.1:8000.")
    ],
    door_id: Annotated[int, typer.Option("--door-id", min=1, help="The door this client serves.")],
    source: Annotated[str, typer.Option("--source", help="Camera index, stream URL or video file.")],
    config: Annotated[Path | None, typer.Option("--config", help="TOML door configuration.")] = None,
    claim_from: Annotated[
        str | None,
        typer.Option(
            "--claim-from",
            help="Badge swipes for claim doors, one per line: 'stdin' or a file a badge reader appends "
            "to. The next burst carries the oldest fresh swipe (claim_ttl_s in the config).",
        ),
    ] = None,
    pin_from: Annotated[
        str | None,
        typer.Option(
            "--pin-from",
            help="Where to read a PIN when the service answers pin_required (the same burst is then sent "
            "again with it): 'stdin' or 'file:PATH' (e.g. a named pipe a keypad writes to); overrides the "
            "config's pin_from. Never the PIN itself.",
        ),
    ] = None,
) -> None:
    """The door client: sends a burst when a face is present and still, shows the answer, drives the
    door outputs. The door key comes from FACEGATE_DOOR_KEY or the config's key_file; with a signing
    secret (FACEGATE_DOOR_SIGNING_SECRET or signing_secret_file) every burst is signed."""
    from pydantic import ValidationError

    from app.door.claims import ClaimSourceError, open_claims
    from app.door.client import DoorClient, SourceError
    from app.door.config import ConfigError, DoorConfig, door_key, door_signing_secret, load_config

    _setup_logging("WARNING")
    try:
        cfg = load_config(config)
        if pin_from is not None:
            cfg = DoorConfig.model_validate({**cfg.model_dump(), "pin_from": pin_from})
        if cfg.pin_from == "stdin" and claim_from == "stdin":
            raise ConfigError("--claim-from and --pin-from cannot both read stdin")
        claims = None if claim_from is None else open_claims(claim_from, cfg.claim_ttl_s)
        client = DoorClient(
            server,
            door_id,
            door_key(cfg),
            cfg,
            echo=typer.echo,
            claims=claims,
            signing_secret=door_signing_secret(cfg),  # FACEGATE_DOOR_SIGNING_SECRET or signing_secret_file
        )
    except (ConfigError, ClaimSourceError, ValidationError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        stats = client.run(source)
    except SourceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        client.close()
    typer.echo(
        f"door {door_id}: {stats.frames_read} frames read, {stats.bursts_sent} bursts "
        f"({stats.frames_sent} frames) sent, {len(stats.answers)} answers"
    )
    if stats.source_ended:
        typer.echo("error: the video source stopped", err=True)
        raise typer.Exit(1)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
