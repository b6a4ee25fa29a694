"""The storage contract for events and timers (``EventRow``), on memory, SQLite and PostgreSQL:
queueing and deleting them, finding the deliverable ones of a world, and the owner
compare-and-set of ``update_plan`` that goes with handing plans between worlds."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from dynaflow.exceptions import CorruptRecord, UnknownPlan, UnknownStep
from dynaflow.persistence import Batch, Claim, HistoryRow, PlanUpdate, StepUpdate, Storage
from dynaflow.persistence.base import EventRow
from dynaflow.persistence.sql import SQLStorage
from dynaflow.states import PlanState, StepState

from .test_storage import NESTED, T0, make_plan

BERLIN = timezone(timedelta(hours=2))


def add_plan(
    storage: Storage,
    plan_id: str,
    *,
    state: PlanState = PlanState.RUNNING,
    world: str | None = "w-1",
    steps: int = 3,
) -> str:
    new = make_plan(plan_id, state=state, steps=steps)
    new.plan = replace(new.plan, world_id=world)
    storage.insert_plan(new)
    return plan_id


def event(
    plan_id: str,
    step_id: int = 1,
    payload: Any = None,
    *,
    due: datetime | None = None,
    kind: str | None = None,
) -> EventRow:
    """A sent event, or a timer when it has a ``due`` time."""
    kind = kind or ("event" if due is None else "timer")
    return EventRow(plan_id, step_id, kind, payload, T0, due)


def add(storage: Storage, *rows: EventRow) -> list[int]:
    storage.add_events(rows)
    return ids(list(rows))


def ids(rows: list[EventRow]) -> list[int]:
    found = []
    for row in rows:
        assert row.id is not None
        found.append(row.id)
    return found


# -- add and delete ----------------------------------------------------------------------------


def test_add_events_sets_ids_ascending_in_the_order_given(storage: Storage) -> None:
    add_plan(storage, "a")
    add_plan(storage, "b")
    rows = [
        event("b", 2, {"n": 1}),
        event("a", 1, "two", due=T0 + timedelta(hours=1)),
        event("a", 3, [3], kind="timeout", due=T0),
        event("b", 2, None),
    ]

    first = add(storage, *rows[:3])
    second = add(storage, rows[3])

    assert len(first) == 3 and first == sorted(first)
    assert second[0] > first[-1]
    assert storage.plan_events("a") == [rows[1], rows[2]]
    assert storage.plan_events("b") == [rows[0], rows[3]]
    assert storage.plan_events("b")[0] == EventRow("b", 2, "event", {"n": 1}, T0, None, first[0])
    storage.add_events([])  # nothing to do


def test_many_events_in_one_call_get_ascending_ids(storage: Storage) -> None:
    add_plan(storage, "a", steps=5)
    rows = [
        event("a", 1 + i % 5, {"i": i}, due=None if i % 3 else T0 + timedelta(seconds=i))
        for i in range(250)
    ]
    event_ids = add(storage, *rows)
    assert len(set(event_ids)) == 250 and event_ids == sorted(event_ids)
    assert storage.plan_events("a") == rows


PAYLOADS: dict[str, Any] = {
    "dict": NESTED,
    "empty dict": {},
    "list": [1, "two", None, [3.5, {"x": False}]],
    "empty list": [],
    "string": "just text",
    "empty string": "",
    "json-looking string": '{"not": "an object"}',
    "unicode": "Zürich ✓ 東京 \U0001f600",
    "int": 42,
    "big int": 2**53 + 1,
    "negative float": -1.25,
    "zero": 0,
    "true": True,
    "false": False,
    "null": None,
}


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_payloads_round_trip(storage: Storage, payload: Any) -> None:
    add_plan(storage, "p")
    add(storage, event("p", 1, payload))
    # a large write takes another path on PostgreSQL (COPY)
    add(storage, *[event("p", 2, payload) for _ in range(120)])

    for row in storage.plan_events("p") + storage.due_events("w-1", T0):
        assert row.payload == payload
        assert type(row.payload) is type(payload)


def test_add_events_for_an_unknown_plan_or_step_raises_and_adds_nothing(storage: Storage) -> None:
    add_plan(storage, "p")
    with pytest.raises(UnknownPlan, match="nope"):
        storage.add_events([event("p"), event("nope")])
    with pytest.raises(UnknownStep, match="99") as caught:
        storage.add_events([event("p"), event("p", 99), event("nope")])
    assert isinstance(caught.value, LookupError)
    with pytest.raises(UnknownPlan, match="nope"):  # the first bad row decides
        storage.add_events([event("nope"), event("p", 99)])
    assert storage.plan_events("p") == []


def test_delete_events_ignores_ids_that_are_gone(storage: Storage) -> None:
    add_plan(storage, "p")
    add_plan(storage, "q")
    rows = [event("p"), event("q"), event("p", 2), event("p", 3)]
    a, b, c, d = add(storage, *rows)

    storage.delete_events([c, 999_999, c, a])
    storage.delete_events([a])
    storage.delete_events([])

    assert ids(storage.plan_events("p")) == [d]
    assert ids(storage.plan_events("q")) == [b]


def test_event_ids_are_never_used_twice(storage: Storage) -> None:
    add_plan(storage, "p")
    _, last = add(storage, event("p"), event("p"))
    storage.delete_events([last])
    (again,) = add(storage, event("p"))
    assert again > last


def test_event_times_come_back_as_the_same_instants_in_utc(storage: Storage) -> None:
    add_plan(storage, "p")
    created = datetime(2024, 5, 1, 14, 0, tzinfo=BERLIN)
    due = datetime(2024, 5, 1, 14, 30, tzinfo=BERLIN)
    add(storage, EventRow("p", 1, "timer", None, created, due))

    (row,) = storage.plan_events("p")
    assert row.created_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert row.due_at == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    if isinstance(storage, SQLStorage):
        assert row.created_at.tzinfo == UTC and row.due_at.tzinfo == UTC
    assert storage.next_due("w-1") == due


def test_concurrent_adds_get_distinct_ids(storage: Storage) -> None:
    add_plan(storage, "p", steps=4)
    start = threading.Barrier(4)
    errors: list[BaseException] = []
    seen: list[list[int]] = []

    def worker(n: int) -> None:
        try:
            start.wait(10)
            for _ in range(10):
                seen.append(add(storage, *[event("p", n + 1, {"n": n}) for _ in range(5)]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert all(batch == sorted(batch) for batch in seen)
    everything = [i for batch in seen for i in batch]
    assert len(set(everything)) == 200
    assert sorted(everything) == ids(storage.plan_events("p"))


# -- finding deliverable events ----------------------------------------------------------------


@pytest.fixture
def queued(storage: Storage) -> dict[str, int]:
    """Events of plans in various states and owners, added interleaved; their ids by name."""
    add_plan(storage, "mine")
    add_plan(storage, "mine-too")
    add_plan(storage, "other", world="w-2")
    add_plan(storage, "paused", state=PlanState.PAUSED)
    add_plan(storage, "unowned", world=None)
    add_plan(storage, "planned", state=PlanState.PLANNED)
    hour = timedelta(hours=1)
    named = {
        "future": event("mine", 1, "f", due=T0 + hour),
        "other": event("other", 1, due=T0 - hour),
        "sent": event("mine-too", 2, {"sent": True}),
        "paused": event("paused", 1, due=T0 - 2 * hour),
        "now": event("mine", 2, "n", due=T0),
        "unowned": event("unowned", 1),
        "past": event("mine", 3, "p", due=T0 - hour),
        "planned": event("planned", 1, due=T0 - 3 * hour),
        "other-later": event("other", 2, due=T0 + 2 * hour),
        "sent-later": event("mine", 1, [1, 2]),
    }
    add(storage, *named.values())
    return {name: row.id for name, row in named.items() if row.id is not None}


def test_due_events_are_the_deliverable_events_of_the_worlds_running_plans(
    storage: Storage, queued: dict[str, int]
) -> None:
    due = storage.due_events("w-1", T0)

    assert ids(due) == [queued[n] for n in ("sent", "now", "past", "sent-later")]
    assert [(r.plan_id, r.step_id, r.kind, r.payload) for r in due] == [
        ("mine-too", 2, "event", {"sent": True}),
        ("mine", 2, "timer", "n"),
        ("mine", 3, "timer", "p"),
        ("mine", 1, "event", [1, 2]),
    ]
    assert due[1].due_at == T0
    # the same instant in another zone; a microsecond earlier the timer is not due yet
    assert ids(storage.due_events("w-1", T0.astimezone(BERLIN))) == ids(due)
    early = storage.due_events("w-1", T0 - timedelta(microseconds=1))
    assert ids(early) == [queued[n] for n in ("sent", "past", "sent-later")]
    later = storage.due_events("w-1", T0 + timedelta(days=1))
    assert ids(later) == sorted([*ids(due), queued["future"]])
    assert ids(storage.due_events("w-2", T0)) == [queued["other"]]
    assert storage.due_events("w-3", T0) == []


def test_due_events_honours_the_limit(storage: Storage, queued: dict[str, int]) -> None:
    assert ids(storage.due_events("w-1", T0, limit=2)) == [queued["sent"], queued["now"]]
    assert storage.due_events("w-1", T0, limit=0) == []


def test_due_events_follow_the_plan_state_and_owner(
    storage: Storage, queued: dict[str, int]
) -> None:
    storage.update_plan("paused", {"state": PlanState.RUNNING})
    storage.update_plan("mine-too", {"world_id": "w-2"})
    storage.update_plan("mine", {"state": PlanState.STOPPED})

    assert ids(storage.due_events("w-1", T0)) == [queued["paused"]]
    assert ids(storage.due_events("w-2", T0)) == [queued["other"], queued["sent"]]


def test_next_due_is_the_earliest_timer_of_the_worlds_running_plans(
    storage: Storage, queued: dict[str, int]
) -> None:
    hour = timedelta(hours=1)
    assert storage.next_due("w-1") == T0 - hour  # already due counts too
    assert storage.next_due("w-2") == T0 - hour
    assert storage.next_due("w-3") is None

    storage.delete_events([queued["past"], queued["now"]])
    assert storage.next_due("w-1") == T0 + hour
    storage.delete_events([queued["future"]])
    assert storage.next_due("w-1") is None  # only events without due_at are left
    assert storage.due_events("w-1", T0)  # ...which are still due

    storage.update_plan("paused", {"state": PlanState.RUNNING})
    assert storage.next_due("w-1") == T0 - 2 * hour
    moment = storage.next_due("w-2")
    assert moment is not None and moment.utcoffset() == timedelta(0)


def test_plan_events_lists_one_plans_queue_oldest_first(
    storage: Storage, queued: dict[str, int]
) -> None:
    rows = storage.plan_events("mine")
    assert ids(rows) == [queued[n] for n in ("future", "now", "past", "sent-later")]
    assert [r.due_at for r in rows] == [T0 + timedelta(hours=1), T0, T0 - timedelta(hours=1), None]
    assert ids(storage.plan_events("planned")) == [queued["planned"]]
    add_plan(storage, "quiet")
    assert storage.plan_events("quiet") == []
    with pytest.raises(UnknownPlan, match="nope"):
        storage.plan_events("nope")


# -- get_step ----------------------------------------------------------------------------------


def test_get_step_reads_one_step(storage: Storage) -> None:
    add_plan(storage, "p")
    storage.update_steps(
        [
            StepUpdate("p", 2, StepState.PENDING, StepState.RUNNING, {"world_id": "w-1"}),
            StepUpdate("p", 2, StepState.RUNNING, StepState.SUSPENDED),
        ]
    )

    plan = storage.load_plan("p")
    for step_id in (1, 2, 3):
        assert storage.get_step("p", step_id) == plan.step(step_id)
    assert (storage.get_step("p", 2).state, storage.get_step("p", 2).world_id) == (
        StepState.SUSPENDED,
        "w-1",
    )
    with pytest.raises(UnknownStep, match="plan p has no step 4"):
        storage.get_step("p", 4)
    with pytest.raises(UnknownPlan, match="nope"):
        storage.get_step("nope", 1)


# -- in a batch --------------------------------------------------------------------------------


def test_write_adds_and_drops_events_with_the_batch(storage: Storage) -> None:
    add_plan(storage, "p")
    (old, kept) = add(storage, event("p", 1, "old"), event("p", 2, "kept"))
    new = [event("p", 1, {"new": 1}), event("p", 3, "timer", due=T0)]
    batch = Batch(
        steps=[StepUpdate("p", 1, StepState.PENDING, StepState.RUNNING)],
        events=new,
        drop_events=[old],
    )
    assert batch and Batch(events=[event("p")]) and Batch(drop_events=[1])

    storage.write(batch)

    assert all(row.id is not None and row.id > kept for row in new)
    assert storage.plan_events("p") == [replace(event("p", 2, "kept"), id=kept), *new]
    assert storage.get_step("p", 1).state == StepState.RUNNING


def test_a_failed_batch_adds_and_drops_no_events(storage: Storage) -> None:
    add_plan(storage, "p")
    (old,) = add(storage, event("p", 1, "old"))
    before = storage.plan_events("p")

    failing = Batch(
        steps=[StepUpdate("p", 1, StepState.PENDING, StepState.RUNNING)],
        events=[event("p", 2, "new"), event("p", 99, "no such step")],
        drop_events=[old],
    )
    with pytest.raises(UnknownStep):
        storage.write(failing)
    assert storage.plan_events("p") == before
    assert storage.get_step("p", 1).state == StepState.PENDING

    class Boom(Exception):
        pass

    with pytest.raises(Boom), storage.transaction():
        storage.write(Batch(events=[event("p", 2, "new")], drop_events=[old]))
        assert [r.payload for r in storage.plan_events("p")] == ["new"]  # visible inside
        raise Boom
    assert storage.plan_events("p") == before

    with pytest.raises(UnknownPlan):
        storage.write(Batch(events=[event("p", 2)], history=[HistoryRow("nope", T0, "x")]))
    assert storage.plan_events("p") == before


# -- owner compare-and-set ---------------------------------------------------------------------


def test_update_plan_can_compare_the_owning_world(storage: Storage) -> None:
    add_plan(storage, "p", world="w-1")
    running = frozenset({PlanState.RUNNING})

    def world() -> str | None:
        return storage.get_plan_record("p").world_id

    assert not storage.update_plan("p", {"label": "x"}, owner="w-2")
    assert not storage.update_plan("p", {"label": "x"}, owner=None)
    assert not storage.update_plan("p", {"label": "x"}, frozenset({PlanState.PAUSED}), "w-1")
    assert not storage.update_plan("p", {"label": "x"}, running, "w-2")
    assert storage.get_plan_record("p").label == "demo"
    assert not storage.update_plan("p", {}, owner="w-2")  # compare only
    assert storage.update_plan("p", {}, running, owner="w-1")

    assert storage.update_plan("p", {"label": "mine"}, running, owner="w-1")
    assert storage.update_plan("p", {"label": "anyone's"}, owner=...)
    assert storage.update_plan("p", {"label": "default"})
    assert storage.get_plan_record("p").label == "default"

    # release, then adoption by another world
    assert storage.update_plan("p", {"world_id": None}, owner="w-1")
    assert world() is None
    assert not storage.update_plan("p", {"world_id": "w-3"}, owner="w-1")
    assert storage.update_plan("p", {}, owner=None)
    assert storage.update_plan("p", {"world_id": "w-3"}, running, owner=None)
    assert world() == "w-3"
    assert not storage.update_plan("p", {"world_id": "w-4"}, running, owner=None)
    assert world() == "w-3"

    with pytest.raises(UnknownPlan, match="nope"):
        storage.update_plan("nope", {"label": "x"}, owner="w-1")
    with pytest.raises(UnknownPlan, match="nope"):
        storage.update_plan("nope", {}, owner=None)


def test_a_batch_updates_a_plan_only_for_its_owner(storage: Storage) -> None:
    add_plan(storage, "p", world="w-1")
    running = frozenset({PlanState.RUNNING})
    stop = {"state": PlanState.STOPPED}
    theirs = PlanUpdate("p", running, stop, owner="w-2")
    unowned = PlanUpdate("p", running, stop, owner=None)

    result = storage.write(Batch(plans=[theirs, unowned]))
    assert result.plan_conflicts == [theirs, unowned]
    assert storage.get_plan_record("p").state == PlanState.RUNNING

    result = storage.write(Batch(plans=[PlanUpdate("p", running, stop, owner="w-1")]))
    assert result.plan_conflicts == []
    assert storage.get_plan_record("p").state == PlanState.STOPPED


def test_a_batch_leaves_out_the_plans_its_world_no_longer_owns(storage: Storage) -> None:
    """Fencing: the batch of world w-1 writes to p (still its) and q (taken over by w-2): q's
    step update, claim, plan update and history do not land, p's do, and ``fenced`` names q."""
    add_plan(storage, "p", world="w-1")
    add_plan(storage, "q", world="w-2")
    pending = frozenset({StepState.PENDING})
    batch = Batch(owner="w-1")
    for plan_id in ("p", "q"):
        batch.steps.append(StepUpdate(plan_id, 1, StepState.PENDING, StepState.SKIPPED))
        batch.claims.append(Claim(plan_id, [2], pending, "w-1", T0))
        batch.history.append(HistoryRow(plan_id, T0, "noted", None, "w-1"))
    batch.plans.append(PlanUpdate("q", None, {"label": "stale"}))

    result = storage.write(batch)

    assert result.fenced == {"q"}
    assert result.claimed == {("p", 2)}
    states = {
        (plan_id, step.id): step.state
        for plan_id in ("p", "q")
        for step in storage.load_plan(plan_id).steps
        if step.id in (1, 2)
    }
    assert states == {
        ("p", 1): StepState.SKIPPED,
        ("p", 2): StepState.RUNNING,
        ("q", 1): StepState.PENDING,
        ("q", 2): StepState.PENDING,
    }
    assert storage.get_plan_record("q").label == "demo"
    assert [h.event for h in storage.load_plan("q").history] == ["planned"]
    assert [h.event for h in storage.load_plan("p").history][1:] == ["noted", "step running"]


