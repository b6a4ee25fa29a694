"""The scheduler core shared by the threaded and the inline executor.

One scheduler iteration at a time owns the runtimes of executing plans. Workers run user code
and report outcomes to the inbox; each iteration turns every message it has into one
:class:`~dynaflow.persistence.Batch` — step states, outputs, history, queued events and the
claims of the steps that became ready or were woken — and commits it in one transaction (group
commit). Claimed steps are dispatched only after that commit, and entering ``running`` is a
compare-and-set, so a step never runs twice at once.

The parts of the engine live in their own modules (see :mod:`dynaflow.executor.base`); this one
holds the entry points other threads call and the iteration itself.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from dynaflow.clock import now
from dynaflow.executor.base import Iteration
from dynaflow.executor.faults import Faults
from dynaflow.executor.messages import (
    Call,
    Cancel,
    EventSent,
    Execute,
    FailSuspended,
    Finalized,
    Follow,
    Halt,
    Message,
    RemoteDone,
    RetryStep,
    StepDone,
    Takeover,
)
from dynaflow.executor.outcomes import Outcomes
from dynaflow.executor.recovery import Recovery
from dynaflow.executor.scheduling import Scheduling
from dynaflow.executor.spreading import Spreading
from dynaflow.executor.stopping import Stopping
from dynaflow.executor.timers import Timers
from dynaflow.executor.watching import ENDED, Watching
from dynaflow.states import StepState

log = logging.getLogger("dynaflow.executor")


class Engine(Faults, Watching, Recovery, Stopping, Timers, Spreading, Outcomes, Scheduling):
    # -- called from any thread: each queues a message for the next iteration -----------------

    def execute(
        self,
        plan_id: str,
        future: Future[Any],
        only: int | None = None,
        *,
        follow_if_taken: bool = False,
    ) -> None:
        """Run a planned or paused plan (``only``: of its failed steps, re-run just this
        one); ``future`` resolves when its execution ends. If another world starts it first,
        ``future`` fails with ``ConcurrentModification`` — or, with ``follow_if_taken``,
        follows that execution."""
        self.inbox.put(Execute(plan_id, future, only=only, follow_if_taken=follow_if_taken))

    def take_over(self, plan_id: str, from_world: str | None) -> None:
        """Take over a running plan: released by a world that shut down (``None``), or owned
        by ``from_world`` whose lease expired."""
        self.inbox.put(Execute(plan_id, Future(), takeover=Takeover(from_world)))

    def retry(self, plan_id: str, step_id: int, future: Future[Any]) -> None:
        """Run a failed step of a plan executing here again now."""
        self.inbox.put(RetryStep(plan_id, step_id, future))

    def event_sent(self, plan_id: str, step_id: int, event_id: int, future: Future[Any]) -> None:
        self.inbox.put(EventSent(plan_id, step_id, event_id, future))

    def cancel(self, plan_id: str, future: Future[Any], abort: bool = False) -> None:
        self.inbox.put(Cancel(plan_id, future, abort))

    def halt(self, plan_id: str, future: Future[Any]) -> None:
        self.inbox.put(Halt(plan_id, future))

    def follow_plan(self, plan_id: str, future: Future[Any]) -> None:
        """Resolve ``future`` when the plan's execution ends, here or wherever it runs."""
        self.inbox.put(Follow(plan_id, future))

    def tick(self) -> None:
        """Time passed: look for events other processes queued for plans run here, and at
        the plans followed elsewhere."""
        if self.plans:
            self.check_events = True
        self.refresh_due = True
        if self.watched:
            self.check_watched = True
        if self.waiting_room:
            self.check_room = True

    def has_work(self) -> bool:
        """Whether an iteration has anything to do now."""
        return (
            not self.inbox.empty()
            or bool(self.stale)
            or self.recovery_due()
            or self.check_events
            or self.check_watched
            or self.check_room
            or self.timers_due()
        )

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` inside the next scheduler iteration."""
        self.inbox.put(Call(fn))

    def report(self, message: Message) -> None:
        """A worker's report (what a task returned)."""
        self.inbox.put(message)

    def timers_due(self) -> bool:
        return self.next_due is not None and self.next_due <= now()

    # -- scheduler iterations --------------------------------------------------------------

    def drain(self) -> list[Message]:
        messages = []
        while True:
            try:
                messages.append(self.inbox.get_nowait())
            except queue.Empty:
                return messages

    def iterate(self, messages: list[Message]) -> None:
        """One iteration; if it fails, nothing of it was committed: drop what it held and take
        the plans up again from the database (see :mod:`.faults`)."""
        try:
            self.process(messages)
        except BaseException as exc:  # a failed iteration must never strand plans
            self.iteration_failed(exc, messages)

    def process(self, messages: list[Message]) -> None:
        """One iteration: apply ``messages``, deliver due events, commit one batch, dispatch."""
        it = self.iteration()
        self.handled = -1
        if self.recovery_due():
            self.take_up_again(it)
        messages[:] = self.claim_together(messages, it)  # (in place: a failure requeues by index)
        for index, message in enumerate(messages):
            self.handled = index
            match message:
                case StepDone(outcome, origin):
                    self.on_step_done(outcome, origin, it)
                case Execute():
                    self.start(message, it)
                case RetryStep():
                    self.on_retry_step(message, it)
                case EventSent():
                    self.on_event_sent(message, it)
                case Finalized():
                    self.on_finalized(message, it)
                case Cancel():
                    self.on_cancel(message, it)
                case Halt():
                    self.on_halt(message, it)
                case FailSuspended():
                    self.on_fail_suspended(message, it)
                case Follow(plan_id, future):
                    self.follow(plan_id, future)
                case RemoteDone():
                    self.on_remote_done(message, it)
                case Call(fn):
                    fn()
        self.handled = len(messages)
        if self.stale:
            self.resync(it)
        if self.check_events or self.timers_due():
            self.deliver_events(it)
        if self.check_watched:
            self.poll_watched()
        if self.check_room:
            self.check_room = False
            self.room_freed(None, it)
        for runtime in list(it.touched.values()):
            if self.plans.get(runtime.plan_id) is runtime:
                self.advance(runtime, it)
        fenced: set[str] = set()
        if it.batch:
            result = self.storage.write(it.batch)
            fenced = result.fenced
            for plan_id in sorted(fenced):
                self.lost(plan_id)
            if log.isEnabledFor(logging.INFO):
                self._log_outcomes(it, fenced)
            for conflict in result.step_conflicts:
                log.warning("lost a step update (another world changed it first): %s", conflict)
            self.dispatch_claimed(it, result.claimed, result.deferred)
            for row in it.batch.events:
                owner = self.plans.get(row.plan_id)
                if row.due_at is not None and owner is not None and row.id is not None:
                    step = owner.steps.get(row.step_id)
                    if step is not None:
                        step.timers.add(row.id)
                if row.due_at is None:
                    self.check_events = True  # queued with an outcome: deliver next iteration
                elif self.next_due is None or row.due_at < self.next_due:
                    self.next_due = row.due_at
        self.failures = 0
        self.committed(it, fenced)

    def _log_outcomes(self, it: Iteration, fenced: set[str]) -> None:
        """The lifecycle at INFO: failed steps, and plans whose execution here ended."""
        for update in it.batch.steps:
            error = update.fields.get("error")
            if error is not None and update.plan_id not in fenced:  # error, or retried later
                log.info(
                    "step %s of plan %s failed%s: %s",
                    update.step_id,
                    update.plan_id,
                    " (retried later)" if update.state == StepState.SUSPENDED else "",
                    error.get("message", "") if isinstance(error, dict) else error,
                )
        for plan in it.batch.plans:
            state = plan.fields.get("state")
            if state in ENDED and plan.plan_id not in fenced:
                log.info(
                    "plan %s %s (%s) in world %s",
                    plan.plan_id,
                    state,
                    plan.fields.get("result", "?"),
                    self.world_id,
                )

    def lost(self, plan_id: str) -> None:
        """Fencing kept this world's writes to the plan out: another world took it over. Stop
        running it here; its futures follow it there."""
        log.warning(
            "plan %s was taken over by another world: world %s stops running it (its last "
            "writes to it did not land)",
            plan_id,
            self.world_id,
        )
        runtime = self.plans.pop(plan_id, None)
        if runtime is not None:
            for future in runtime.futures:
                self.follow(plan_id, future)
