"""Database faults surface as library errors naming the database and the fix, never as a
driver's or SQLAlchemy's exception (issue 12, items 10 and 11): each fault made for real on
SQLite or PostgreSQL, the original kept as ``__cause__``, nothing half-written."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import DBAPIError

from dynaflow import Action, World
from dynaflow.exceptions import (
    ConnectionLost,
    DatabaseBusy,
    DatabaseFull,
    DatabaseReadOnly,
    DataRejected,
    SchemaMismatch,
    StorageError,
)
from dynaflow.persistence import migrate, open_storage
from dynaflow.persistence.sql import SQLStorage

from .test_storage import make_plan


class Noop(Action):
    def run(self) -> None:
        pass


def sqlite_url(tmp_path: Path, query: str = "") -> str:
    """A migrated SQLite file of this test (``query``: URL parameters)."""
    path = tmp_path / "dynaflow.db"
    if not path.exists():
        migrate.upgrade(f"sqlite:///{path}")
    return f"sqlite:///{path}{query}"


def count_plans(url: str) -> int:
    """How many plans the database holds, read without dynaflow."""
    engine = create_engine(url.split("?")[0])
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM dynaflow_plans")).scalar_one())
    finally:
        engine.dispose()


# -- SQLite ------------------------------------------------------------------------------------


def test_a_write_that_waits_out_the_busy_timeout_raises_database_busy(tmp_path: Path) -> None:
    """Another connection holds the SQLite file's write lock (as a long finalize does) for
    longer than the busy timeout the URL sets."""
    url = sqlite_url(tmp_path, "?timeout=0.2")
    world = World(url, executor=None)
    other = sqlite3.connect(tmp_path / "dynaflow.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        assert world.find_plans() == []  # readers are not blocked (WAL)
        started = time.monotonic()
        with pytest.raises(DatabaseBusy) as caught:
            world.plan(Noop)  # a storage error, not PlanningFailed
        waited = time.monotonic() - started
    finally:
        other.execute("ROLLBACK")
        other.close()
        world.close()
    message = str(caught.value)
    assert "stayed locked for 0.2 s" in message, message
    for advice in ("finalize", "run()", "?timeout=<seconds>", "PostgreSQL"):
        assert advice in message, message
    assert str(tmp_path / "dynaflow.db") in message
    # the driver's error stays attached as the cause (BEGIN goes to the driver directly)
    assert isinstance(caught.value.__cause__, (DBAPIError, sqlite3.OperationalError))
    assert 0.15 < waited < 5
    assert count_plans(url) == 0


def test_a_busy_timeout_in_the_url_must_be_seconds(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="timeout='soon' is not a number of seconds"):
        SQLStorage(sqlite_url(tmp_path, "?timeout=soon"))


def test_a_full_sqlite_database_raises_database_full_and_writes_nothing(tmp_path: Path) -> None:
    """A real SQLITE_FULL: the file may not grow past its current page count
    (``PRAGMA max_page_count``), and a plan of 300 actions needs more pages."""
    storage = SQLStorage(sqlite_url(tmp_path))
    try:
        with pytest.raises(DatabaseFull) as caught, storage.transaction() as conn:
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
            conn.exec_driver_sql(f"PRAGMA max_page_count = {pages}")
            storage.insert_plan(make_plan(steps=300))
        assert "database or disk is full" in str(caught.value)
        assert "Free space" in str(caught.value)
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError | DBAPIError)
    finally:
        storage.close()
    assert count_plans(sqlite_url(tmp_path)) == 0


def test_a_read_only_sqlite_database_raises_database_read_only_naming_the_file(
    tmp_path: Path,
) -> None:
    """Tests run as root, whom ``chmod 444`` does not stop; ``?mode=ro`` makes SQLite itself
    refuse every write with SQLITE_READONLY, exactly as for a file this process may not
    write. A World with an executor writes at once (its row in the worlds table), so opening
    it raises; a client World reads, and raises on its first write."""
    path = Path(sqlite_url(tmp_path).removeprefix("sqlite:///"))
    url = f"sqlite:///file:{path}?mode=ro&uri=true"
    with pytest.raises(DatabaseReadOnly) as caught:
        World(url)
    message = str(caught.value)
    assert str(path) in message and "read-only" in message, message
    assert "make the file and its directory writable" in message, message
    client = World(url, executor=None)
    try:
        assert client.find_plans() == []
        with pytest.raises(DatabaseReadOnly):
            client.plan(Noop)
    finally:
        client.close()
    assert count_plans(f"sqlite:///{path}") == 0


# -- PostgreSQL --------------------------------------------------------------------------------


def with_query(url: str, **query: str) -> str:
    return make_url(url).update_query_dict(query).render_as_string(hide_password=False)


def with_options(url: str, option: str) -> str:
    """``url`` with one more server option (``-c name=value``) for its sessions."""
    parsed = make_url(url)
    options = f"{parsed.query.get('options', '')} {option}".strip()
    return parsed.update_query_dict({"options": options}).render_as_string(hide_password=False)


@pytest.mark.postgres
def test_a_lost_postgres_connection_retries_a_read_and_fails_a_write_clearly(
    pg_storage_url: str, pg_admin: Engine
) -> None:
    """Every backend of the storage is terminated (``pg_terminate_backend``), the server stays
    up: a read goes through on a fresh connection; a write raises ConnectionLost and nothing of
    it is stored; the next write works."""
    name = f"dynaflow-lost-{uuid.uuid4().hex[:8]}"
    storage = SQLStorage(with_query(pg_storage_url, application_name=name))

    def terminate() -> int:
        with pg_admin.connect() as conn:
            query = text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :name"
            )
            return len(conn.execute(query, {"name": name}).all())

    try:
        first = make_plan()
        storage.insert_plan(first)
        assert terminate() == 1
        assert storage.get_plan_record(first.plan.id).id == first.plan.id  # retried

        second = make_plan()
        assert terminate() == 1
        with pytest.raises(ConnectionLost) as caught:
            storage.insert_plan(second)
        message = str(caught.value)
        assert "lost the connection to the database postgresql+psycopg://" in message, message
        assert "rolled back" in message and "[SQL" not in message, message
        assert isinstance(caught.value.__cause__, DBAPIError | psycopg.OperationalError)
        assert [p.id for p in storage.find_plans()] == [first.plan.id]
        storage.insert_plan(second)
        assert storage.count_plans() == 2
    finally:
        storage.close()


@pytest.mark.postgres
def test_a_read_only_postgres_database_raises_database_read_only(pg_storage_url: str) -> None:
    url = with_options(pg_storage_url, "-cdefault_transaction_read_only=on")
    with pytest.raises(DatabaseReadOnly, match="point the URL at the primary"):
        World(url)


@pytest.mark.postgres
def test_a_postgres_lock_held_too_long_raises_database_busy(pg_storage_url: str) -> None:
    storage = SQLStorage(with_options(pg_storage_url, "-clock_timeout=200"))
    locker = create_engine(pg_storage_url)
    try:
        with locker.begin() as conn:
            conn.execute(text("LOCK TABLE dynaflow_plans IN ACCESS EXCLUSIVE MODE"))
            with pytest.raises(DatabaseBusy, match="another transaction held a lock"):
                storage.insert_plan(make_plan())
        assert storage.count_plans() == 0
    finally:
        storage.close()
        locker.dispose()


@pytest.mark.postgres
def test_a_value_postgres_refuses_raises_data_rejected_without_sql(pg_storage_url: str) -> None:
    """Plans are checked before they are written; a value that reaches PostgreSQL unchecked (an
    update of a label here) is refused with the database's reason, not the SQL text."""
    storage = SQLStorage(pg_storage_url)
    try:
        new = make_plan()
        storage.insert_plan(new)
        with pytest.raises(DataRejected) as caught:
            storage.update_plan(new.plan.id, {"label": "x" * 300})
        message = str(caught.value)
        assert "value too long for type character varying(255)" in message, message
        assert "UPDATE" not in message and "[SQL" not in message, message
        assert storage.get_plan_record(new.plan.id).label == "demo"
    finally:
        storage.close()


