"""The application's own transaction: an order and its workflow are stored together.

An online shop stores an order row and plans the workflow that ships it in one transaction:
if anything fails before the commit, neither exists; once it commits, an executor world starts
the plan. The workflow's ``finalize`` marks the order shipped through the application's own ORM,
in the transaction that records the step's end, so the order row and the plan's state never
disagree. The application and its world share one engine (``dynaflow.make_engine``).

Run it: ``python examples/app_transaction.py``
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from dynaflow import Action, World, make_engine


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "shop_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str]
    status: Mapped[str] = mapped_column(default="new")


class ShipOrder(Action):
    def plan(self, order_id: int) -> None:
        self.plan_self(order_id=order_id)

    def run(self) -> None:
        self.output["tracking"] = f"TRACK-{self.input['order_id']}"

    def finalize(self) -> None:
        # the application's ORM on the step's own transaction: it commits with the step's end
        with Session(bind=self.connection, join_transaction_mode="create_savepoint") as session:
            order = session.get(Order, self.input["order_id"])
            assert order is not None
            order.status = f"shipped ({self.output['tracking']})"
            session.commit()


def place_order(engine: sa.Engine, world: World, order_id: int, item: str, fail: bool) -> None:
    """The application's request handler: the order row and its plan, in one transaction."""
    try:
        with Session(engine) as session, session.begin():
            session.add(Order(id=order_id, item=item))
            session.flush()
            world.trigger(ShipOrder, order_id, connection=session.connection())
            if fail:
                raise RuntimeError("payment declined")
    except RuntimeError as exc:
        print(f"order {order_id}: {exc}; nothing was stored")
        return
    print(f"order {order_id}: stored with its plan")


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{Path(folder, 'shop.db')}")
        Base.metadata.create_all(engine)
        with World(engine=engine, executor="inline") as world:
            place_order(engine, world, 1, "kettle", fail=False)
            place_order(engine, world, 2, "toaster", fail=True)
            world.run_pending()  # an inline executor runs what was handed to it now
            with Session(engine) as session:
                for order in session.scalars(sa.select(Order).order_by(Order.id)):
                    print(f"order {order.id} ({order.item}): {order.status}")
            for plan in world.find_plans(order_by="created_at"):
                print(f"plan {plan.label}: {plan.state} / {plan.result}")
        engine.dispose()


if __name__ == "__main__":
    main()
