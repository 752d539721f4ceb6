"""Engine and transaction helpers that make SQLite and PostgreSQL behave alike.

SQLite gets WAL (readers never block the writer), a busy timeout (writers wait
instead of failing) and foreign keys. The stdlib driver's own BEGIN handling is
switched off so that we emit BEGIN ourselves: write transactions open with
``BEGIN IMMEDIATE``, which takes the database's write lock up front. That is
what serializes writers across threads *and processes*, and it avoids the
deadlock-prone upgrade from a read to a write lock. On PostgreSQL the code that
needs serialization locks a row (``SELECT ... FOR UPDATE``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

__all__ = [
    "WRITE_LOCK_OPTION",
    "is_sqlite",
    "make_engine",
    "read_session",
    "sqlite_url",
    "write_session",
]

#: Connection execution option asking for ``BEGIN IMMEDIATE`` on SQLite.
WRITE_LOCK_OPTION = "opsbot_write_lock"

DEFAULT_BUSY_TIMEOUT_MS = 15_000


def sqlite_url(path: str | Path) -> str:
    """The SQLAlchemy URL of a SQLite database file."""
    return URL.create("sqlite", database=str(Path(path).absolute())).render_as_string()


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str | URL, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> Engine:
    """Create the engine for ``url`` with the settings the store relies on."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, busy_timeout_ms)
    # pool_pre_ping: a replica outlives database restarts and failovers.
    return create_engine(parsed, pool_pre_ping=True)


def _sqlite_engine(url: URL, busy_timeout_ms: int) -> Engine:
    database = url.database or ""
    kwargs: dict[str, Any] = {}
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        # One shared connection, or every thread would see its own empty database.
        # Meant for tests; use a file for anything concurrent.
        kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    else:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"connect_args": {"timeout": busy_timeout_ms / 1000}}
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # We emit BEGIN ourselves (see module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            _enable_wal(cursor, busy_timeout_ms)
            cursor.execute("PRAGMA foreign_keys=ON")
            # Durable enough with WAL: a power cut may lose the last commits, never corrupt.
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(WRITE_LOCK_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


def _enable_wal(cursor: Any, busy_timeout_ms: int) -> None:
    """Switch the database file to WAL, which then sticks to the file.

    Switching needs an exclusive lock, and SQLite answers "database is locked" at
    once, without its busy handler, when several connections race to switch a new
    file. So only switch when the file is not in WAL yet, and retry that race
    within the busy timeout.
    """
    deadline = time.monotonic() + busy_timeout_ms / 1000
    delay = 0.005
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


@contextmanager
def write_session(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session in a transaction that holds SQLite's write lock from its start.

    Commits on normal exit, rolls back on an exception.
    """
    with factory() as session, session.begin():
        session.connection(execution_options={WRITE_LOCK_OPTION: True})
        yield session


@contextmanager
def read_session(factory: sessionmaker[Session], *, snapshot: bool = False) -> Iterator[Session]:
    """A read-only unit of work; ``snapshot`` makes every statement see one state.

    SQLite transactions are snapshots already; PostgreSQL needs REPEATABLE READ.
    """
    with factory() as session, session.begin():
        if snapshot and session.get_bind().dialect.name == "postgresql":
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        yield session
