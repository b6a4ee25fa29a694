"""The engine's shared state, one scheduler iteration, and the seams between its parts.

The engine is one class assembled from parts, each in its own module: scheduling and claims
(:mod:`.scheduling`), outcomes and conclusion (:mod:`.outcomes`), events, timers and timeouts
(:mod:`.timers`), stopping (:mod:`.stopping`) and recovery (:mod:`.recovery`). Each part is a
mixin over :class:`EngineBase`, which holds the state they share and declares the calls they
make on each other.
"""

from __future__ import annotations

import queue
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from typing import Any

from dynaflow.execution_plan import StepError
from dynaflow.executor.messages import Execute, Message
from dynaflow.executor.steps import StepOutcome
from dynaflow.persistence.base import Storage
from dynaflow.runtime import PlanRuntime, StepRuntime
from dynaflow.services import Services
from dynaflow.states import PlanState, StepState
from dynaflow.transitions import Changes

S = StepState
Task = Callable[[], Message]
#: step states a claim moves to running
CLAIMABLE = frozenset({S.PENDING, S.ERROR})
SUSPENDED = frozenset({S.SUSPENDED})
EXECUTABLE = frozenset({PlanState.PLANNED, PlanState.PAUSED})


class Iteration:
    """What one scheduler iteration collects before it commits."""

    __slots__ = (
        "batch",
        "changes",
        "claims",
        "ended",
        "offered",
        "touched",
        "undispatched",
        "wakes",
    )

    def __init__(self, changes: Changes) -> None:
        #: the state changes and other writes of the iteration, and what waits for the commit
        self.changes = changes
        #: its batch (written once, by the engine, at the end of the iteration)
        self.batch = changes.batch
        self.touched: dict[str, PlanRuntime] = {}
        #: (runtime, step ids) claimed from pending/error
        self.claims: list[tuple[PlanRuntime, list[int]]] = []
        #: (plan id, step id) -> (runtime, event payload, event id, cancel call)
        self.wakes: dict[tuple[str, int], tuple[PlanRuntime, Any, int | None, bool]] = {}
        #: tasks counted busy that are not handed to a worker yet (they wait for the commit)
        self.undispatched = 0
        #: plans whose execution here ended, with their futures (resolved after the commit)
        self.ended: list[tuple[str, list[Future[Any]]]] = []
        #: (plan id, step id) of the claimed steps offered to other worlds
        self.offered: set[tuple[str, int]] = set()

    def later(self, callback: Callable[[], None], plan_id: str | None = None) -> None:
        """Call ``callback`` after the commit (not if ``plan_id``'s writes were fenced out)."""
        self.changes.later(callback, plan_id)


