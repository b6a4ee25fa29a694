"""Migrations produce exactly ``tables.py``, and opening a database checks its schema revision."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, insert, inspect, make_url, text

from dynaflow.exceptions import DatabaseUnavailable, SchemaMismatch
from dynaflow.persistence import migrate, open_storage, tables
from dynaflow.persistence.base import EventRow
from dynaflow.persistence.sql import SQLStorage, make_engine

DYNAFLOW_TABLES = set(tables.metadata.tables)


def _engine(url: str) -> Engine:
    return make_engine(url)


def schema_diffs(url: str) -> list[object]:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": migrate.VERSION_TABLE}
            )
            return list(compare_metadata(context, tables.metadata))
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def set_revision(url: str, revision: str) -> None:
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(f"CREATE TABLE IF NOT EXISTS {migrate.VERSION_TABLE} "
                     "(version_num VARCHAR(32) NOT NULL)")
            )  # fmt: skip
            conn.execute(text(f"DELETE FROM {migrate.VERSION_TABLE}"))
            conn.execute(
                text(f"INSERT INTO {migrate.VERSION_TABLE} VALUES (:rev)"), {"rev": revision}
            )
    finally:
        engine.dispose()


def test_upgrading_an_empty_database_gives_exactly_the_tables_of_tables_py(empty_url: str) -> None:
    assert migrate.current(empty_url) is None

    migrate.upgrade(empty_url)

    assert migrate.current(empty_url) == migrate.head()
    assert schema_diffs(empty_url) == []
    assert table_names(empty_url) == DYNAFLOW_TABLES | {migrate.VERSION_TABLE}


def test_downgrade_to_base_then_upgrade_round_trips(empty_url: str) -> None:
    migrate.upgrade(empty_url)

    migrate.downgrade(empty_url, "base")
    assert migrate.current(empty_url) is None
    assert table_names(empty_url) == {migrate.VERSION_TABLE}

    migrate.upgrade(empty_url)
    assert migrate.current(empty_url) == migrate.head()
    assert schema_diffs(empty_url) == []


def test_a_database_at_0001_holding_a_plan_upgrades_to_head_keeping_it(empty_url: str) -> None:
    migrate.upgrade(empty_url, "0001")
    assert migrate.current(empty_url) == "0001"
    assert "dynaflow_events" not in table_names(empty_url)
    at = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    engine = _engine(empty_url)
    try:
        with engine.begin() as conn:  # the 0001 tables, written as dynaflow 0001 did
            conn.execute(
                insert(tables.plans),
                {"id": "p", "label": "old", "state": "running", "result": "pending",
                 "created_at": at, "world_id": "w-1", "run_flow": {"sequence": [1]}},
            )  # fmt: skip
            conn.execute(
                insert(tables.actions),
                {"plan_id": "p", "id": 0, "action_class": "app.A", "input": {"n": 1},
                 "output": {}},
            )  # fmt: skip
            conn.execute(
                insert(tables.steps),
                {"plan_id": "p", "id": 1, "action_id": 0, "kind": "run",
                 "action_class": "app.A", "state": "suspended", "position": 0},
            )  # fmt: skip
    finally:
        engine.dispose()

    migrate.upgrade(empty_url)

    assert migrate.current(empty_url) == migrate.head()
    assert schema_diffs(empty_url) == []
    storage = SQLStorage(empty_url)
    try:
        plan = storage.load_plan("p")
        assert (plan.record.label, plan.record.created_at, plan.record.world_id) == (
            "old",
            at,
            "w-1",
        )
        assert (plan.actions[0].input, plan.step(1).state.value) == ({"n": 1}, "suspended")
        assert storage.plan_events("p") == []
        storage.add_events([EventRow("p", 1, "event", {"hello": "world"}, at)])
        assert [e.payload for e in storage.due_events("w-1", at)] == [{"hello": "world"}]
    finally:
        storage.close()

    migrate.downgrade(empty_url, "0001")  # and back: the plan stays, its events go
    assert "dynaflow_events" not in table_names(empty_url)
    migrate.upgrade(empty_url)
    storage = SQLStorage(empty_url)
    try:
        assert storage.get_plan_record("p").label == "old"
        assert storage.plan_events("p") == []
    finally:
        storage.close()


def test_opening_a_database_from_a_newer_dynaflow_raises_and_writes_nothing(
    empty_url: str,
) -> None:
    set_revision(empty_url, "9999_from_the_future")

    with pytest.raises(SchemaMismatch, match=r"9999_from_the_future.*newer.*upgrade dynaflow"):
        SQLStorage(empty_url, migrate=True)
    with pytest.raises(SchemaMismatch, match="newer"):
        migrate.upgrade(empty_url)

    assert table_names(empty_url) == {migrate.VERSION_TABLE}
    assert migrate.current(empty_url) == "9999_from_the_future"


def test_an_embedded_sqlite_is_migrated_on_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    storage = open_storage(url)
    storage.close()
    assert migrate.current(url) == migrate.head()


def test_several_worlds_migrating_a_new_database_at_once_all_succeed(empty_url: str) -> None:
    url = empty_url
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            start.wait(10)
            SQLStorage(url, migrate=True).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert schema_diffs(url) == []


def test_a_new_sqlite_file_waits_for_a_lock_that_blocks_its_switch_to_wal(tmp_path: Path) -> None:
    # SQLite answers a switch to WAL that meets another connection's write lock with "database
    # is locked" at once, ignoring busy_timeout: what the first opens of a new file ran into
    path = tmp_path / "new.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE other_app (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO other_app VALUES (1)")
    release = threading.Timer(0.3, holder.execute, ["COMMIT"])
    release.start()
    try:
        started = time.monotonic()
        SQLStorage(f"sqlite:///{path}").close()
        assert time.monotonic() - started >= 0.2  # it waited for the lock
    finally:
        release.join()
        holder.close()
    assert migrate.current(f"sqlite:///{path}") == migrate.head()


#: opens the storage of each URL read from stdin; answers "ok" or the error, one line each
_OPENER = """
import sys
from dynaflow.persistence import open_storage
for line in sys.stdin:
    try:
        open_storage(line.strip()).close()
        print("ok", flush=True)
    except Exception as exc:
        print(" ".join(f"{type(exc).__name__}: {exc}".split()), flush=True)
