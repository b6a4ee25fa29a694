"""The SQL storage's two write paths store the same rows: the executor's group commit on the
driver's cursor (the fast path) and the plain SQLAlchemy path (a write inside an ambient
transaction). The same batches go through each into a database of its own, on SQLite and
PostgreSQL; then every table is compared row by row as the driver reads it back, before any
decoding, so a value converted differently (a datetime's text, JSON) shows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from dynaflow.exceptions import UnknownAction, UnknownPlan
from dynaflow.execution_plan import StepError
from dynaflow.persistence import Batch, Claim, HistoryRow, PlanUpdate, StepUpdate, tables
from dynaflow.persistence.base import BatchResult, EventRow
from dynaflow.persistence.sql import SQLStorage, make_engine
from dynaflow.persistence.sql.fastpath import DriverBatchWriter, SlowPath
from dynaflow.states import PlanResult, PlanState, StepState

from .test_storage import NESTED, T0, make_plan

BERLIN = timezone(timedelta(hours=2))
PENDING = frozenset({StepState.PENDING})
ERROR = StepError("KeyError", "no 'sku' ✗", "Traceback (most recent call last):\n  ...")
#: every table with the columns its rows are ordered by; surrogate ids (history, events) are
#: left out of the comparison (PostgreSQL does not roll sequences back), their order is kept
ORDER = {
    "dynaflow_plans": "id",
    "dynaflow_actions": "plan_id, id",
    "dynaflow_steps": "plan_id, id",
    "dynaflow_edges": "plan_id, from_step, to_step",
    "dynaflow_history": "id",
    "dynaflow_events": "id",
    "dynaflow_worlds": "id",
}
SURROGATE = {"dynaflow_history", "dynaflow_events"}

Outcome = tuple[str, Any]


def events(storage: SQLStorage, plan_id: str) -> list[int]:
    return [e.id for e in storage.plan_events(plan_id) if e.id is not None]


def scenario(storage: SQLStorage, write: Callable[[Batch], BatchResult]) -> Iterator[Outcome]:
    """Batches the way the executor writes them, and the ones it rarely does: every field of a
    step update, outputs, history, claims, events and their deletion, datetimes naive and in
    another zone, missed compare-and-sets, the same step twice, unknown plans and actions.
    Yields each batch's result (or error)."""
    p, q = "plan-p", "plan-q"
    storage.insert_plan(make_plan(p, steps=5))
    storage.insert_plan(make_plan(q, steps=3, label="other"))
    r, s_ = "plan-r", "plan-s"
    storage.insert_plan(make_plan(r, steps=2))
    storage.insert_plan(make_plan(s_, steps=2))
    started = T0 + timedelta(seconds=1)

    def run(batch: Batch) -> Outcome:
        try:
            return "ok", write(batch)
        except (UnknownPlan, UnknownAction) as exc:
            return "error", repr(exc)

    # the plan starts: its first steps are claimed, a timer and an event are queued
    yield run(
        Batch(
            plans=[
                PlanUpdate(
                    p,
                    frozenset({PlanState.PLANNED}),
                    {"state": PlanState.RUNNING, "started_at": started, "world_id": "w-1"},
                    owner=None,
                )
            ],
            history=[HistoryRow(p, started, "plan running", world_id="w-1", detail=NESTED)],
            claims=[Claim(p, [1, 2, 1], PENDING, "w-1", started)],
            events=[
                EventRow(p, 1, "event", NESTED, started),
                EventRow(p, 2, "timer", None, started, started + timedelta(minutes=5)),
                EventRow(p, 2, "timeout", {"after": 30}, started, started.astimezone(BERLIN)),
            ],
        )
    )
    first, *_ = events(storage, p)
    # steps end with every field, outputs saved, an event handled, the next steps claimed
    berlin = datetime(2024, 5, 1, 14, 0, 2, 500, tzinfo=BERLIN)
    yield run(
        Batch(
            steps=[
                StepUpdate(
                    p,
                    1,
                    StepState.RUNNING,
                    StepState.SUCCESS,
                    {"ended_at": berlin, "duration": 1.25, "error": None, "world_id": None},
                ),
                StepUpdate(
                    p,
                    2,
                    StepState.RUNNING,
                    StepState.ERROR,
                    {"started_at": datetime(2024, 5, 1, 12, 0, 1), "ended_at": berlin},
                ),
            ],
            outputs=[(p, 0, NESTED), (p, 1, {"n": 1, "none": None}), (p, 2, {})],
            history=[HistoryRow(p, berlin, "step success", 1, "w-1")],
            claims=[Claim(p, [3, 4], PENDING, "w-1", berlin, event="step resumed")],
            drop_events=[first, 10_000],
        )
    )
    # the same fields on several steps and plans at once, queue and position included
    yield run(
        Batch(
            plans=[
                PlanUpdate(q, None, {"label": "renamed", "run_flow": {"sequence": [3, 2, 1]}}),
                PlanUpdate(q, frozenset({PlanState.PLANNED}), {"state": PlanState.PAUSED}),
            ],
            steps=[
                StepUpdate(q, i, StepState.PENDING, StepState.SKIPPED, {"queue": "slow"})
                for i in (1, 2)
            ]
            + [
                StepUpdate(p, 3, StepState.RUNNING, StepState.RUNNING, {"position": 9}),
                StepUpdate(
                    p, 4, StepState.RUNNING, StepState.SUSPENDED, {"error": ERROR.to_json()}
                ),
            ],
            outputs=[(q, 0, {"ok": True})],
            history=[HistoryRow(q, T0, f"h{i}", i % 3 or None, None, {"i": i}) for i in range(150)],
            claims=[Claim(q, [3], PENDING, "w-2", T0), Claim(p, [5, 6], PENDING, "w-1", T0)],
            events=[EventRow(q, 3, "event", {"i": i}, T0) for i in range(120)],
        )
    )
    # claims of several plans by one world (one statement on PostgreSQL), a missing step left
    yield run(
        Batch(
            claims=[
                Claim(r, [1, 2], PENDING, "w-4", T0),
                Claim(s_, [2, 9], PENDING, "w-4", started),
                Claim(r, [2], PENDING, "w-4", started),  # claimed already: left
            ]
        )
    )
    # missed compare-and-sets: a step and a plan in another state, a claim of a running step
    yield run(
        Batch(
            plans=[
                PlanUpdate(p, frozenset({PlanState.PAUSED}), {"state": PlanState.STOPPED}),
                PlanUpdate(p, None, {"result": PlanResult.WARNING}, owner="w-9"),
                PlanUpdate(q, None, {"ended_at": T0, "error": ERROR}, owner=None),
            ],
            steps=[
                StepUpdate(p, 3, StepState.RUNNING, StepState.SUCCESS, {"duration": 0.5}),
                StepUpdate(p, 1, StepState.RUNNING, StepState.SUCCESS, {"duration": 9.0}),
            ],
            outputs=[(q, 1, [1, "two"])],
            claims=[Claim(p, [3, 5], PENDING | {StepState.SUSPENDED}, "w-3", T0)],
            drop_events=events(storage, q)[:50],
        )
    )
    # the same step twice in one batch: the updates apply in order
    yield run(
        Batch(
            steps=[
                StepUpdate(p, 2, StepState.ERROR, StepState.ERROR, {"error": ERROR}),
                StepUpdate(p, 2, StepState.ERROR, StepState.PENDING, {"error": None}),
            ],
            history=[HistoryRow(p, T0, "step retried", 2)],
        )
    )
    # several plans changed alike: one statement on PostgreSQL, JSON and NULL among the values
    yield run(
        Batch(
            plans=[
                PlanUpdate(
                    plan_id,
                    frozenset({PlanState.PLANNED}),
                    {
                        "state": PlanState.RUNNING,
                        "started_at": at,
                        "error": error,
                        "world_id": "w-4",
                    },
                    owner=None,
                )
                for plan_id, at, error in ((r, berlin, ERROR), (s_, T0, None))
            ],
            history=[HistoryRow(r, T0, "plan running"), HistoryRow(s_, T0, "plan running")],
        )
    )
    # ... and one of them is not where the batch expects it: the exact path says which
    yield run(
        Batch(
            plans=[
                PlanUpdate(
                    plan_id,
                    frozenset({PlanState.RUNNING}),
                    {"state": PlanState.STOPPED, "result": result},
                    owner=owner,
                )
                for plan_id, result, owner in (
                    (r, PlanResult.SUCCESS, "w-4"),
                    (s_, PlanResult.ERROR, "w-other"),
                )
            ],
        )
    )
    # unknown plans and actions change nothing
    yield run(Batch(history=[HistoryRow(p, T0, "kept?"), HistoryRow("nope", T0, "lost")]))
    yield run(
        Batch(steps=[StepUpdate(p, 5, StepState.RUNNING, StepState.SUCCESS)], outputs=[(p, 7, {})])
    )
    yield run(Batch(claims=[Claim("nope", [1], PENDING, "w-1", T0)]))
    yield run(Batch(steps=[StepUpdate("nope", 1, StepState.PENDING, StepState.RUNNING)]))


def dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every dynaflow table, as the driver reads it (no SQLAlchemy types)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = {}
            for table, order in ORDER.items():
                names = [
                    c.name
                    for c in tables.metadata.tables[table].columns
                    if not (table in SURROGATE and c.name == "id")
                ]
                query = f"SELECT {', '.join(names)} FROM {table} ORDER BY {order}"
                rows[table] = [tuple(r) for r in conn.exec_driver_sql(query)]
            return rows
    finally:
        engine.dispose()


@pytest.mark.parametrize("arrays_from", [DriverBatchWriter.ARRAYS_FROM, 2], ids=["rows", "arrays"])
def test_both_write_paths_store_the_same_rows(
    twin_urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch, arrays_from: int
) -> None:
    """(``arrays``: PostgreSQL gets the updates of two rows and more as one statement with a
    parameter array per column, as it does from ``ARRAYS_FROM`` rows on.)"""
    monkeypatch.setattr(DriverBatchWriter, "ARRAYS_FROM", arrays_from)
    fast_url, exact_url = twin_urls
    taken: list[str] = []

    def spy(name: str) -> Any:
        driver_write = getattr(DriverBatchWriter, name)

        def write(self: DriverBatchWriter, *args: Any) -> BatchResult:
            try:
                result = driver_write(self, *args)
            except SlowPath:
                taken.append("fell back")
                raise
            except Exception as exc:
                taken.append(type(exc).__name__)
                raise
            taken.append("fast")
            return result

        return write

    # write: on SQLite, and on PostgreSQL for batches a pipeline cannot take
    for name in ("write", "write_pipelined"):
        monkeypatch.setattr(DriverBatchWriter, name, spy(name))
    fast, exact = SQLStorage(fast_url, migrate=True), SQLStorage(exact_url, migrate=True)
    try:

        def exact_write(batch: Batch) -> BatchResult:
            with exact.transaction():  # inside a transaction: SQLAlchemy's path
                return exact.write(batch)

        by_fast = list(scenario(fast, fast.write))
        by_exact = list(scenario(exact, exact_write))
    finally:
        fast.close()
        exact.close()

    assert by_fast == by_exact
    assert [kind for kind, _ in by_fast] == ["ok"] * 8 + ["error"] * 4
    claims = by_fast[3][1]
    assert claims.claimed == {("plan-r", 1), ("plan-r", 2), ("plan-s", 2)}
    assert [c.plan_id for c in by_fast[7][1].plan_conflicts] == ["plan-s"]
    # the fast path wrote the first four batches itself and handed on the conflicts and the
    # unknown plans (the exact storage never took it)
    assert taken[:8] == ["fast"] * 4 + ["fell back"] * 2 + ["fast", "fell back"]
    assert len(taken) == 12 and "fast" not in taken[8:]
    fast_rows, exact_rows = dump(fast_url), dump(exact_url)
    for table in ORDER:
        assert fast_rows[table] == exact_rows[table], table
    assert len(fast_rows["dynaflow_history"]) > 150
    assert len(fast_rows["dynaflow_events"]) == 72