# -- a version table holding two revisions ------------------------------------------------------


def add_revision(url: str, revision: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"INSERT INTO {migrate.VERSION_TABLE} VALUES (:r)"), {"r": revision})
    finally:
        engine.dispose()


def test_a_version_table_holding_two_revisions_raises_schema_mismatch(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    add_revision(empty_url, "0001")
    head = migrate.head()
    for attempt in (
        lambda: open_storage(empty_url),
        lambda: migrate.upgrade(empty_url),
        lambda: migrate.current(empty_url),
    ):
        with pytest.raises(SchemaMismatch) as caught:
            attempt()
        message = str(caught.value)
        assert f"several revisions in its version table {migrate.VERSION_TABLE}" in message
        assert "'0001'" in message and f"'{head}'" in message, message
        assert f"WHERE version_num <> '{head}'" in message and "dynaflow db upgrade" in message


def test_a_version_table_of_unknown_revisions_says_so(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = 'a1'"))
    engine.dispose()
    add_revision(url, "b2")
    with pytest.raises(SchemaMismatch, match="none of which this dynaflow knows"):
        open_storage(url)


def test_the_cli_reports_a_version_table_of_two_revisions_in_one_line(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    add_revision(url, "0001")
    for command in (["db", "upgrade"], ["db", "current"], ["plans", "list"]):
        result = subprocess.run(
            [sys.executable, "-m", "dynaflow.cli", *command, "--url", url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 3, result  # the database cannot be used: docs/cli.md
        assert "Traceback" not in result.stderr, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert "several revisions" in lines[0] and "DELETE FROM" in lines[0], lines[0]
