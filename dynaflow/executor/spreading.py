"""Spreading one plan's steps over several worlds.

The world that runs a plan (its owner) schedules every step, but a step need not run on the
owner's threads: when its queue's threads here are all busy and another live world serves the
queue, or when no thread here serves the queue at all, the step is *offered*. The offer is a
``"run"`` request stored with the step's claim, in the same transaction (only if the claim
holds), carrying everything the run needs: the action's class, its input with the references
resolved, its saved output. A world with a free thread for the queue takes it (``FOR UPDATE
SKIP LOCKED``), runs the step and answers with its outcome; the owner records the outcome as
if its own thread had run the step. The owner stays the only writer of the plan, so fencing
and the transition checks hold as for local steps.

Only fresh starts are offered: a suspended step woken by an event, a timer or its cancel()
runs on the owner's threads. If the world running an offered step dies, the owner is told
(``Interrupted``): an idempotent step is offered again, any other ends in "abnormal
termination". If the owner dies, the world that takes its plan over also takes its offers
(:meth:`Recovery._recover_interrupted`): one nobody took is dropped and its step starts again
(it never began), one another world took stays with that world, whose answer comes to the new
owner.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from dynaflow import registry
from dynaflow.clock import now
from dynaflow.execution_plan import StepError
from dynaflow.executor.base import EngineBase, Iteration
from dynaflow.executor.messages import RemoteDone
from dynaflow.executor.steps import StepOutcome
from dynaflow.persistence.base import EventRow, RequestRow
from dynaflow.runtime import PlanRuntime, StepRuntime
from dynaflow.states import StepState
from dynaflow.values import resolve

log = logging.getLogger("dynaflow.executor")

#: steps started (or offered) per thread: more than one keeps every thread busy between the
#: round trips that hand it the next step
SLACK = 2
#: seconds an action's steps must take here on average before they are offered elsewhere:
#: shorter ones finish sooner where they are than a round trip through the database allows
SPREAD_MIN = 0.05
S = StepState


class Spreading(EngineBase):
    def spread(
        self, runtime: PlanRuntime, steps: list[StepRuntime], it: Iteration
    ) -> list[StepRuntime]:
        """Of ``steps`` (ready to start): those to claim. Each runs here while this world has a
        free thread for its queue; the others are offered to worlds with free threads for
        theirs, or held back (ready, unclaimed) until a thread frees up here or there."""
        local_room = {q: SLACK * n - self.local_busy.get(q, 0) for q, n in self.pools.items()}
        remote_room = {q: SLACK * n - self.remote_busy.get(q, 0) for q, n in self.elsewhere.items()}
        claim: list[StepRuntime] = []
        held: list[int] = []
        for step in steps:
            queue = step.queue
            took = self.run_time.get(step.action_class)
            if queue in self.pools and took is not None and took < SPREAD_MIN:
                self.local_busy[queue] = self.local_busy.get(queue, 0) + 1
                claim.append(step)  # quick steps: here, as without other worlds
            elif local_room.get(queue, 0) > 0:
                local_room[queue] -= 1
                self.local_busy[queue] = self.local_busy.get(queue, 0) + 1
                claim.append(step)
            elif (
                queue not in self.pools or (took is not None and remote_room.get(queue, 0) > 0)
            ) and self._offer(runtime, step, it):
                remote_room[queue] = remote_room.get(queue, 0) - 1
                self.remote_busy[queue] = self.remote_busy.get(queue, 0) + 1
                claim.append(step)
            elif queue in self.pools and not self.elsewhere.get(queue):
                self.local_busy[queue] = self.local_busy.get(queue, 0) + 1
                claim.append(step)  # nowhere else to go: it waits for a thread here
            else:
                held.append(step.id)
        if held:
            runtime.ready.update(held)
            self.held.add(runtime.plan_id)
        return claim

    def _offer(self, runtime: PlanRuntime, step: StepRuntime, it: Iteration) -> bool:
        """Offer the step's run to other worlds; ``False`` if it must run here (its input
        cannot be resolved: the run reports that error like any other)."""
        action = runtime.actions[step.action_id]
        try:
            raw = resolve(action.input, runtime.output_of, f"input of {action.action_class}")
        except Exception:
            return False
        args = {
            "step_id": step.id,
            "action_id": step.action_id,
            "action_class": step.action_class,
            "input": raw,
            "output": action.output,
            "attempt": step.attempt,
        }
        at = now()
        it.batch.offers.append(
            RequestRow(runtime.plan_id, "run", args, at, None, self.world_id, queue=step.queue)
        )
        it.offered.add((runtime.plan_id, step.id))
        return True

    def local_done(self, step: StepRuntime, outcome: StepOutcome) -> None:
        """A step that ran on a thread here ended: a thread is free for another; its run time
        goes into the queue's average."""
        queue = step.queue
        busy = self.local_busy.get(queue, 0)
        if busy > 0:
            self.local_busy[queue] = busy - 1
        if outcome.started_at is not None:
            took = (outcome.ended_at - outcome.started_at).total_seconds()
            name = step.action_class
            average = self.run_time.get(name)
            self.run_time[name] = took if average is None else 0.8 * average + 0.2 * took

    def release_held(self, it: Iteration) -> None:
        """A thread freed up, here or elsewhere: look again at the plans holding steps back."""
        for plan_id in self.held:
            runtime = self.plans.get(plan_id)
            if runtime is not None:
                it.touched[plan_id] = runtime
        self.held.clear()

    def on_remote_done(self, message: RemoteDone, it: Iteration) -> None:
        """Another world answered an offered step: record its outcome as if it ran here."""
        row = message.row
        step_id = int(row.args["step_id"])
        key = (row.plan_id, step_id)
        runtime = self.remote.pop(key, None)
        queue = row.queue or ""
        if self.remote_busy.get(queue, 0) > 0:
            self.remote_busy[queue] -= 1
        self.release_held(it)
        if runtime is None or self.plans.get(row.plan_id) is not runtime:
            log.warning(
                "an answer for step %s of plan %s, no longer run here", step_id, row.plan_id
            )
            return
        outcome = _outcome(row, step_id, self.world_id)
        if outcome is None:  # the world running it died
            step = runtime.steps[step_id]
            again = registry.attribute(step.action_class, "idempotent", False, "not run again")
            if again:
                self.busy -= 1
                runtime.busy -= 1
                step.busy = False
                why = (row.error or {}).get("message")
                reason = f"interrupted: {why}; idempotent, so it runs again"
                it.changes.step(row.plan_id, step, S.PENDING, now(), None, {"reason": reason})
                runtime.ready.add(step_id)
                it.touched[row.plan_id] = runtime
                return
            outcome = _abnormal(row, step_id)
        self.on_step_done(outcome, runtime, it)


