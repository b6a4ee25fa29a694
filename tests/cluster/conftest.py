"""Fixtures of the cluster tests: a PostgreSQL schema of each test's own (the server of
``DYNAFLOW_TEST_PG_URL``, see tests/conftest.py), a reader of its tables, worker processes
stopped at the end, and a client world (no executor) in the test process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dynaflow import World

from .harness import Database, Worker, postgres_schema, workers


@pytest.fixture
def pg(pg_admin: Any) -> Iterator[tuple[str, str]]:
    """``(schema, url)``: a migrated schema of this test's own, dropped at the end."""
    with postgres_schema(pg_admin) as created:
        yield created


@pytest.fixture
def url(pg: tuple[str, str]) -> str:
    return pg[1]


@pytest.fixture
def db(url: str) -> Iterator[Database]:
    database = Database(url)
    yield database
    database.close()


@pytest.fixture
def start_worker(url: str, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """``start_worker(name, **options)``: a ``dynaflow worker`` on this test's database
    (see :class:`~.harness.Worker`); every one is stopped at the end."""
    with workers(url, tmp_path) as start:
        yield start


@pytest.fixture
def client(url: str) -> Iterator[World]:
    """A client world (no executor) on this test's database: it plans and hands over."""
    world = World(url, executor=None)
    yield world
    world.close()
