"""Fixtures of the fault tests: a database of their own per test (a SQLite file, or a
PostgreSQL schema dropped at the end), with the marks table of :mod:`.actions`."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from .harness import postgres_database, sqlite_database

Databases = Callable[[str], AbstractContextManager[str]]


@pytest.fixture
def databases(storage: str, request: pytest.FixtureRequest, tmp_path: Path) -> Databases:
    """``databases(name)``: a context manager giving the URL of a new, migrated database with
    the marks table."""
    if storage == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        return lambda name: sqlite_database(template, tmp_path, name)
    admin = request.getfixturevalue("pg_admin")  # the suite's server (DYNAFLOW_TEST_PG_URL)
    return lambda name: postgres_database(admin)
