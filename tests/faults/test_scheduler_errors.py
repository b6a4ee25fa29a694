"""A scheduler iteration that raises (issue 12, item 5, and the general fix it asks for).

``Retry`` refuses delays no clock can reach (tests/integration/test_hostile_values.py), but a
subclass may compute its own: one whose ``delay()`` returns 1e12 seconds (31,700 years) makes
the retry's due time overflow inside the scheduler iteration that handles the failure. That is
user code failing where no step is running it; the iteration must not take other plans with it.

In-process (the engine's behaviour, no process boundary involved), threaded executor, every
storage. Run it with ``python -m pytest tests/faults/test_scheduler_errors.py -rA``.
"""

from __future__ import annotations

import threading

import pytest

from dynaflow import Action, DynaflowError, PlanFuture, PlanState, Retry, StepState, World

pytestmark = pytest.mark.slow

WAIT = 10.0
GATE = threading.Event()
ARRIVED = threading.Event()


class Forever(Retry):
    """A retry policy whose delay is beyond any clock (1e12 seconds)."""

    def delay(self, attempt: int) -> float:
        return 1e12


class FailsWithAnUnreachableRetry(Action):
    retry = Forever(attempts=3)

    def run(self) -> None:
        raise ConnectionError("flaky")


class Gated(Action):
    """Runs until the test opens the gate."""

    def run(self) -> None:
        ARRIVED.set()
        GATE.wait(WAIT)
        self.output["done"] = True


@pytest.mark.executors("threads")
def test_a_failing_scheduler_iteration_strands_no_plan(world: World) -> None:
    """Plan B has a step running (gated); plan A's only step fails, and its retry policy asks
    for a delay of 1e12 s. Demanded: plan A does not stay ``running``: it ends ``paused`` or
    ``stopped`` with the error recorded on its step, and its future resolves (with the plan,
    or a dynaflow error); plan B, unrelated, runs on and ends ``stopped``/``success``.

    Run: ``python -m pytest tests/faults -rA -k failing_scheduler_iteration``"""
    GATE.clear()
    ARRIVED.clear()
    problems = []
    try:
        b = world.trigger(Gated)
        assert ARRIVED.wait(WAIT), "plan B's step did not start"
        a = world.trigger(FailsWithAnUnreachableRetry)
        problems.append(outcome("plan A's future", a.future))
        GATE.set()
        problems.append(outcome("plan B's future", b.future))
    finally:
        GATE.set()
    plan_a, plan_b = world.get_plan(a.plan_id), world.get_plan(b.plan_id)
    if (plan_b.state, plan_b.result) != ("stopped", "success"):
        problems.append(f"unrelated plan B is {plan_b.state}/{plan_b.result}")
    [step] = [s for s in plan_a.steps if s.kind == "run"]
    if plan_a.state not in (PlanState.PAUSED, PlanState.STOPPED):
        problems.append(f"plan A is {plan_a.state} with its step {step.state}")
    elif step.state != StepState.ERROR or step.error is None:
        problems.append(f"plan A's step is {step.state} (error {step.error})")
    problems = [p for p in problems if p]
    assert not problems, "; ".join(problems)


def outcome(what: str, future: PlanFuture) -> str | None:
    """What is wrong with how ``future`` resolved, if anything."""
    try:
        future.result(WAIT)
    except DynaflowError:
        return None  # a library error is acceptable; what the plan looks like is checked
    except TimeoutError:
        return f"{what} did not resolve in {WAIT}s"
    except Exception as exc:
        return f"{what} raised {type(exc).__module__}.{type(exc).__qualname__}: {exc}"
    return None
