"""Engine and transaction helpers that make SQLite and PostgreSQL behave alike.

SQLite gets WAL (readers never block the writer), a busy timeout (writers wait
instead of failing) and foreign keys. The stdlib driver's own BEGIN handling is
switched off so that we emit BEGIN ourselves: write transactions open with
``BEGIN IMMEDIATE``, which takes the database's write lock up front. That is
what serializes writers across threads *and processes*, and it avoids the
deadlock-prone upgrade from a read to a write lock. On PostgreSQL the code that
needs serialization locks a row (``SELECT ... FOR UPDATE``).

No wait on the database is unbounded: SQLite's busy timeout; PostgreSQL's connect timeout,
server-side statement timeout, pool checkout timeout, and a client-side cut of any wait the
server never answers (``bot/store/postgres.py``).
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from bot.store.errors import DatabaseUnreachable
from bot.store.writers import WriterConnection, turns_for

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "WRITE_LOCK_OPTION",
    "call_deadline",
    "conflict_insert",
    "is_sqlite",
    "make_engine",
    "patient",
    "patient_statements",
    "read_session",
    "server_connect_params",
    "sqlite_url",
    "unreachable",
    "write_session",
]

#: Connection execution option asking for ``BEGIN IMMEDIATE`` on SQLite.
WRITE_LOCK_OPTION = "opsbot_write_lock"

#: How long one wait on the database may take: connecting, a statement, a pooled connection,
#: SQLite's write lock. A PostgreSQL wait the server never answers is cut a little later, so
#: that the server's own statement timeout, which keeps the connection, normally comes first.
DEFAULT_TIMEOUT_S = 5.0
_CUT_AFTER_S = 2.0


def call_deadline(timeout_s: float) -> float:
    """How long someone waiting for one store call (an HTTP answer) should wait before calling
    the store unavailable: past the cut of a wait that was never answered."""
    return timeout_s + _CUT_AFTER_S


def sqlite_url(path: str | Path) -> str:
    """The SQLAlchemy URL of a SQLite database file."""
    return URL.create("sqlite", database=str(Path(path).absolute())).render_as_string()


def unreachable(url: str | URL, exc: BaseException) -> DatabaseUnreachable:
    """Why opening ``url`` failed, said in one line: the URL without its password, host and
    port, and the first line of the driver's reason (without what repeats host and port)."""
    parsed = make_url(url)
    shown = parsed.difference_update_query(["password"]).render_as_string(hide_password=True)
    cause = getattr(exc, "orig", None) or exc
    text = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
    lines = text.strip().splitlines()
    reason = (_REPEATED.sub("", lines[0]) if lines else "") or type(cause).__name__
    if parsed.get_backend_name() == "sqlite":
        return DatabaseUnreachable(shown, None, None, reason)
    port = parsed.port or _DEFAULT_PORTS.get(parsed.get_backend_name())
    return DatabaseUnreachable(shown, parsed.host or "local socket", port, reason)


# libpq's "connection to server at "h" (a), port p failed: FATAL:  " before the reason.
_REPEATED = re.compile(r'^(connection failed: )?(connection to server (at|on) .*? failed: )?'
                       r'((FATAL|ERROR):\s+)?')
_DEFAULT_PORTS = {"postgresql": 5432}


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


