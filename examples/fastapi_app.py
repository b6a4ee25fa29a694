"""A FastAPI application that plans workflows in its own transactions.

``POST /orders`` stores the order and plans the workflow that ships it in one transaction (a
declined payment stores neither); ``GET /orders/{id}`` shows the order with its plan's state.
The application and the world share one engine; the world is opened and closed with the
application (its lifespan). Run as a script, it sends a few requests through FastAPI's test
client and prints the answers; serve it with ``uvicorn --factory
examples.fastapi_app:default_app``.

Run it: ``python examples/fastapi_app.py``
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from dynaflow import Action, World, make_engine


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "api_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str]
    status: Mapped[str] = mapped_column(default="new")
    plan_id: Mapped[str | None] = mapped_column(default=None)


class ShipOrder(Action):
    def plan(self, order_id: int) -> None:
        self.plan_self(order_id=order_id)

    def run(self) -> None:
        self.output["tracking"] = f"TRACK-{self.input['order_id']}"

    def finalize(self) -> None:
        with Session(bind=self.connection, join_transaction_mode="create_savepoint") as session:
            order = session.get(Order, self.input["order_id"])
            assert order is not None
            order.status = "shipped"
            session.commit()


class NewOrder(BaseModel):
    id: int
    item: str
    pay: bool = True


def create_app(url: str) -> FastAPI:
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    state: dict[str, World] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state["world"] = World(engine=engine, workers=2)
        try:
            yield
        finally:
            state["world"].close()
            engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/orders", status_code=201)
    def place(order: NewOrder) -> dict[str, Any]:
        with Session(engine) as session, session.begin():
            row = Order(id=order.id, item=order.item)
            session.add(row)
            session.flush()
            triggered = state["world"].trigger(ShipOrder, order.id, connection=session.connection())
            row.plan_id = triggered.plan_id
            if not order.pay:  # the transaction rolls back: no order, no plan
                raise HTTPException(402, "payment declined")
        return {"id": order.id, "plan": "stored"}

    @app.get("/orders/{order_id}")
    def show(order_id: int) -> dict[str, Any]:
        with Session(engine) as session:
            row = session.get(Order, order_id)
            if row is None:
                raise HTTPException(404, f"no order {order_id}")
            plan = state["world"].get_plan(row.plan_id) if row.plan_id else None
            return {
                "id": row.id,
                "status": row.status,
                "plan": f"{plan.state} / {plan.result}" if plan else None,
            }

    app.state.worlds = state
    return app


def default_app() -> FastAPI:
    """For ``uvicorn --factory examples.fastapi_app:default_app`` (``SHOP_DB``: its database)."""
    return create_app(os.environ.get("SHOP_DB", "sqlite:///shop.db"))


def main() -> None:
    with warnings.catch_warnings():  # this Starlette wants httpx2 for its test client
        warnings.filterwarnings("ignore", message=".*httpx2")
        from fastapi.testclient import TestClient

    with tempfile.TemporaryDirectory() as folder:
        shop = create_app(f"sqlite:///{Path(folder, 'shop.db')}")
        with TestClient(shop) as client:
            print(
                "POST /orders 1:", client.post("/orders", json={"id": 1, "item": "kettle"}).json()
            )
            declined = client.post("/orders", json={"id": 2, "item": "toaster", "pay": False})
            print("POST /orders 2:", declined.status_code, declined.json())
            world = shop.state.worlds["world"]
            (plan,) = world.find_plans()
            world.follow(plan.id).result(timeout=30)
            print("GET /orders/1:", client.get("/orders/1").json())
            print("GET /orders/2:", client.get("/orders/2").status_code)


if __name__ == "__main__":
    main()
