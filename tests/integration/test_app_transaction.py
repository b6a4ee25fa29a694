"""The application's own transaction: a plan stored with the application's rows (committed
together, or neither), started only once the application commits; a world sharing the
application's engine; finalize writing the application's rows with the step's end. SQL
storages, both executors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from dynaflow import Action, ConfigurationError, World, make_engine

from .actions import WAIT
from .waiting import is_inline

pytestmark = pytest.mark.sql


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "app_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str]


class Fulfil(Action):
    def plan(self, order_id: int) -> None:
        self.plan_self(order_id=order_id)

    def run(self) -> None:
        self.output["shipped"] = self.input["order_id"]

    def finalize(self) -> None:
        # the application's ORM, in the transaction that records the step's end
        with Session(bind=self.connection, join_transaction_mode="create_savepoint") as session:
            order = session.get(Order, self.input["order_id"])
            assert order is not None
            order.status = "shipped"
            session.commit()  # releases the savepoint; the step's transaction commits it all


@pytest.fixture
def world(world_factory: Any) -> World:
    world = world_factory()
    with world.transaction() as conn:
        Base.metadata.create_all(conn)
    return world


def order_status(world: World, order_id: int) -> str | None:
    with world.transaction() as conn:
        return conn.execute(
            sa.select(Order.status).where(Order.id == order_id)
        ).scalar_one_or_none()


def test_a_plan_and_the_applications_rows_commit_together_or_not_at_all(
    world: World, db_url: str
) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn, conn.begin() as transaction:
            conn.execute(sa.insert(Order).values(id=1, status="new"))
            plan = world.plan(Fulfil, 1, connection=conn)
            assert plan.state == "planned"
            transaction.rollback()
        assert world.count_plans() == 0 and order_status(world, 1) is None

        with engine.begin() as conn:
            conn.execute(sa.insert(Order).values(id=2, status="new"))
            planned = world.plan(Fulfil, 2, connection=conn)
        assert world.get_plan(planned.id).state == "planned"
        assert order_status(world, 2) == "new"
    finally:
        engine.dispose()


def test_a_triggered_plan_starts_once_the_application_commits(world: World, db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(Order).values(id=3, status="new"))
            triggered = world.trigger(Fulfil, 3, connection=conn)
            # not visible outside the transaction yet, so no world can have started it
            assert world.count_plans() == 0
        if is_inline(world):
            world.run_pending()
        plan = triggered.wait(WAIT)
        assert (plan.state, plan.result) == ("stopped", "success")
        assert order_status(world, 3) == "shipped"  # finalize wrote it with the step's end
    finally:
        engine.dispose()


def test_a_rolled_back_trigger_leaves_nothing_to_run(world: World, db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn, conn.begin() as transaction:
            triggered = world.trigger(Fulfil, 4, connection=conn)
            transaction.rollback()
        assert world.count_plans() == 0
        assert world.waiting_requests() == []
        assert triggered.plan_id
    finally:
        engine.dispose()


def test_a_world_shares_the_applications_engine(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'app.db'}")
    with World(engine=engine, executor="inline") as world:
        with engine.begin() as conn:
            Base.metadata.create_all(conn)
            conn.execute(sa.insert(Order).values(id=5, status="new"))
            world.trigger(Fulfil, 5, connection=conn)
        world.run_pending()
        (plan,) = world.find_plans()
        assert plan.result == "success"
    # closing the world leaves the application's engine working
    with engine.connect() as conn:
        assert conn.execute(sa.select(Order.status)).scalar_one() == "shipped"
    engine.dispose()


def test_bad_connections_and_engines_are_refused_and_plan_nothing(
    world: World, tmp_path: Path, db_url: str
) -> None:
    other = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with other.connect() as conn, pytest.raises(ConfigurationError, match="another database"):
        world.plan(Fulfil, 6, connection=conn)
    other.dispose()
    with pytest.raises(ConfigurationError, match="SQLAlchemy Connection"):
        world.plan(Fulfil, 6, connection="not a connection")
    assert world.count_plans() == 0
    plain = sa.create_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    with pytest.raises(ConfigurationError, match="make_engine"):
        World(engine=plain)
    plain.dispose()
    if db_url.startswith("sqlite"):  # pysqlite's own transactions break savepoints
        plain = sa.create_engine(db_url)
        with plain.connect() as conn, pytest.raises(ConfigurationError, match="make_engine"):
            world.plan(Fulfil, 6, connection=conn)
        plain.dispose()
    assert world.count_plans() == 0
    with pytest.raises(ConfigurationError, match="give one of them"):
        World("sqlite:///x.db", engine=make_engine(f"sqlite:///{tmp_path / 'x.db'}"))
    with (
        pytest.raises(ConfigurationError, match="needs a SQL database"),
        World("memory://", executor=None) as memory,
    ):
        memory.plan(Fulfil, 7, connection=object())
