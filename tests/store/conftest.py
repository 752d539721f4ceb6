"""Fixtures giving each store test a fresh database: a SQLite file, or a PostgreSQL schema.

PostgreSQL tests run in uniquely named schemas of the ``test`` database (selected
through ``search_path``), so parallel runs do not collide; every schema made is
dropped at the end of the session. When the server is unreachable they skip,
unless ``OPSBOT_REQUIRE_REAL=1`` makes that a failure.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bot.store import Store, sqlite_url

PG_URL = os.environ.get(
    "OPSBOT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_REAL = os.environ.get("OPSBOT_REQUIRE_REAL") == "1"


@dataclass
class PostgresSchemas:
    """Hands out empty schemas in the test database and drops them all at the end."""

    base_url: str
    prefix: str = field(default_factory=lambda: f"opsbot_test_{os.getpid()}_{secrets.token_hex(3)}")
    made: list[str] = field(default_factory=list)
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def new_url(self) -> str:
        schema = f"{self.prefix}_{next(self._counter)}"
        self._execute(f'CREATE SCHEMA "{schema}"')
        self.made.append(schema)
        url = make_url(self.base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    def drop_all(self) -> None:
        for schema in self.made:
            self._execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        self.made.clear()

    def _execute(self, sql: str) -> None:
        engine = create_engine(self.base_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(sql))
        finally:
            engine.dispose()


@pytest.fixture(scope="session")
def pg_schemas() -> Iterator[PostgresSchemas]:
    engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        cause = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        reason = f"PostgreSQL at {make_url(PG_URL).render_as_string()} is unreachable ({cause})"
        if REQUIRE_REAL:
            pytest.fail(f"{reason} (OPSBOT_REQUIRE_REAL=1)")
        pytest.skip(f"{reason}; set OPSBOT_REQUIRE_REAL=1 to fail instead")
    finally:
        engine.dispose()
    schemas = PostgresSchemas(PG_URL)
    yield schemas
    schemas.drop_all()


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty database, once per backend."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "store" / "opsbot.db")
    schemas: PostgresSchemas = request.getfixturevalue("pg_schemas")
    return schemas.new_url()


class FakeClock:
    """A settable clock for the store, so tests control record times."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        # Each reading moves on a millisecond, so successive records differ in time.
        self.now += timedelta(milliseconds=1)
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def open_store(db_url: str) -> Iterator[Callable[..., Store]]:
    """Opens stores on the test database (several = several replicas); closes them all."""
    opened: list[Store] = []

    def _open(**kwargs: object) -> Store:
        store = Store.open(db_url, **kwargs)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield _open
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[..., Store]) -> Store:
    return open_store()


@pytest.fixture
def clocked_store(open_store: Callable[..., Store], clock: FakeClock) -> Store:
    return open_store(clock=clock)