"""


@pytest.mark.slow
def test_processes_opening_a_new_sqlite_file_at_once_all_succeed(tmp_path: Path) -> None:
    """4 processes open the same new file at once (the URL reaches them together), 10 times."""
    openers = [
        subprocess.Popen(
            [sys.executable, "-c", _OPENER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for attempt in range(10):
            url = f"sqlite:///{tmp_path / f'new-{attempt}.db'}"
            for opener in openers:
                assert opener.stdin is not None
                opener.stdin.write(url + "\n")
            for opener in openers:
                assert opener.stdin is not None
                opener.stdin.flush()
            answers = [opener.stdout.readline().strip() for opener in openers if opener.stdout]
            assert answers == ["ok"] * 4, f"attempt {attempt}: {answers}"
            engine = make_engine(url)
            with engine.connect() as conn:
                versions = conn.execute(text(f"SELECT version_num FROM {migrate.VERSION_TABLE}"))
                assert versions.scalars().all() == [migrate.head()]
            engine.dispose()
            assert schema_diffs(url) == []
    finally:
        for opener in openers:
            if opener.stdin is not None:
                opener.stdin.close()
            opener.wait(30)


def test_in_memory_sqlite_is_one_database_for_every_thread() -> None:
    for url in ("sqlite://", "sqlite:///:memory:"):
        storage = SQLStorage(url)
        found: list[int] = []

        def count(storage: SQLStorage = storage, found: list[int] = found) -> None:
            found.append(storage.count_plans())

        thread = threading.Thread(target=count)
        thread.start()
        thread.join(10)
        assert found == [0]  # the other thread saw the migrated schema
        storage.close()


@pytest.mark.postgres
def test_a_postgres_database_behind_head_is_not_migrated_unasked(pg_fresh_url: str) -> None:
    for migrate_option in (False, None):
        with pytest.raises(SchemaMismatch, match="`dynaflow db upgrade`"):
            SQLStorage(pg_fresh_url, migrate=migrate_option)
    assert table_names(pg_fresh_url) == set()

    SQLStorage(pg_fresh_url, migrate=True).close()
    assert migrate.current(pg_fresh_url) == migrate.head()
    SQLStorage(pg_fresh_url).close()  # at head: opens without migrate


@pytest.mark.postgres
def test_postgresql_urls_use_psycopg_and_hide_the_password(pg_fresh_url: str) -> None:
    url = make_url(pg_fresh_url).set(drivername="postgresql", password="s3cret")
    plain = url.render_as_string(hide_password=False)
    storage = SQLStorage(plain, migrate=True)
    try:
        assert "s3cret" not in storage.display_url
        assert storage.display_url.startswith("postgresql://postgres:***@")
        assert storage.count_plans() == 0
    finally:
        storage.close()


def test_tables_made_outside_migrations_need_a_stamp(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'made.db'}"
    engine = create_engine(url)
    tables.metadata.create_all(engine)
    engine.dispose()

    with pytest.raises(SchemaMismatch, match="stamp"):
        SQLStorage(url)
    migrate.stamp(url)
    SQLStorage(url).close()


def test_an_unreachable_database_names_the_url_without_its_password() -> None:
    url = "postgresql+psycopg://postgres:secret@127.0.0.1:1/test"
    for attempt in (lambda: SQLStorage(url), lambda: migrate.upgrade(url)):
        with pytest.raises(DatabaseUnavailable) as caught:
            attempt()
        message = str(caught.value)
        assert "secret" not in message
        assert "postgres:***@127.0.0.1:1/test" in message
        assert "check that the server is running" in message


def test_a_sqlite_file_in_a_missing_directory_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailable, match="directory exists"):
        SQLStorage(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
