"""The storage contract (``dynaflow.persistence.base``), run on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from dynaflow.exceptions import (
    ConcurrentModification,
    ConfigurationError,
    CorruptRecord,
    InvalidArgument,
    StorageError,
    UnknownAction,
    UnknownPlan,
)
from dynaflow.execution_plan import (
    ActionRecord,
    ExecutionPlan,
    HistoryRecord,
    PlanRecord,
    StepError,
    StepRecord,
)
from dynaflow.persistence import (
    Batch,
    Claim,
    HistoryRow,
    NewPlan,
    PlanFilter,
    PlanUpdate,
    StepUpdate,
    Storage,
)
from dynaflow.persistence.sql import SQLStorage
from dynaflow.states import PlanResult, PlanState, StepKind, StepState

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
ERROR = StepError("ValueError", "bad input ✗", "Traceback (most recent call last):\n  ...")
NESTED = {
    "name": "Zürich ✓ 東京",
    "nested": {"list": [1, 2.5, None, True, {"deep": ["x", "ÿ"]}], "empty": {}},
    "quote": 'he said "hi"\n',
}


def make_plan(
    plan_id: str | None = None,
    *,
    key: str | None = None,
    label: str = "demo",
    state: PlanState = PlanState.PLANNED,
    result: PlanResult = PlanResult.PENDING,
    root: str = "app.Root",
    created_at: datetime = T0,
    started_at: datetime | None = None,
    steps: int = 3,
) -> NewPlan:
    """A plan with ``steps`` actions, each with one run step, run one after another."""
    plan_id = plan_id or str(uuid.uuid4())
    record = PlanRecord(
        id=plan_id,
        label=label,
        state=state,
        result=result,
        root_action_class=root,
        created_at=created_at,
        started_at=started_at,
        key=key,
        run_flow={"sequence": list(range(1, steps + 1))},
    )
    actions = [
        ActionRecord(
            i, root if i == 0 else "app.Child", {"n": i, **NESTED}, {}, None if i == 0 else 0
        )
        for i in range(steps)
    ]
    step_records = [
        StepRecord(i + 1, StepKind.RUN, i, actions[i].action_class, StepState.PENDING, position=i)
        for i in range(steps)
    ]
    edges = [(i, i + 1) for i in range(1, steps)]
    history = [HistoryRow(plan_id, created_at, "planned", detail={"steps": steps})]
    return NewPlan(record, actions, step_records, edges, history)


def step(storage: Storage, plan_id: str, step_id: int) -> StepRecord:
    return storage.load_plan(plan_id).step(step_id)


# -- insert and load ---------------------------------------------------------------------------


def test_insert_then_load_gives_back_the_same_plan(storage: Storage) -> None:
    new = make_plan(key="order-1")
    new.plan = replace(
        new.plan,
        started_at=T0 + timedelta(seconds=1),
        error=ERROR,
        world_id="w-1",
        run_flow={"sequence": [1, {"concurrence": [2, 3]}]},
    )
    new.steps[1] = StepRecord(
        2,
        StepKind.RUN,
        1,
        "app.Child",
        StepState.ERROR,
        started_at=T0,
        ended_at=T0 + timedelta(seconds=1.5),
        duration=1.5,
        error=ERROR,
        queue="fast",
        world_id="w-1",
        position=1,
    )
    new.actions[1] = ActionRecord(1, "app.Child", NESTED, {"result": NESTED}, 0, 0)
    storage.insert_plan(new)

    loaded = storage.load_plan(new.plan.id)

    assert loaded == ExecutionPlan(
        record=new.plan,
        actions=tuple(new.actions),
        steps=tuple(new.steps),
        edges=tuple(new.edges),
        history=(HistoryRecord(T0, "planned", detail={"steps": 3}),),
    )
    for moment in (loaded.created_at, loaded.started_at, loaded.steps[1].ended_at):
        assert moment is not None and moment.utcoffset() == timedelta(0)
    assert loaded.history[0].at.utcoffset() == timedelta(0)
    assert storage.get_plan_record(new.plan.id) == new.plan
    assert storage.find_plan_by_key("order-1") == new.plan
    assert storage.find_plan_by_key("order-2") is None


def test_a_duplicate_plan_id_or_key_is_a_concurrent_modification(storage: Storage) -> None:
    first = make_plan("p-1", key="k")
    storage.insert_plan(first)

    with pytest.raises(ConcurrentModification, match="p-1"):
        storage.insert_plan(make_plan("p-1"))
    with pytest.raises(ConcurrentModification, match="'k'"):
        storage.insert_plan(make_plan("p-2", key="k"))

    # the failed insert leaves the ambient transaction usable (PostgreSQL would abort it)
    with storage.transaction():
        with pytest.raises(ConcurrentModification):
            storage.insert_plan(make_plan("p-3", key="k"))
        storage.insert_plan(make_plan("p-4", key="k2"))
    assert storage.count_plans() == 2
    assert storage.load_plan("p-1") == storage.load_plan("p-1")
    assert storage.find_plan_by_key("k") == first.plan


# -- compare-and-set updates -------------------------------------------------------------------


def test_update_plan_applies_only_in_an_expected_state(storage: Storage) -> None:
    new = make_plan()
    storage.insert_plan(new)
    plan_id = new.plan.id
    later = T0 + timedelta(minutes=1)

    assert storage.update_plan(
        plan_id,
        {"state": PlanState.RUNNING, "started_at": later, "world_id": "w-1"},
        frozenset({PlanState.PLANNED}),
    )
    assert not storage.update_plan(
        plan_id, {"state": PlanState.PAUSED}, frozenset({PlanState.PLANNED, PlanState.PAUSED})
    )
    record = storage.get_plan_record(plan_id)
    assert (record.state, record.started_at, record.world_id) == (PlanState.RUNNING, later, "w-1")

    assert storage.update_plan(
        plan_id,
        {"state": PlanState.STOPPED, "result": PlanResult.ERROR, "error": ERROR.to_json()},
    )
    record = storage.get_plan_record(plan_id)
    assert (record.state, record.result, record.error) == (
        PlanState.STOPPED,
        PlanResult.ERROR,
        ERROR,
    )
    assert storage.update_plan(plan_id, {"error": None})
    assert storage.get_plan_record(plan_id).error is None
    assert storage.update_plan(plan_id, {}, frozenset({PlanState.STOPPED}))
    assert not storage.update_plan(plan_id, {}, frozenset({PlanState.RUNNING}))


def test_update_steps_reports_conflicts_and_applies_the_rest(storage: Storage) -> None:
    new = make_plan(steps=6)
    storage.insert_plan(new)
    plan_id = new.plan.id
    storage.update_steps([StepUpdate(plan_id, 2, StepState.PENDING, StepState.RUNNING)])
    ended = T0 + timedelta(seconds=3)
    done = {"ended_at": ended, "duration": 3.0}
    failed = {"error": ERROR.to_json()}
    P, R, S, E = StepState.PENDING, StepState.RUNNING, StepState.SUCCESS, StepState.ERROR

    updates = [
        StepUpdate(plan_id, 1, P, S, dict(done)),
        StepUpdate(plan_id, 2, P, S, dict(done)),  # conflict: it is running
        StepUpdate(plan_id, 4, R, E, dict(failed)),  # conflict: it is pending
        StepUpdate(plan_id, 3, P, S, dict(done)),
        StepUpdate(plan_id, 99, P, S, dict(done)),  # conflict: no such step
        StepUpdate(plan_id, 6, P, E, dict(failed)),
        # the same step twice: applied in the order given
        StepUpdate(plan_id, 5, P, R),
        StepUpdate(plan_id, 5, R, StepState.SKIPPED, {"ended_at": ended}),
    ]
    conflicts = storage.update_steps(updates)

    assert conflicts == [updates[1], updates[2], updates[4]]  # in the order given
    plan = storage.load_plan(plan_id)
    assert [s.state for s in plan.steps] == [S, R, S, P, StepState.SKIPPED, E]
    assert (plan.step(1).ended_at, plan.step(1).duration) == (ended, 3.0)
    assert plan.step(2).ended_at is None
    assert plan.step(4).error is None
    assert plan.step(6).error == ERROR
    assert plan.step(5).ended_at == ended
    assert storage.update_steps([]) == []


def test_claim_steps_moves_only_expected_states_to_running(storage: Storage) -> None:
    new = make_plan(steps=4)
    storage.insert_plan(new)
    plan_id = new.plan.id
    storage.update_steps(
        [
            StepUpdate(plan_id, 2, StepState.PENDING, StepState.RUNNING),
            StepUpdate(plan_id, 2, StepState.RUNNING, StepState.ERROR, {"error": ERROR.to_json()}),
            StepUpdate(plan_id, 3, StepState.PENDING, StepState.CANCELLED),
        ]
    )
    at = T0 + timedelta(hours=1)
    expect = frozenset({StepState.PENDING, StepState.ERROR})

    claimed = storage.claim_steps(Claim(plan_id, [4, 3, 2, 1], expect, "w-2", at))

    assert claimed == [4, 2, 1]
    plan = storage.load_plan(plan_id)
    for step_id in claimed:
        s = plan.step(step_id)
        assert (s.state, s.started_at, s.world_id, s.error) == (StepState.RUNNING, at, "w-2", None)
    assert plan.step(3).state == StepState.CANCELLED
    assert storage.claim_steps(Claim(plan_id, [1, 2], expect, "w-3", at)) == []
    assert step(storage, plan_id, 1).world_id == "w-2"


def test_save_outputs_sets_the_actions_output(storage: Storage) -> None:
    new = make_plan(steps=2)
    storage.insert_plan(new)
    storage.save_outputs([(new.plan.id, 0, {"id": 7}), (new.plan.id, 1, NESTED)])

    actions = storage.load_plan(new.plan.id).actions
    assert [a.output for a in actions] == [{"id": 7}, NESTED]
    with pytest.raises(UnknownAction, match="no action 5"):
        storage.save_outputs([(new.plan.id, 5, {})])


def test_updates_of_unknown_fields_are_refused(storage: Storage) -> None:
    new = make_plan()
    storage.insert_plan(new)
    plan_id = new.plan.id
    with pytest.raises(InvalidArgument, match="colour"):
        storage.update_plan(plan_id, {"state": PlanState.RUNNING, "colour": "red"})
    with pytest.raises(InvalidArgument, match="colour"):
        storage.update_steps(
            [StepUpdate(plan_id, 1, StepState.PENDING, StepState.RUNNING, {"colour": 1})]
        )
    plan = storage.load_plan(plan_id)
    assert (plan.state, plan.step(1).state) == (PlanState.PLANNED, StepState.PENDING)


def test_history_comes_back_in_the_order_it_was_added(storage: Storage) -> None:
    new = make_plan()
    storage.insert_plan(new)
    plan_id = new.plan.id
    # ``at`` deliberately out of order: history is an append-only log
    rows = [
        HistoryRow(plan_id, T0 + timedelta(seconds=5), "started", world_id="w-1"),
        HistoryRow(plan_id, T0 + timedelta(seconds=2), "step", step_id=1, detail={"a": [1]}),
        HistoryRow(plan_id, T0 + timedelta(seconds=9), "stopped"),
    ]
    storage.add_history(rows[:2])
    storage.add_history(rows[2:])

    history = storage.load_plan(plan_id).history
    assert [h.event for h in history] == ["planned", "started", "step", "stopped"]
    assert history[1] == HistoryRecord(T0 + timedelta(seconds=5), "started", "w-1")
    assert history[2] == HistoryRecord(T0 + timedelta(seconds=2), "step", None, 1, {"a": [1]})

    # what the executor loads: everything but the history
    bare = storage.load_plan(plan_id, history=False)
    assert bare.history == ()
    assert (bare.record, bare.actions, bare.steps, bare.edges) == (
        storage.load_plan(plan_id).record,
        storage.load_plan(plan_id).actions,
        storage.load_plan(plan_id).steps,
        storage.load_plan(plan_id).edges,
    )


# -- finding plans -----------------------------------------------------------------------------


@pytest.fixture
def five_plans(storage: Storage) -> Storage:
    def at(minutes: int) -> datetime:
        return T0 + timedelta(minutes=minutes)

    P, R = PlanState, PlanResult
    for plan in [
        make_plan("a", label="import", state=P.STOPPED, result=R.SUCCESS, created_at=at(1),
                  started_at=at(2)),
        make_plan("b", label="export", state=P.RUNNING, created_at=at(3), started_at=at(4),
                  root="app.Export"),
        make_plan("c", label="import", state=P.STOPPED, result=R.ERROR, created_at=at(3)),
        make_plan("d", label="import", state=P.PLANNED, created_at=at(0)),
        make_plan("e", label="Import", state=P.PAUSED, created_at=at(5), started_at=at(1)),
    ]:  # fmt: skip
        storage.insert_plan(plan)
    return storage


def ids(records: list[PlanRecord]) -> list[str]:
    return [r.id for r in records]


def test_find_plans_filters_and_counts(five_plans: Storage) -> None:
    storage = five_plans
    assert ids(storage.find_plans()) == ["e", "b", "c", "a", "d"]
    assert ids(storage.find_plans(PlanFilter(state=(PlanState.STOPPED,)))) == ["c", "a"]
    assert ids(storage.find_plans(PlanFilter(result=(PlanResult.ERROR, PlanResult.SUCCESS)))) == [
        "c",
        "a",
    ]
    assert ids(storage.find_plans(PlanFilter(label="import"))) == ["c", "a", "d"]
    assert ids(storage.find_plans(PlanFilter(action="app.Export"))) == ["b"]
    assert ids(storage.find_plans(PlanFilter(state=(PlanState.STOPPED,), label="export"))) == []
    assert storage.find_plans(PlanFilter(state=())) == []
    assert storage.count_plans() == 5
    assert storage.count_plans(PlanFilter(label="import", state=(PlanState.STOPPED,))) == 2
    assert storage.count_plans(PlanFilter(action="app.Root", result=(PlanResult.PENDING,))) == 2


def test_sub_plans_keep_their_parent_and_are_found_by_it(storage: Storage) -> None:
    storage.insert_plan(make_plan("parent"))
    for child in ("kid-1", "kid-2"):
        new = make_plan(child)
        new.plan = replace(new.plan, parent_id="parent", parent_step_id=2)
        storage.insert_plan(new)
    storage.insert_plan(make_plan("other"))

    assert sorted(ids(storage.find_plans(PlanFilter(parent="parent")))) == ["kid-1", "kid-2"]
    assert storage.count_plans(PlanFilter(parent="parent")) == 2
    assert storage.count_plans(PlanFilter(parent="kid-1")) == 0
    kid = storage.load_plan("kid-1")
    assert (kid.parent_id, kid.parent_step_id) == ("parent", 2)
    assert storage.get_plan_record("parent").parent_id is None


def test_many_plans_load_at_once_as_one_at_a_time(storage: Storage) -> None:
    for plan_id, steps in (("p-1", 3), ("p-2", 1), ("p-3", 5)):
        storage.insert_plan(make_plan(plan_id, steps=steps))
    loaded = storage.load_plans(["p-3", "missing", "p-1", "p-3"])
    assert sorted(loaded) == ["p-1", "p-3"]
    for plan_id, plan in loaded.items():
        assert plan == storage.load_plan(plan_id, history=False)
    assert storage.load_plans([]) == {}


def test_savepoint_undoes_its_block_and_keeps_the_rest(storage: Storage) -> None:
    with storage.transaction():
        storage.insert_plan(make_plan("kept"))
        with pytest.raises(RuntimeError), storage.savepoint():
            storage.insert_plan(make_plan("undone"))
            raise RuntimeError("undo the block")
        storage.insert_plan(make_plan("after"))
    assert sorted(ids(storage.find_plans())) == ["after", "kept"]


def test_plan_counts_group_by_state_and_result(five_plans: Storage) -> None:
    P, R = PlanState, PlanResult
    assert five_plans.plan_counts() == {
        (P.STOPPED, R.SUCCESS): 1,
        (P.RUNNING, R.PENDING): 1,
        (P.STOPPED, R.ERROR): 1,
        (P.PLANNED, R.PENDING): 1,
        (P.PAUSED, R.PENDING): 1,
    }
    assert five_plans.plan_counts(PlanFilter(label="import")) == {
        (P.STOPPED, R.SUCCESS): 1,
        (P.STOPPED, R.ERROR): 1,
        (P.PLANNED, R.PENDING): 1,
    }


def test_find_plans_orders_with_nulls_last_and_ties_by_id(five_plans: Storage) -> None:
    storage = five_plans
    assert ids(storage.find_plans(order_by="created_at")) == ["d", "a", "b", "c", "e"]
    assert ids(storage.find_plans(order_by="started_at")) == ["e", "a", "b", "c", "d"]
    assert ids(storage.find_plans(order_by="-started_at")) == ["b", "a", "e", "c", "d"]
    assert ids(storage.find_plans(order_by="label")) == ["e", "b", "a", "c", "d"]
    assert ids(storage.find_plans(order_by="-state")) == ["a", "c", "b", "d", "e"]
    assert ids(storage.find_plans(order_by="-id")) == ["e", "d", "c", "b", "a"]


def test_find_plans_pages(five_plans: Storage) -> None:
    storage = five_plans
    assert ids(storage.find_plans(limit=2)) == ["e", "b"]
    assert ids(storage.find_plans(offset=2, limit=2)) == ["c", "a"]
    assert ids(storage.find_plans(offset=4)) == ["d"]
    assert storage.find_plans(offset=5) == []
    assert ids(storage.iter_plans(order_by="id", limit=3)) == ["a", "b", "c"]


def test_find_plans_rejects_an_unknown_order(storage: Storage) -> None:
    with pytest.raises(ConfigurationError, match="created_at"):
        storage.find_plans(order_by="-payload")


# -- unknown plans -----------------------------------------------------------------------------

AT = T0
UNKNOWN: dict[str, Callable[[Storage], object]] = {
    "load_plan": lambda s: s.load_plan("nope"),
    "get_plan_record": lambda s: s.get_plan_record("nope"),
    "update_plan": lambda s: s.update_plan("nope", {"state": PlanState.RUNNING}),
    "update_plan_cas": lambda s: s.update_plan(
        "nope", {"state": PlanState.RUNNING}, frozenset({PlanState.PLANNED})
    ),
    "update_steps": lambda s: s.update_steps(
        [StepUpdate("nope", 1, StepState.PENDING, StepState.RUNNING)]
    ),
    "claim_steps": lambda s: s.claim_steps(
        Claim("nope", [1], frozenset({StepState.PENDING}), "w", AT)
    ),
    "save_outputs": lambda s: s.save_outputs([("nope", 0, {})]),
    "add_history": lambda s: s.add_history([HistoryRow("nope", AT, "x")]),
}


@pytest.mark.parametrize("call", UNKNOWN.values(), ids=UNKNOWN.keys())
def test_an_unknown_plan_id_raises_unknown_plan(
    storage: Storage, call: Callable[[Storage], object]
) -> None:
    storage.insert_plan(make_plan("known"))
    with pytest.raises(UnknownPlan, match="nope"):
        call(storage)


def test_a_write_naming_an_unknown_plan_among_known_ones_writes_nothing(storage: Storage) -> None:
    storage.insert_plan(make_plan("known"))
    with pytest.raises(UnknownPlan, match="nope"):
        storage.add_history([HistoryRow("known", AT, "x"), HistoryRow("nope", AT, "y")])
    with pytest.raises(UnknownPlan, match="nope"):
        storage.update_steps(
            [
                StepUpdate("known", 1, StepState.PENDING, StepState.RUNNING),
                StepUpdate("nope", 1, StepState.PENDING, StepState.RUNNING),
            ]
        )
    plan = storage.load_plan("known")
    assert [h.event for h in plan.history] == ["planned"]
    assert plan.step(1).state == StepState.PENDING


# -- transactions ------------------------------------------------------------------------------


class Boom(Exception):
    pass


def test_a_transaction_that_raises_leaves_nothing(storage: Storage) -> None:
    storage.insert_plan(make_plan("kept"))
    with pytest.raises(Boom), storage.transaction():
        storage.insert_plan(make_plan("gone", key="gone"))
        storage.update_plan("kept", {"state": PlanState.RUNNING})
        storage.update_steps([StepUpdate("kept", 1, StepState.PENDING, StepState.RUNNING)])
        storage.add_history([HistoryRow("kept", AT, "x")])
        assert storage.get_plan_record("gone").key == "gone"  # visible inside
        raise Boom

    with pytest.raises(UnknownPlan):
        storage.load_plan("gone")
    assert storage.find_plan_by_key("gone") is None
    kept = storage.load_plan("kept")
    assert kept.state == PlanState.PLANNED
    assert kept.step(1).state == StepState.PENDING
    assert len(kept.history) == 1
    assert storage.count_plans() == 1


def test_a_nested_transaction_joins_the_outer_one(storage: Storage) -> None:
    assert storage.current_connection() is None
    with pytest.raises(Boom), storage.transaction() as outer:
        assert storage.current_connection() is outer
        with storage.transaction() as inner:
            assert inner is outer
            storage.insert_plan(make_plan("inner"))
        assert storage.get_plan_record("inner").id == "inner"  # not committed on its own...
        raise Boom
    with pytest.raises(UnknownPlan):  # ...so the outer rollback takes it away
        storage.get_plan_record("inner")
    assert storage.current_connection() is None

    with storage.transaction(), storage.transaction():
        storage.insert_plan(make_plan("both"))
    assert storage.get_plan_record("both").id == "both"


def test_write_applies_a_batch(storage: Storage) -> None:
    new = make_plan(steps=3)
    storage.insert_plan(new)
    plan_id = new.plan.id
    expect = frozenset({StepState.PENDING})
    batch = Batch(
        plans=[
            PlanUpdate(plan_id, frozenset({PlanState.PLANNED}), {"state": PlanState.RUNNING}),
            PlanUpdate(plan_id, frozenset({PlanState.PAUSED}), {"state": PlanState.STOPPED}),
        ],
        steps=[
            StepUpdate(plan_id, 1, StepState.PENDING, StepState.SKIPPED),
            StepUpdate(plan_id, 2, StepState.RUNNING, StepState.SUCCESS),
        ],
        outputs=[(plan_id, 0, {"ok": True})],
        history=[HistoryRow(plan_id, AT, "batch")],
        claims=[Claim(plan_id, [1, 2, 3], expect, "w-1", AT)],
    )
    assert batch

    result = storage.write(batch)

    assert result.claimed == {(plan_id, 2), (plan_id, 3)}
    assert result.step_conflicts == [batch.steps[1]]
    assert result.plan_conflicts == [batch.plans[1]]
    plan = storage.load_plan(plan_id)
    assert plan.state == PlanState.RUNNING
    assert [s.state for s in plan.steps] == [
        StepState.SKIPPED,
        StepState.RUNNING,
        StepState.RUNNING,
    ]
    assert plan.actions[0].output == {"ok": True}
    assert [(h.event, h.step_id, h.world_id) for h in plan.history[1:]] == [
        ("batch", None, None),
        ("step running", 2, "w-1"),
        ("step running", 3, "w-1"),
    ]


def test_write_applies_everything_or_nothing(storage: Storage) -> None:
    new = make_plan(steps=2)
    storage.insert_plan(new)
    plan_id = new.plan.id
    batch = Batch(
        plans=[PlanUpdate(plan_id, None, {"state": PlanState.RUNNING})],
        steps=[StepUpdate(plan_id, 1, StepState.PENDING, StepState.RUNNING)],
        outputs=[(plan_id, 0, {"ok": True})],
        history=[HistoryRow(plan_id, AT, "batch"), HistoryRow("nope", AT, "lost")],
    )
    with pytest.raises(UnknownPlan):
        storage.write(batch)
    assert storage.load_plan(plan_id) == storage.load_plan(plan_id)
    plan = storage.load_plan(plan_id)
    assert plan.state == PlanState.PLANNED
    assert plan.step(1).state == StepState.PENDING
    assert plan.actions[0].output == {}
    assert [h.event for h in plan.history] == ["planned"]


# -- SQL only ----------------------------------------------------------------------------------


def test_datetimes_in_another_zone_are_stored_as_utc(sql_storage: SQLStorage) -> None:
    berlin = timezone(timedelta(hours=2))
    new = make_plan("p", created_at=datetime(2024, 5, 1, 14, 0, tzinfo=berlin))
    sql_storage.insert_plan(new)
    created = sql_storage.get_plan_record("p").created_at
    assert created == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert created is not None and created.tzinfo == UTC
    assert sql_storage.find_plans(order_by="created_at")[0].id == "p"


def test_a_plan_whose_rows_break_the_schema_is_a_storage_error(sql_storage: SQLStorage) -> None:
    new = make_plan("p", steps=2)
    new.steps[1] = replace(new.steps[1], id=1)  # two steps with id 1
    with pytest.raises(StorageError, match="plan p cannot be stored"):
        sql_storage.insert_plan(new)
    assert sql_storage.count_plans() == 0  # nothing half-written


def test_application_code_writes_through_the_ambient_connection(sql_storage: SQLStorage) -> None:
    sql_storage.insert_plan(make_plan("p"))
    with pytest.raises(Boom), sql_storage.transaction() as conn:
        conn.execute(text("UPDATE dynaflow_plans SET label = 'changed' WHERE id = 'p'"))
        assert sql_storage.get_plan_record("p").label == "changed"
        raise Boom
    assert sql_storage.get_plan_record("p").label == "demo"


def test_a_row_that_cannot_be_decoded_is_a_corrupt_record(sql_storage: SQLStorage) -> None:
    sql_storage.insert_plan(make_plan("p"))
    with sql_storage.transaction() as conn:
        conn.execute(text("UPDATE dynaflow_steps SET state = 'exploded' WHERE id = 2"))
    with pytest.raises(CorruptRecord, match="plan p step 2"):
        sql_storage.load_plan("p")

    with sql_storage.transaction() as conn:
        conn.execute(text("UPDATE dynaflow_plans SET result = 'meh' WHERE id = 'p'"))
    with pytest.raises(CorruptRecord, match="plan p"):
        sql_storage.get_plan_record("p")


def test_readers_do_not_wait_for_a_writer(sql_storage: SQLStorage) -> None:
    sql_storage.insert_plan(make_plan("p"))
    writing, release = threading.Event(), threading.Event()

    def writer() -> None:
        with sql_storage.transaction():
            sql_storage.update_plan("p", {"state": PlanState.RUNNING})
            writing.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert writing.wait(10)
        # the write lock is held: a reader still gets the committed state, at once
        assert sql_storage.load_plan("p").state == PlanState.PLANNED
        assert sql_storage.count_plans(PlanFilter(state=(PlanState.PLANNED,))) == 1
    finally:
        release.set()
        thread.join(10)
    assert sql_storage.get_plan_record("p").state == PlanState.RUNNING


def test_concurrent_writers_queue_instead_of_failing(sql_storage: SQLStorage) -> None:
    new = make_plan("p", steps=40)
    sql_storage.insert_plan(new)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            start.wait(10)
            for step_id in range(n + 1, 41, 4):
                with sql_storage.transaction():
                    sql_storage.load_plan("p")  # a read first: the lock is taken at BEGIN
                    sql_storage.update_steps(
                        [StepUpdate("p", step_id, StepState.PENDING, StepState.RUNNING)]
                    )
                    sql_storage.add_history([HistoryRow("p", AT, "ran", step_id=step_id)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    plan = sql_storage.load_plan("p")
    assert {s.state for s in plan.steps} == {StepState.RUNNING}
    assert len(plan.history) == 41