def _time(value: Any) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else now()


def _outcome(row: RequestRow, step_id: int, world_id: str) -> StepOutcome | None:
    """The outcome an answer carries (``None``: the world running it died)."""
    if row.error is not None and row.error.get("type") == "Interrupted":
        return None
    action_id = int(row.args["action_id"])
    data = row.outcome or {}
    if row.error is not None or not data:  # the other world failed to run it at all
        problem = row.error or {"type": "ExecutorError", "message": "no outcome came back"}
        failed = StepError(str(problem.get("type")), str(problem.get("message")))
        ended = now()
        return StepOutcome(row.plan_id, step_id, action_id, ended, ended, None, failed, remote=True)
    outcome = StepOutcome(
        row.plan_id,
        step_id,
        action_id,
        _time(data.get("started_at")),
        _time(data.get("ended_at")),
        data.get("output"),
        StepError.from_json(data.get("error")),
        suspended=bool(data.get("suspended")),
        remote=True,
    )
    outcome.retryable = data.get("retryable")
    for event in data.get("events") or []:
        due = event.get("due_at")
        outcome.events.append(
            (
                EventRow(
                    row.plan_id,
                    int(event["step_id"]),
                    str(event["kind"]),
                    event.get("payload"),
                    _time(event.get("created_at")),
                    datetime.fromisoformat(due) if due else None,
                ),
                None,
            )
        )
    return outcome


def _abnormal(row: RequestRow, step_id: int) -> StepOutcome:
    why = (row.error or {}).get("message", "the world running it stopped")
    error = StepError(
        "AbnormalTermination",
        f"abnormal termination: {why}; it is not marked idempotent, so it is not run again on "
        "its own",
    )
    ended = now()
    return StepOutcome(
        row.plan_id, step_id, int(row.args["action_id"]), None, ended, None, error, remote=True
    )