def conflict_insert(dialect: str, table: Any) -> postgresql.Insert | sqlite.Insert:
    """The INSERT into ``table`` that can say ON CONFLICT, in ``dialect`` (a dialect's name):
    PostgreSQL's and SQLite's are written alike. PostgreSQL's dialect is imported here, on
    first use, so that a SQLite process never loads it."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)
    raise NotImplementedError(f"the store runs on PostgreSQL or SQLite, not {dialect}")


def make_engine(url: str | URL, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                busy_timeout_ms: int | None = None, pre_ping: bool = True) -> Engine:
    """Create the engine for ``url`` with the settings the store relies on; ``timeout_s``
    bounds each wait on the database (SQLite's lock wait is ``busy_timeout_ms`` if given).
    ``pre_ping=False`` (PostgreSQL): connections are not tested with a round trip at each
    checkout; for callers that retry a write that meets a dead connection."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        busy = busy_timeout_ms if busy_timeout_ms is not None else int(timeout_s * 1000)
        return _sqlite_engine(parsed, busy)
    if parsed.get_backend_name() == "postgresql":
        return _postgres_engine(parsed, timeout_s, pre_ping)
    return create_engine(parsed, pool_pre_ping=pre_ping, pool_timeout=timeout_s)


def _postgres_engine(url: URL, timeout_s: float, pre_ping: bool = True) -> Engine:
    from bot.store.postgres import bound_waits

    # pool_pre_ping: a replica outlives database restarts and failovers.
    engine = create_engine(url, pool_pre_ping=pre_ping, pool_timeout=timeout_s,
                           connect_args=_postgres_connect_args(url, timeout_s))
    bound_waits(engine, call_deadline(timeout_s))
    return engine


def _postgres_connect_args(url: URL, timeout_s: float) -> dict[str, Any]:
    """What a PostgreSQL connection of the store is opened with on top of the URL: libpq's
    connect timeout and the server's statement timeout, from `timeout_s`."""
    # Settings in the URL win: an operator may know their database needs longer.
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = max(2, math.ceil(timeout_s))  # libpq: whole s, >= 2
    options = url.query.get("options", "")
    options = " ".join(options) if isinstance(options, tuple) else options
    if "statement_timeout" not in options:
        connect_args["options"] = f"{options} -c statement_timeout={int(timeout_s * 1000)}"
    return connect_args


def server_connect_params(engine: Engine, timeout_s: float,
                          ) -> tuple[dict[str, Any], float] | None:
    """For a PostgreSQL engine `make_engine` made with `timeout_s`: the keyword arguments its
    driver's `connect` gets (the URL's and the store's settings: timeouts, options), and how
    long one wait on its connections may take. None for any other engine."""
    if engine.dialect.name != "postgresql":
        return None
    cargs, cparams = engine.dialect.create_connect_args(engine.url)
    if cargs:
        return None
    return ({**cparams, **_postgres_connect_args(engine.url, timeout_s)},
            call_deadline(timeout_s))


@contextmanager
def patient(conn: Connection, seconds: float) -> Iterator[None]:
    """Waits on ``conn`` may take up to ``seconds`` meanwhile (migrations: waiting for another
    replica's, then altering tables). Enter it before ``conn`` begins its transaction; on
    PostgreSQL the transaction then runs ``patient_statements`` first."""
    if conn.dialect.name == "sqlite":
        # The raw connection: SQLAlchemy would begin a transaction around a PRAGMA.
        raw = conn.connection.dbapi_connection
        assert raw is not None
        before = raw.execute("PRAGMA busy_timeout").fetchone()[0]
        raw.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")
        writer = raw if isinstance(raw, WriterConnection) else None
        turn_wait = writer.wait_s if writer is not None else 0.0
        if writer is not None:
            writer.wait_s = seconds  # the wait for this process's other writers, too
        try:
            yield
        finally:
            raw.execute(f"PRAGMA busy_timeout = {int(before)}")
            if writer is not None:
                writer.wait_s = turn_wait
    elif conn.dialect.name == "postgresql":
        from bot.store.postgres import waits_up_to

        with waits_up_to(call_deadline(seconds)):
            yield
    else:
        yield


def patient_statements(conn: Connection, seconds: float) -> None:
    """In a transaction inside ``patient``: the server's statement timeout, for it alone."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(seconds * 1000)}")


def _sqlite_engine(url: URL, busy_timeout_ms: int) -> Engine:
    database = url.database or ""
    kwargs: dict[str, Any] = {}
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        # One shared connection, or every thread would see its own empty database.
        # Meant for tests; use a file for anything concurrent.
        kwargs = {"poolclass": StaticPool,
                  "connect_args": {"check_same_thread": False, "factory": WriterConnection}}
        turns = None
    else:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"connect_args": {"timeout": busy_timeout_ms / 1000,
                                   "factory": WriterConnection}}
        turns = turns_for(database)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # We emit BEGIN ourselves (see module docstring).
        dbapi_connection.isolation_level = None
        if isinstance(dbapi_connection, WriterConnection):
            dbapi_connection.turns = turns
            dbapi_connection.wait_s = busy_timeout_ms / 1000
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
        if not conn.get_execution_options().get(WRITE_LOCK_OPTION):
            conn.exec_driver_sql("BEGIN")
            return
        raw = conn.connection.dbapi_connection
        if not isinstance(raw, WriterConnection):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        try:
            raw.take_turn()  # this process's other writers first (bot/store/writers.py)
        except sqlite3.OperationalError as exc:
            raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            raw.end_turn()
            raise

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
