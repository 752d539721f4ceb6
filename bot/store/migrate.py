"""Runs the Alembic migrations shipped inside the package, without an alembic.ini.

The Alembic ``Config`` is built here with ``script_location`` pointing at
``bot/store/migrations``, so ``Store.open`` works the same from a checkout, an
editable install or a plain ``pip install .``. Concurrent starters (several
replicas, or the CLI next to the server) are serialized: PostgreSQL through a
transaction-scoped advisory lock, SQLite through ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, func, insert, inspect, select, text

from bot.store.db import WRITE_LOCK_OPTION, patient, patient_statements

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "FOREIGN_TABLES",
    "HEAD",
    "MIGRATIONS_DIR",
    "SCHEDULER_JOBS_TABLE",
    "alembic_config",
    "current_revision",
    "downgrade",
    "head_revision",
    "include_object",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# The newest revision in migrations/versions (a test holds it to Alembic's own head): a
# database already there is opened without importing Alembic at all, which a process that
# never migrates does not need (it costs some 10 MB and 150 modules).
HEAD = "0011"

# Replicas starting together wait for the first one's migration, which may alter big tables.
MIGRATION_WAIT_S = 600.0

# Arbitrary constant naming "opsbot migrations" among PostgreSQL advisory locks.
_MIGRATION_LOCK_KEY = 0x0B5B07_5704E


# APScheduler's job store lives in opsbot's database under this name (bot/scheduler.py
# uses it); APScheduler creates and owns the table, so no migration does.
SCHEDULER_JOBS_TABLE = "opsbot_scheduler_jobs"

# Tables in the same database that other libraries own; autogenerate must neither create
# nor drop them.
FOREIGN_TABLES = frozenset({SCHEDULER_JOBS_TABLE})


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic ``include_object`` hook: leave tables we do not own alone."""
    return not (type_ == "table" and name in FOREIGN_TABLES)


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config for the packaged migrations (``url`` for offline/CLI use)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation: a literal % in a password must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _create_at_head(conn: Connection) -> None:
    """A database with no table at all gets the schema at `HEAD` from the models at once, as
    the migrations would leave it (a test compares the two, table by table), and Alembic's
    version table saying so: a first start does not import Alembic nor run ten migrations."""
    from bot.store.models import GENESIS_HASH, AuditHead, Base

    Base.metadata.create_all(conn, tables=[table for name, table in Base.metadata.tables.items()
                                           if name not in FOREIGN_TABLES])
    # As Alembic creates it.
    conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                      "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"))
    conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:head)"),
                 {"head": HEAD})
    # What the first migration writes: the audit chain's head row.
    conn.execute(insert(AuditHead).values(id=1, seq=0, hash=GENESIS_HASH,
                                          updated_at=datetime.now(UTC)))


def current_revision(engine: Engine) -> str | None:
    """The database's revision (Alembic's version table), None before the first migration."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        return versions[0] if len(versions) == 1 else None


def upgrade(engine: Engine, revision: str = "head", *, from_models: bool = True) -> None:
    """Bring the database to ``revision``; a no-op when it is already there. A database with
    no table is brought to head from the models (`_create_at_head`) unless ``from_models`` is
    False: then, as any other, through every migration."""
    if revision in ("head", HEAD) and current_revision(engine) == HEAD:
        return
    _run(engine, "upgrade", revision, from_models=from_models)


def downgrade(engine: Engine, revision: str) -> None:
    _run(engine, "downgrade", revision)


def _run(engine: Engine, direction: str, revision: str, *, from_models: bool = False) -> None:
    with engine.connect() as conn, patient(conn, MIGRATION_WAIT_S):
        conn.execution_options(**{WRITE_LOCK_OPTION: True})
        with conn.begin():
            patient_statements(conn, MIGRATION_WAIT_S)
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
            if from_models and direction == "upgrade" and revision in ("head", HEAD) \
                    and not inspect(conn).get_table_names():
                _create_at_head(conn)
                return
            from alembic import command

            config = alembic_config()
            config.attributes["connection"] = conn
            if direction == "upgrade":
                command.upgrade(config, revision)
            else:
                command.downgrade(config, revision)
