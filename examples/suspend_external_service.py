"""Suspending an action until an external service calls back, from the Dynflow guide.

``AnAction`` starts a synchronization in ``AnExternalService`` and suspends: its ``run`` call
ends, the worker thread is free, and the step waits, ``suspended`` in the database, for events.
The service works in a thread of its own. It reports progress with ``world.event(...)`` and
completion through the handle the suspend callback gave it (``handle.send`` is the same call).
Each event wakes the step: ``run(event)`` is called once per event, in the order they came.

Run it: ``python examples/suspend_external_service.py``
"""

from __future__ import annotations

import threading
from typing import Any

from dynaflow import Action, SuspendedHandle, World


class AnExternalService:
    """Synchronizes in a thread of its own and reports back to the action that asked."""

    def __init__(self) -> None:
        #: set once the service has reported half-way and the step is waiting again
        self.halfway = threading.Event()
        #: the work is "done" when main() says so (a real service would just take its time)
        self.may_finish = threading.Event()

    def start_synchronization(self, report_to: SuspendedHandle) -> None:
        def work() -> None:
            print("AnExternalService: synchronizing")
            world = report_to.world
            # any code holding the world can send an event to the step...
            world.event(report_to.plan_id, report_to.step_id, {"progress": 50}).result(10)
            self.halfway.set()
            self.may_finish.wait(10)
            # ...and the suspend handle is a shortcut for exactly that call
            report_to.send("done")

        threading.Thread(target=work, name="external-service", daemon=True).start()


class AnAction(Action):
    EXTERNAL_SERVICE = AnExternalService()

    def run(self, event: Any = None) -> None:
        if event is None:  # the first run
            print("AnAction: starting the synchronization, then suspending")
            # the callback is called once the suspended state is saved
            self.suspend(self.EXTERNAL_SERVICE.start_synchronization)
        elif event == "done":  # the external task is done: let the run phase finish
            print("AnAction: woken by 'done'")
            self.output.update(success=True, progress=100)
        elif isinstance(event, dict) and "progress" in event:
            print(f"AnAction: woken by {event}")
            self.output["progress"] = event["progress"]
            self.suspend()  # wait for the next event
        else:
            raise ValueError(f"unknown event {event!r}")


def main() -> None:
    service = AnAction.EXTERNAL_SERVICE
    with World("memory://", workers=2) as world:  # the threaded executor
        triggered = world.trigger(AnAction)
        service.halfway.wait(10)

        waiting = world.get_plan(triggered.plan_id)
        (step,) = waiting.run_steps()
        output = waiting.action(step.action_id).output
        print(f"while the service works: plan {waiting.state}, step {step.state}, {output}")

        service.may_finish.set()
        plan = triggered.wait(timeout=10)

    print(f"plan: {plan.state} / {plan.result}")
    (step,) = plan.run_steps()
    print(f"output: {plan.action(step.action_id).output}")


if __name__ == "__main__":
    main()
