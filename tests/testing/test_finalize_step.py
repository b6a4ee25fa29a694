"""finalize_step calls one action's finalize inside the finalize phase's transaction on a real
database connection: what it writes commits with it, or rolls back when it raises."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dynaflow import Action, World
from dynaflow.testing import finalize_step, plan_only

metadata = sa.MetaData()
machines = sa.Table(
    "testing_machines",
    metadata,
    sa.Column("name", sa.String(50), primary_key=True),
    sa.Column("uuid", sa.String(100), nullable=False),
)


class Record(Action):
    """Records its machine in the application's table; fails on ``input["fail"]``."""

    def run(self) -> None:
        self.output["uuid"] = f"{self.input['name']}-1"

    def finalize(self) -> None:
        self.connection.execute(
            machines.insert().values(name=self.input["name"], uuid=self.output["uuid"])
        )
        if self.input.get("fail"):
            raise RuntimeError("the audit service refused")


@pytest.fixture
def sql_world(tmp_path: Path) -> Iterator[World]:
    world = World(f"sqlite:///{tmp_path / 'app.db'}", executor="inline")
    with world.transaction() as connection:
        metadata.create_all(connection)
    yield world
    world.close()


def rows(world: World) -> list[tuple[str, str]]:
    with world.transaction() as connection:
        return [tuple(row) for row in connection.execute(sa.select(machines)).all()]


def test_what_finalize_writes_commits(sql_world: World) -> None:
    action = finalize_step(Record, {"name": "db"}, {"uuid": "db-42"}, world=sql_world)

    assert rows(sql_world) == [("db", "db-42")]
    assert (action.input, action.output) == ({"name": "db"}, {"uuid": "db-42"})


def test_an_error_rolls_it_back_and_is_raised(sql_world: World) -> None:
    with pytest.raises(RuntimeError, match="audit service refused"):
        finalize_step(Record, {"name": "db", "fail": True}, {"uuid": "x"}, world=sql_world)
    assert rows(sql_world) == []


def test_inside_a_transaction_of_the_test_it_joins_it(sql_world: World) -> None:
    with pytest.raises(LookupError), sql_world.transaction():
        finalize_step(Record, {"name": "db"}, {"uuid": "x"}, world=sql_world)
        assert rows(sql_world) == [("db", "x")]  # visible inside, not yet committed
        raise LookupError("the test rolls back")
    assert rows(sql_world) == []


def test_on_memory_storage_there_is_no_connection() -> None:
    seen = []

    class Looks(Action):
        def finalize(self) -> None:
            seen.append(self.connection)

    finalize_step(Looks)
    assert seen == [None]


def test_a_planned_action_with_stubbed_references() -> None:
    seen = []

    class Machine(Action):
        def run(self) -> None:
            self.output["uuid"] = "m-1"

    class Summary(Action):
        subscribe = Machine

        def plan(self, *args: object, **kwargs: object) -> None:
            assert self.triggering_action is not None
            self.plan_self(uuid=self.triggering_action.output.uuid)

        def finalize(self) -> None:
            seen.append(self.input["uuid"])

    summary = plan_only(Machine).one(Summary)
    finalize_step(summary, outputs_of={Machine: {"uuid": "m-7"}})
    assert seen == ["m-7"]