# -- SQL only ----------------------------------------------------------------------------------


def test_a_json_null_payload_reads_as_none(sql_storage: SQLStorage) -> None:
    add_plan(sql_storage, "p")
    event_id, sql_null = add(sql_storage, event("p", 1, {"x": 1}), event("p", 1, None))
    with sql_storage.transaction() as conn:
        conn.execute(text("UPDATE dynaflow_events SET payload = 'null' WHERE id = :id"),
                     {"id": event_id})  # fmt: skip
        stored = conn.execute(
            text("SELECT id FROM dynaflow_events WHERE payload IS NULL")
        ).scalars()
        assert list(stored) == [sql_null]  # Python None is SQL NULL
    assert [r.payload for r in sql_storage.plan_events("p")] == [None, None]


def test_an_event_that_cannot_be_decoded_is_a_corrupt_record(tmp_path: Path) -> None:
    storage = SQLStorage(f"sqlite:///{tmp_path}/corrupt.db")  # PostgreSQL checks JSON itself
    try:
        add_plan(storage, "p")
        (event_id,) = add(storage, event("p", 1, {"x": 1}))
        with storage.transaction() as conn:
            conn.execute(text("UPDATE dynaflow_events SET payload = '{oops' WHERE id = :id"),
                         {"id": event_id})  # fmt: skip
        for read in (lambda: storage.plan_events("p"), lambda: storage.due_events("w-1", T0)):
            with pytest.raises(CorruptRecord, match=f"plan p event {event_id}"):
                read()
    finally:
        storage.close()


