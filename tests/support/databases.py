"""Either database under a test: a SQLite file, or a fresh schema on the real PostgreSQL
(the `pg_schemas` fixture of tests/store/conftest.py, which the using conftest imports), for
answers that must not depend on which one opsbot runs on."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.store.conftest import PostgresSchemas

__all__ = ["database_url"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'opsbot.db'}"
    schemas: PostgresSchemas = request.getfixturevalue("pg_schemas")
    return schemas.new_url()
