"""An event row can be seen (and handled) by the scheduler before the message of the
``World.event`` call that queued it: the sender's future must still learn the verdict."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest

from dynaflow import Action, World
from dynaflow.clock import now
from dynaflow.persistence.base import EventRow


class Waits(Action):
    def run(self, event: Any = None) -> None:
        if event is None:
            self.suspend()
        self.output["got"] = event


@pytest.mark.executors("inline")
def test_a_future_registered_after_its_event_was_handled_resolves(world: World) -> None:
    triggered = world.trigger(Waits)
    step_id = next(s.id for s in world.get_plan(triggered.plan_id).steps if s.kind == "run")
    row = EventRow(triggered.plan_id, step_id, "event", "early", now())
    world.storage.add_events([row])  # queued, but the sender's message has not arrived yet
    assert world.executor is not None
    engine = world.executor.engine
    engine.check_events = True
    world.run_pending()  # the scheduler finds the row itself and the step handles it
    assert world.get_plan(triggered.plan_id).actions[0].output == {"got": "early"}

    late: Future[Any] = Future()
    assert row.id is not None
    engine.event_sent(triggered.plan_id, step_id, row.id, late)
    world.run_pending()
    assert late.result(timeout=0) is None
