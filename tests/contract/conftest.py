"""Fixtures of the storage contract suite: the same tests on memory, SQLite and PostgreSQL.

PostgreSQL comes from ``DYNAFLOW_TEST_PG_URL``; an unreachable server fails these tests (it is
part of what they check), it never skips them. Each PostgreSQL test works in a schema of its own
(``search_path``), so tests never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from dynaflow.persistence import MemoryStorage, Storage, migrate, tables
from dynaflow.persistence.sql import SQLStorage

PG_URL = os.environ.get("DYNAFLOW_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _schema_url(schema: str) -> str:
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    """An autocommit engine on the test server, for creating and dropping schemas."""
    url = make_url(PG_URL)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        where = url.render_as_string(hide_password=True)
        pytest.fail(
            f"PostgreSQL at {where} is unreachable ({exc.orig}); start it or point "
            "DYNAFLOW_TEST_PG_URL at one (deselect with -m 'not postgres')",
            pytrace=False,
        )
    yield engine
    engine.dispose()


@pytest.fixture
def pg_fresh_url(pg_admin: Engine) -> Iterator[str]:
    """The URL of a new, empty schema, dropped after the test."""
    schema = f"dynaflow_test_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield _schema_url(schema)
    with pg_admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(scope="session")
def pg_session_schema(pg_admin: Engine) -> Iterator[tuple[str, str]]:
    """A schema migrated once per session; tests empty it rather than migrate again."""
    schema = f"dynaflow_contract_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = _schema_url(schema)
    migrate.upgrade(url)
    yield schema, url
    with pg_admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def pg_storage_url(pg_admin: Engine, pg_session_schema: tuple[str, str]) -> str:
    """The session's migrated schema, emptied for this test."""
    schema, url = pg_session_schema
    names = ", ".join(f'"{schema}"."{t}"' for t in tables.metadata.tables)
    with pg_admin.connect() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    return url


def _open(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if kind == "memory":
        return MemoryStorage()
    if kind == "sqlite":
        return SQLStorage(f"sqlite:///{tmp_path}/dynaflow.db")
    return SQLStorage(request.getfixturevalue("pg_storage_url"))


POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)


@pytest.fixture(params=["memory", "sqlite", POSTGRES])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """Each storage implementation, empty."""
    opened = _open(request.param, request, tmp_path)
    yield opened
    opened.close()


@pytest.fixture(params=["sqlite", POSTGRES])
def sql_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLStorage]:
    """The SQL storage on each database, empty."""
    opened = _open(request.param, request, tmp_path)
    assert isinstance(opened, SQLStorage)
    yield opened
    opened.close()


@pytest.fixture(params=["sqlite", POSTGRES])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database on each SQL backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/empty.db"
    return str(request.getfixturevalue("pg_fresh_url"))


@pytest.fixture(params=["sqlite", POSTGRES])
def twin_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The URLs of two new, empty databases on each SQL backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
        return
    admin: Engine = request.getfixturevalue("pg_admin")
    schemas = [f"dynaflow_twin_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    with admin.connect() as conn:
        for schema in schemas:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield _schema_url(schemas[0]), _schema_url(schemas[1])
    with admin.connect() as conn:
        for schema in schemas:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
