"""Shared fixtures: worlds on every executor and every storage.

A test that takes ``world`` (or ``world_factory``) runs once per backend: executor ``inline`` and
``threads`` times storage ``memory``, ``sqlite`` (a file in ``tmp_path``) and ``postgres``.
Narrow the matrix for one test with ``@pytest.mark.executors("threads")`` or
``@pytest.mark.storages("sqlite", "postgres")``; ``@pytest.mark.sql`` means every SQL storage.

To keep the suite fast, PostgreSQL (the multi-process backend, and the slowest) runs with the
threaded executor only, unless a test runs on the inline executor alone;
``DYNAFLOW_TEST_MATRIX=full`` runs every combination.

PostgreSQL is found at ``DYNAFLOW_TEST_PG_URL`` (default: the ``test`` database on
``127.0.0.1:5432``). An unreachable server FAILS the postgres variants, it never skips them:
``-m "not postgres"`` leaves them out on purpose. Postgres tests work in a schema of this
session (connection option ``search_path``), migrated once and emptied before each test; a test
that creates tables of its own drops them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dynaflow import World
from dynaflow.testing import WAIT  # how long any test waits for anything

EXECUTORS = ("inline", "threads")
STORAGES = ("memory", "sqlite", "postgres")
SQL_STORAGES = ("sqlite", "postgres")
FULL_MATRIX = os.environ.get("DYNAFLOW_TEST_MATRIX", "").lower() == "full"

PG_URL = os.environ.get("DYNAFLOW_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "executors(*names): run this world test on these executors only"
    )
    config.addinivalue_line(
        "markers", "storages(*names): run this world test on these storages only"
    )
    config.addinivalue_line("markers", "sql: run this world test on the SQL storages only")


@dataclass(frozen=True)
class Backend:
    executor: str
    storage: str

    @property
    def id(self) -> str:
        return f"{self.executor}-{self.storage}"


def _marker_args(metafunc: pytest.Metafunc, name: str) -> tuple[str, ...] | None:
    marker = metafunc.definition.get_closest_marker(name)
    return tuple(marker.args) if marker is not None else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    executors = _marker_args(metafunc, "executors") or EXECUTORS
    storages = _marker_args(metafunc, "storages") or STORAGES
    if metafunc.definition.get_closest_marker("sql") is not None:
        storages = tuple(s for s in storages if s in SQL_STORAGES)
    unknown = (set(executors) - set(EXECUTORS)) | (set(storages) - set(STORAGES))
    if unknown:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: unknown backends {unknown}")
    params = []
    for storage in storages:
        on = executors
        if storage == "postgres" and "threads" in executors and not FULL_MATRIX:
            on = ("threads",)
        for executor in on:
            backend = Backend(executor, storage)
            marks = [pytest.mark.postgres] if storage == "postgres" else []
            params.append(pytest.param(backend, id=backend.id, marks=marks))
    metafunc.parametrize("backend", params, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Backend:
    """The executor and storage this test runs on (parametrized by pytest_generate_tests)."""
    return request.param


# -- PostgreSQL ------------------------------------------------------------------------------
# The same approach as tests/contract: one schema per session, migrated once, emptied before
# each test (much cheaper than migrating a schema per test).


def _schema_url(schema: str) -> str:
    from sqlalchemy import make_url

    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Any]:
    """An autocommit engine on the test server. Unreachable: the postgres tests FAIL."""
    import sqlalchemy as sa

    url = sa.make_url(PG_URL)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)
    problem = None
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        problem = f"{type(exc).__name__}: {getattr(exc, 'orig', None) or exc}"
    if problem is not None:
        pytest.fail(
            f"PostgreSQL at {url.render_as_string(hide_password=True)} is unreachable "
            f"({problem}); start it (.ci/run does) or point DYNAFLOW_TEST_PG_URL at one; "
            "leave these tests out with -m 'not postgres'",
            pytrace=False,
        )
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def pg_schema(pg_admin: Any) -> Iterator[tuple[str, str]]:
    """``(schema, url)`` of a schema of this session, migrated to head once."""
    import sqlalchemy as sa

    from dynaflow.persistence import migrate

    schema = f"dynaflow_engine_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = _schema_url(schema)
    migrate.upgrade(url)
    yield schema, url
    with pg_admin.connect() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def pg_url(pg_admin: Any, pg_schema: tuple[str, str]) -> str:
    """The session's schema with dynaflow's tables emptied. (DELETE, not TRUNCATE: ten times
    faster on tables this small; identity columns do not restart.)"""
    from dynaflow.persistence import tables

    schema, url = pg_schema
    empty = "; ".join(
        f'DELETE FROM "{schema}"."{table.name}"'
        for table in reversed(tables.metadata.sorted_tables)
    )
    with pg_admin.connect() as conn:
        conn.exec_driver_sql(empty)
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once; each test gets a copy (migrating costs ~20 ms)."""
    from dynaflow.persistence import migrate

    path = tmp_path_factory.mktemp("sqlite-template") / "dynaflow.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


# -- worlds ----------------------------------------------------------------------------------


@pytest.fixture
def db_url(backend: Backend, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The storage URL of this test's backend: one database, migrated and empty, shared by all
    the test's worlds (``memory://`` gives each world its own)."""
    if backend.storage == "memory":
        return "memory://"
    if backend.storage == "sqlite":
        path = tmp_path / "dynaflow.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    return request.getfixturevalue("pg_url")


WorldFactory = Callable[..., World]


@pytest.fixture
def world_factory(backend: Backend, db_url: str) -> Iterator[WorldFactory]:
    """``world_factory(**options)`` opens a World on this test's backend; all are closed at
    the end. On memory storage every world is separate; on SQL they share the database."""
    worlds: list[World] = []

    def factory(**options: Any) -> World:
        options.setdefault("executor", backend.executor)
        world = World(db_url, **options)
        worlds.append(world)
        return world

    yield factory
    for world in reversed(worlds):
        world.close(timeout=WAIT)


@pytest.fixture
def world(world_factory: WorldFactory) -> World:
    return world_factory()
