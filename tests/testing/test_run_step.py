"""run_step calls one action's run as the executor does: input validated, references resolved
from stubbed outputs, middleware applied, output dumped; a suspension comes back with the
timers it planned, and send/fire make the next calls."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from dynaflow import Action, InvalidArgument, InvalidInput, Middleware, World
from dynaflow.polling import POLL
from dynaflow.testing import T0, frozen_clock, plan_only, run_step

from .actions import Approval, Job, Provision, Stack, Watch


def test_the_output_of_a_run() -> None:
    step = run_step(Provision, {"name": "db", "profile": "db"})

    assert step.done and not step.suspended
    assert step.output == {"uuid": "db-db"}
    assert step.input == {"name": "db", "profile": "db"}
    assert (step.timers, step.timeout, step.callback) == ((), None, None)


def test_the_input_model_is_validated() -> None:
    with pytest.raises(InvalidInput, match="name: Field required"):
        run_step(Provision, {"profile": "db"})


def test_an_exception_from_run_is_raised_with_its_traceback() -> None:
    class Fails(Action):
        def run(self) -> None:
            raise ConnectionError(f"cannot reach {self.input['host']}")

    with pytest.raises(ConnectionError, match="cannot reach db1") as raised:
        run_step(Fails, {"host": "db1"})
    assert raised.traceback[-1].name == "run"


def test_references_resolve_from_stubbed_outputs_by_class() -> None:
    planned = plan_only(Provision, "db", "db")
    watch = planned.one(Watch)

    step = run_step(Watch, watch.input, outputs_of={Provision: {"uuid": "db-1234"}})
    assert step.output == {"watching": "db=db-1234"}
    # the planned action itself carries class, id and input
    assert run_step(watch, outputs_of={"Provision": {"uuid": "u"}}).output == {"watching": "db=u"}


def test_references_resolve_by_action_when_a_class_produces_several() -> None:
    planned = plan_only(Stack)
    app = planned.one(Provision, name="app")
    db = planned.one(Provision, name="db")

    assert run_step(app, outputs_of={db: {"uuid": "db-9"}}).input["db"] == "db-9"
    assert run_step(app, outputs_of={db.id: {"uuid": "db-8"}}).input["db"] == "db-8"


def test_a_missing_stub_names_the_reference_and_the_fix() -> None:
    watch = plan_only(Provision, "db").one(Watch)
    with pytest.raises(InvalidArgument, match=r"Provision#1 output\['uuid'\].*outputs_of=\{Prov"):
        run_step(watch)
    with pytest.raises(InvalidArgument, match="outputs_of keys are action classes"):
        run_step(watch, outputs_of={3.5: {}})  # type: ignore[dict-item]


def test_a_stub_without_the_key_fails_as_the_executor_would() -> None:
    watch = plan_only(Provision, "db").one(Watch)
    with pytest.raises(Exception, match=r"never set"):
        run_step(watch, outputs_of={Provision: {}})


def test_not_an_action_or_no_run() -> None:
    class PlansOnly(Action):
        def plan(self) -> None:
            pass

    with pytest.raises(InvalidArgument, match="is not an Action class"):
        run_step(dict, {})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="PlansOnly defines no run"):
        run_step(PlansOnly)
    with pytest.raises(InvalidArgument, match="Stack defines no run"):
        run_step(plan_only(Stack).one(Stack))


def test_a_suspension_with_its_timers_and_timeout() -> None:
    with frozen_clock():
        step = run_step(Approval)

    assert step.suspended and not step.done
    assert [(t.event, t.delay, t.due) for t in step.timers] == [
        ("remind", 3600.0, T0 + timedelta(hours=1))
    ]
    assert step.timeout == 86400
    assert step.output == {}


def test_send_and_fire_make_the_next_calls() -> None:
    first = run_step(Approval)
    assert first.timers[0].delay == 3600  # exactly, on the real clock too
    reminded = first.fire()
    assert reminded.suspended and reminded.output == {"reminded": 1}
    assert reminded.fire().output == {"reminded": 2}

    done = reminded.send({"approved": True})
    assert done.done and done.output == {"reminded": 1, "approved": True}
    with pytest.raises(InvalidArgument, match="finished without suspending"):
        done.send("again")
    with pytest.raises(InvalidArgument, match="planned no timer"):
        run_step(Provision, {"name": "x"}).fire()


def test_the_output_of_earlier_calls_and_an_event_directly() -> None:
    step = run_step(Approval, output={"reminded": 5}, event="remind")
    assert step.output == {"reminded": 6}


def test_a_polling_action_step_by_step(dynaflow_probe) -> None:
    with frozen_clock():
        started = run_step(Job, {"polls": 3})
        assert started.output == {"task": {"polls": 0}, "poll_attempts": {"total": 0, "failed": 0}}
        assert [(t.event, t.delay) for t in started.timers] == [(POLL, 1.0)]
        assert started.timeout == 60

        second = started.fire().fire()
        assert second.output["poll_attempts"] == {"total": 2, "failed": 0}
        assert [t.delay for t in second.timers] == [5.0]  # the next interval after two polls
        third = second.fire()

    assert third.done
    assert third.output == {"task": {"polls": 3}, "poll_attempts": {"total": 3, "failed": 0}}
    assert len(dynaflow_probe.names("poll")) == 3


def test_the_worlds_middleware_wraps_the_call() -> None:
    seen: list[str] = []

    class Around(Middleware):
        def run(self, action: Action, call_next: Any, *args: Any) -> Any:
            seen.append(f"before {type(action).__name__}")
            try:
                return call_next(*args)
            finally:
                seen.append("after")

    with World("memory://", executor=None, middleware=[Around()]) as world:
        step = run_step(Provision, {"name": "m"}, world=world)

    assert seen == ["before Provision", "after"]
    assert step.output == {"uuid": "m-web"}


def test_self_world_is_the_given_world(dynaflow_world: World) -> None:
    class Spawns(Action):
        def run(self) -> None:
            child = self.world.trigger(Provision, "child")
            self.output["child_plan"] = child.plan_id

    step = run_step(Spawns, world=dynaflow_world)
    child = dynaflow_world.get_plan(step.output["child_plan"])
    assert (child.state, child.result) == ("stopped", "success")
