"""Connections kept between transactions (``dynaflow.persistence.engine.Connections``): reused,
given back clean, dropped when lost, released on close — on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from dynaflow.exceptions import ConnectionLost
from dynaflow.persistence.engine import Connections, make_engine
from dynaflow.persistence.sql import SQLStorage


def test_a_storage_reuses_its_write_connection(tmp_path: Path) -> None:
    storage = SQLStorage(f"sqlite:///{tmp_path / 'kept.db'}", migrate=True)
    try:
        with storage.transaction() as first:
            first.execute(sa.text("SELECT 1"))
        with storage.transaction() as second:
            assert second is first
            assert second.in_transaction()
        assert storage._engine.pool.checkedout() == 1  # kept, not back in the pool
    finally:
        storage.close()
    assert storage._engine.pool.checkedout() == 0


def test_a_read_left_open_is_rolled_back_before_the_connection_is_kept(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'read.db'}")
    connections = Connections(engine)
    try:
        with connections.connect() as conn:
            conn.execute(sa.text("SELECT 1"))  # begins a transaction
            assert conn.in_transaction()
        with connections.connect() as again:
            assert again is conn
            assert not again.in_transaction()
    finally:
        connections.close()
        engine.dispose()


def test_at_most_keep_connections_stay_idle(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'many.db'}")
    connections = Connections(engine, keep=2)
    try:
        with connections.connect(), connections.connect(), connections.connect():
            assert engine.pool.checkedout() == 3
        assert engine.pool.checkedout() == 2
    finally:
        connections.close()
    assert engine.pool.checkedout() == 0
    with connections.connect():  # after close: used, then given back to the pool
        pass
    assert engine.pool.checkedout() == 0
    engine.dispose()


@pytest.mark.postgres
def test_threads_never_share_a_connection_at_once(pg_url: str) -> None:
    storage = SQLStorage(pg_url)
    inside = threading.Barrier(2, timeout=10)
    seen: list[sa.Connection] = []

    def work() -> None:
        with storage.transaction() as conn:
            seen.append(conn)
            inside.wait()  # both threads hold a transaction at once

    threads = [threading.Thread(target=work) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        with storage.transaction() as conn:  # afterwards: one of the two, reused
            assert any(conn is kept for kept in seen)
    finally:
        storage.close()
    assert len(seen) == 2 and seen[0] is not seen[1]


@pytest.mark.postgres
def test_a_lost_connection_is_dropped_with_the_idle_ones(pg_admin: sa.Engine, pg_url: str) -> None:
    """Every backend of the storage is terminated (as when the server restarts): the next
    transaction fails with ConnectionLost, and the ones after it work — none is handed a dead
    connection that was kept idle."""
    app = f"dynaflow-kept-{uuid.uuid4().hex[:12]}"
    url = sa.make_url(pg_url).update_query_dict({"application_name": app})
    storage = SQLStorage(url.render_as_string(hide_password=False))
    held = threading.Barrier(2, timeout=10)

    def hold() -> None:
        with storage.transaction() as conn:
            conn.execute(sa.text("SELECT 1"))
            held.wait()

    try:
        other = threading.Thread(target=hold)
        other.start()
        with storage.transaction() as conn:  # two transactions at once: two kept connections
            conn.execute(sa.text("SELECT 1"))
            held.wait()
        other.join(10)
        with pg_admin.connect() as admin:
            killed = admin.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :app"
                ),
                {"app": app},
            ).all()
        assert len(killed) == 2
        with pytest.raises(ConnectionLost), storage.transaction() as conn:
            conn.execute(sa.text("SELECT 1"))
        for _ in range(3):
            with storage.transaction() as conn:
                assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        storage.close()