class EngineBase:
    """State shared by the engine's parts. Only the thread running a scheduler iteration
    touches it, except :attr:`inbox` (any thread)."""

    def __init__(self, services: Services, dispatch: Callable[[Task], None]) -> None:
        self.services = services
        self.storage: Storage = services.storage
        self.dispatch = dispatch
        self.inbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self.plans: dict[str, PlanRuntime] = {}
        #: tasks handed to workers whose outcome is not back yet
        self.busy = 0
        #: shutting down: no new claims, plans are released
        self.stopping = False
        #: futures of ``World.event`` senders, by event id
        self.event_futures: dict[int, Future[Any]] = {}
        #: events handled (None) or rejected before their sender's future was registered
        self.early_verdicts: OrderedDict[int, BaseException | None] = OrderedDict()
        #: look for deliverable events in the next iteration
        self.check_events = False
        #: the earliest due time of a timer of a plan run here
        self.next_due: datetime | None = None
        #: ask the database for ``next_due`` at the next delivery: timers of the plans run here
        #: are queued by this world, whose batches move ``next_due`` as they commit them, so it
        #: is asked only when the known one has come due, on a tick, and at first
        self.refresh_due = True
        #: futures following plans run elsewhere, by plan id (see ``watching``)
        self.watched: dict[str, list[Future[Any]]] = {}
        #: look at the watched plans' rows in the next iteration
        self.check_watched = False
        #: plans whose steps another world changed (a claim did not hold): read them again
        self.stale: set[str] = set()
        #: plans dropped by a failed iteration, with their futures: taken up again from the
        #: database once no task is in flight and ``recover_at`` (monotonic) has passed
        self.recovering: dict[str, list[Future[Any]]] = {}
        self.recover_at = 0.0
        #: failed iterations in a row (the backoff before taking plans up again)
        self.failures = 0
        #: the queues with a cluster-wide limit (their claims count the room first)
        self.limited: frozenset[str] = frozenset()
        #: plans with ready steps a limited queue had no room for, by queue
        self.waiting_room: dict[str, set[str]] = {}
        #: look again at the plans waiting for room in the next iteration
        self.check_room = False
        # -- spreading steps over worlds (see :mod:`.spreading`) --
        #: worker threads per queue here
        self.pools: dict[str, int] = {}
        #: worker threads per queue in the other live worlds (empty: nothing is offered)
        self.elsewhere: dict[str, int] = {}
        #: steps started here, and offered steps not answered yet, per queue
        self.local_busy: dict[str, int] = {}
        self.remote_busy: dict[str, int] = {}
        #: offered steps running in other worlds: (plan id, step id) -> runtime
        self.remote: dict[tuple[str, int], PlanRuntime] = {}
        #: plans holding ready steps back until a thread frees up here or elsewhere
        self.held: set[str] = set()
        #: how long each action class's run steps take here (seconds, a moving average)
        self.run_time: dict[str, float] = {}
        #: called after a commit that stored requests a step left (the world's mailbox looks)
        self.requested: Callable[[], None] | None = None
        #: plans claimed together for the Execute messages of this iteration (by message id)
        self.claimed: dict[int, PlanRuntime | BaseException] = {}
        #: messages of the current iteration handled so far
        self.handled = 0
        self.current: Iteration | None = None

    @property
    def world_id(self) -> str:
        return self.services.id

    def iteration(self) -> Iteration:
        self.current = Iteration(Changes(self.services.world, self.services.id, fenced=True))
        return self.current

    def counted(self, it: Iteration, tasks: int) -> None:
        """``tasks`` more are busy: handed to workers once the iteration commits."""
        self.busy += tasks
        it.undispatched += tasks

    def uncounted(self, it: Iteration, tasks: int = 1) -> None:
        """``tasks`` counted busy are handed to workers, or will not be (a claim failed)."""
        it.undispatched -= tasks

    def end(self, runtime: PlanRuntime, it: Iteration, keep: bool = False) -> None:
        """The plan's execution here is over: resolve its futures after the commit (and after
        the signals of its last changes). ``keep``: a halted plan whose steps still run stays
        to record their outcomes."""
        if not keep:
            del self.plans[runtime.plan_id]
        it.ended.append((runtime.plan_id, list(runtime.futures)))
        runtime.futures.clear()

    def committed(self, it: Iteration, fenced: set[str]) -> None:
        """The iteration's batch committed: signal, and resolve the futures of the plans whose
        execution here ended (those of ``fenced`` plans follow them to their new world)."""
        for plan_id, futures in it.ended:
            for future in futures:
                if plan_id in fenced:  # its end did not land: it goes on in another world
                    self.follow(plan_id, future)
                else:
                    it.later(resolver(future, plan_id))
        it.ended.clear()
        it.changes.committed(fenced)

    # -- calls between the parts (each defined by one part) ------------------------------------

    def start(self, message: Execute, it: Iteration) -> None:
        raise NotImplementedError  # recovery

    def claim_together(self, messages: list[Message], it: Iteration) -> list[Message]:
        raise NotImplementedError  # recovery

    def advance(self, runtime: PlanRuntime, it: Iteration) -> None:
        raise NotImplementedError  # scheduling

    def wake(
        self,
        runtime: PlanRuntime,
        step: StepRuntime,
        payload: Any,
        event_id: int | None,
        cancel: bool,
        it: Iteration,
    ) -> None:
        raise NotImplementedError  # scheduling

    def conclude(self, runtime: PlanRuntime, it: Iteration) -> None:
        raise NotImplementedError  # outcomes

    def on_step_done(self, outcome: StepOutcome, origin: PlanRuntime, it: Iteration) -> None:
        raise NotImplementedError  # outcomes

    def room_freed(self, queue: str | None, it: Iteration) -> None:
        raise NotImplementedError  # scheduling

    def spread(
        self, runtime: PlanRuntime, steps: list[StepRuntime], it: Iteration
    ) -> list[StepRuntime]:
        raise NotImplementedError  # spreading

    def local_done(self, step: StepRuntime, outcome: StepOutcome) -> None:
        raise NotImplementedError  # spreading

    def release_held(self, it: Iteration) -> None:
        raise NotImplementedError  # spreading

    def fail_step(
        self, runtime: PlanRuntime, step: StepRuntime, error: StepError, it: Iteration
    ) -> None:
        raise NotImplementedError  # timers

    def reject_waiting(self, runtime: PlanRuntime, step: StepRuntime, it: Iteration) -> None:
        raise NotImplementedError  # timers

    def resolve_event(self, it: Iteration, event_id: int, error: BaseException | None) -> None:
        raise NotImplementedError  # timers

    def cancellable(self, step: StepRuntime) -> bool:
        raise NotImplementedError  # stopping

    def follow(self, plan_id: str, future: Future[Any]) -> None:
        raise NotImplementedError  # watching

    def lost(self, plan_id: str) -> None:
        raise NotImplementedError  # engine


def resolver(future: Future[Any], plan_id: str) -> Callable[[], None]:
    def resolve() -> None:
        if not future.done():
            future.set_result(plan_id)

    return resolve