# -- PostgreSQL notifications ------------------------------------------------------------------


@pytest.mark.postgres
def test_a_committed_batch_notifies_its_topics(pg_storage_url: str) -> None:
    """A batch that ends a plan notifies ``p <plan>``, one that queues an event ``e *``; a
    batch whose plans were taken over (rolled back, then written without them) notifies only
    what it wrote. Notifications arrive when the transaction commits."""
    storage = SQLStorage(pg_storage_url)
    heard: list[str | None] = []
    got = threading.Condition()

    def hear(topic: str | None) -> None:
        with got:
            heard.append(topic)
            got.notify_all()

    def wait_for(*topics: str) -> None:
        with got:
            assert got.wait_for(lambda: set(topics) <= set(heard), 10), heard

    listener = storage.listen(hear)
    assert listener is not None
    try:
        add_plan(storage, "p", world="w-1")
        add_plan(storage, "q", world="w-2")
        add_plan(storage, "r", world="w-1")
        running = frozenset({PlanState.RUNNING})
        stop = {"state": PlanState.STOPPED}
        storage.write(Batch(plans=[PlanUpdate("p", running, stop)], owner="w-1"))
        wait_for("p p")
        storage.write(Batch(events=[event("r")], owner="w-1"))
        wait_for("e *")
        # q is w-2's: the batch of w-1 ends r only, and says so
        batch = Batch(
            plans=[PlanUpdate("q", running, stop), PlanUpdate("r", running, stop)], owner="w-1"
        )
        assert storage.write(batch).fenced == {"q"}
        wait_for("p r")
        with got:
            assert "p q" not in heard
    finally:
        listener.close()
        storage.close()
