"""Engines, sessions and the schema version: Alembic owns the schema, the app only checks it."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

# migrations/ sits at the repository root, beside app/.
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"

# How long a SQLite writer waits for another writer's lock before failing with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 15_000

# PostgreSQL: seconds to wait for a connection to open (libpq connect_timeout), and for a pooled
# connection to become free; past either the request fails with 503 database_unavailable/busy.
PG_CONNECT_TIMEOUT_S = 5
POOL_TIMEOUT_S = 10.0

# Alembic's `context` is a module global: two migrations in one process must not interleave.
# (Across processes and replicas, env.py takes a PostgreSQL advisory lock.)
_ALEMBIC_LOCK = threading.Lock()


class SchemaError(RuntimeError):
    """The database schema is not the one this code was written for."""


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`, tuned per backend. Extra keyword arguments go to `create_engine`."""
    parsed = make_url(url)
    # Errors name the statement, never its parameters (embeddings, key hashes) in logs.
    kwargs.setdefault("hide_parameters", True)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"check_same_thread": False, **kwargs.pop("connect_args", {})}
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    # A connection that died while pooled (the server restarted) is replaced before use, not
    # handed to a request; a server that does not answer fails a request within bounds instead of
    # holding it (libpq options; ones the URL sets itself win).
    kwargs.setdefault("pool_pre_ping", True)
    if "poolclass" not in kwargs:  # NullPool (migrations) has no queue to wait in
        kwargs.setdefault("pool_timeout", POOL_TIMEOUT_S)
    libpq = {
        "connect_timeout": PG_CONNECT_TIMEOUT_S,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }
    if parsed.get_backend_name() == "postgresql":
        connect_args = {k: v for k, v in libpq.items() if k not in parsed.query}
        kwargs["connect_args"] = {**connect_args, **kwargs.pop("connect_args", {})}
    return create_engine(url, **kwargs)


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL: readers never block the writer. synchronous stays FULL (the default) so a committed
        # enrolment survives a power cut, not only a process crash.
        cursor.execute("PRAGMA journal_mode=WAL")
        # SQLite ignores foreign keys (and ON DELETE CASCADE) unless asked, per connection.
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: handlers return objects after committing without another round trip.
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration for this repository's migrations, without reading alembic.ini.

    With `url` None, migrations/env.py takes the URL from the app's settings.
    """
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise SchemaError(f"migrations not found at {MIGRATIONS_DIR}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolates '%' (URL-encoded passwords, options=...): escape it.
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    # Programmatic runs must not replace the application's logging configuration.
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Migrate the database at `url` (default: the app's settings) to `revision`."""
    with _ALEMBIC_LOCK:
        command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None, revision: str) -> None:
    with _ALEMBIC_LOCK:
        command.downgrade(alembic_config(url), revision)


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise SchemaError("no migrations found")
    return head


def current_revision(engine: Engine) -> str | None:
    """The database's Alembic revision, or None when it has never been migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check_schema(engine: Engine) -> None:
    """Refuse to run against a database whose schema is not exactly this code's head revision."""
    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return
    known = {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if current is not None and current not in known:
        raise SchemaError(
            f"database schema is at revision {current}, which this FaceGate (head {head}) does not "
            "know: the database was migrated by a newer version"
        )
    raise SchemaError(
        f"database schema is at revision {current or '<none>'}, this FaceGate needs {head}: "
        "run `facegate db upgrade`"
    )
