"""What operator surfaces and applications read from a World besides plans: the database URL
(shown without passwords), the registered executor worlds, a transaction for their own tables."""

from __future__ import annotations

import dataclasses
import os
import socket
from typing import Any

import pytest
import sqlalchemy as sa

from dynaflow import World, WorldRecord


def test_worlds_lists_the_executor_worlds_as_read_only_records(
    world_factory: Any, backend: Any
) -> None:
    world = world_factory(world_id="api-executor")
    client = world_factory(executor=None, world_id="api-client")
    (record,) = [w for w in world.worlds() if w.id == "api-executor"]
    assert isinstance(record, WorldRecord)
    assert (record.hostname, record.pid, record.executor) == (
        socket.gethostname(),
        os.getpid(),
        backend.executor,
    )
    assert record.started_at <= record.heartbeat_at
    assert "api-client" not in {w.id for w in world.worlds()}  # a client world runs nothing
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.pid = 1  # type: ignore[misc]
    if backend.storage != "memory":  # on memory, every world has a database of its own
        assert "api-executor" in {w.id for w in client.worlds()}
        world.close()
        assert "api-executor" not in {w.id for w in client.worlds()}  # closing unregisters


@pytest.mark.executors("inline")
def test_url_is_the_database_without_its_password(
    world_factory: Any, db_url: str, backend: Any
) -> None:
    world = world_factory()
    assert world.url == sa.make_url(db_url).render_as_string(hide_password=True)
    if backend.storage == "postgres":  # libpq also takes the password as a query parameter
        url = f"{db_url}{'&' if '?' in db_url else '?'}password=s3cret"
        with World(url, executor=None) as other:
            assert "s3cret" not in other.url
            assert "password=***" in other.url


@pytest.mark.executors("inline")
@pytest.mark.sql
def test_transaction_gives_the_application_a_connection(world_factory: Any) -> None:
    world = world_factory()
    notes = sa.Table("api_notes", sa.MetaData(), sa.Column("text", sa.String(50)))
    try:
        with world.transaction() as connection:
            notes.create(connection)
            connection.execute(notes.insert().values(text="kept"))
        with pytest.raises(RuntimeError), world.transaction() as connection:
            connection.execute(notes.insert().values(text="rolled back"))
            raise RuntimeError("the block failed")
        with world.transaction() as connection:
            assert connection.execute(sa.select(notes.c.text)).scalars().all() == ["kept"]
            with world.transaction() as inner:  # nested: the same transaction
                assert inner is connection
    finally:
        with world.transaction() as connection:
            notes.drop(connection, checkfirst=True)


@pytest.mark.executors("inline")
@pytest.mark.storages("memory")
def test_transaction_on_memory_storage_gives_no_connection(world_factory: Any) -> None:
    with world_factory().transaction() as connection:
        assert connection is None
