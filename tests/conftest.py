"""Shared fixtures: real model artifacts (built once, cached under var/), dlib oracle, data paths,
and the SQL databases every store test runs on (``db_url``, ``engine``)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from app.settings import Settings
from app.store import db as store_db
from app.vision.manifest import Manifest

REPO = Path(__file__).resolve().parents[1]
SHARED_FACES = REPO.parent / "shared" / "faces"
# Built artifacts are cached between runs; `models build` is idempotent and re-verifies them.
TEST_MODEL_DIR = Path(os.environ.get("FACEGATE_TEST_MODEL_DIR", REPO / "var" / "test-models"))


def shared_faces() -> Path:
    """../shared/faces, or skip the calling test when this checkout has no shared data beside it."""
    if not SHARED_FACES.is_dir():
        pytest.skip("../shared/faces is absent")
    return SHARED_FACES


@pytest.fixture(scope="session")
def model_dir() -> Path:
    from models.build import build_models

    build_models(TEST_MODEL_DIR)
    return TEST_MODEL_DIR


@pytest.fixture(scope="session")
def manifest(model_dir: Path) -> Manifest:
    from app.vision.manifest import load_manifest

    return load_manifest(model_dir)


@pytest.fixture(scope="session")
def settings(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        model_dir=model_dir,
        onnx_providers=("CPUExecutionProvider",),
        onnx_intra_op_threads=2,
        profile="dlib",  # the equivalence tests compare with dlib itself
        encode_flip_average=False,  # the dlib-equivalence tests need dlib's plain encodings
    )


@pytest.fixture(scope="session")
def pipeline(settings: Settings):  # type: ignore[no-untyped-def]
    from app.vision.pipeline import FacePipeline

    return FacePipeline.load(settings)


@pytest.fixture(scope="session")
def dlib_source() -> Path:
    from models.source import source_dir

    return source_dir()


@pytest.fixture(scope="session")
def astronaut() -> NDArray[np.uint8]:
    """skimage's astronaut (Eileen Collins, NASA, public domain): a real face that ships on PyPI."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


# SQL: every store test runs on a fresh SQLite file and on a fresh PostgreSQL schema (skipped when
# the server at 127.0.0.1:5432, or FACEGATE_TEST_PG_URL, is unreachable).
PG_URL = os.environ.get("FACEGATE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@lru_cache(maxsize=1)
def pg_unavailable() -> str | None:
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except (SQLAlchemyError, ImportError) as exc:  # no server, refused, or no driver
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a new SQLite file, or a new PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        # A missing parent directory on purpose: make_engine creates it.
        yield f"sqlite:///{(tmp_path / 'data' / 'facegate.db').as_posix()}"
        return
    reason = pg_unavailable()
    if reason is not None:
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable ({reason})")
    schema = f"fg_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    # Every connection of the engine under test (and Alembic's) sees only this schema.
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    store_db.upgrade(db_url)
    eng = store_db.make_engine(db_url)
    yield eng
    eng.dispose()


# Tests that run whole services (replicas, kill -9, snapshots) need a database of their own.
PG_ADMIN_URL = os.environ.get("FACEGATE_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def new_pg_database(prefix: str) -> Iterator[str]:
    """A new database on the shared PostgreSQL server (its SQLAlchemy URL), dropped afterwards;
    skips the calling test when the server is unreachable."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc}")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A new PostgreSQL database for one test, dropped afterwards (skip when unreachable)."""
    with new_pg_database("facegate") as url:
        yield url
