"""The World: configuration, persistence, executor and middleware in one object."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import timedelta
from typing import Any

from dynaflow import registry, signals
from dynaflow.action import Action
from dynaflow.clock import now
from dynaflow.events import EVENT, current_context
from dynaflow.exceptions import (
    ConcurrentModification,
    ConfigurationError,
    EventRejected,
    InvalidState,
    PlanningFailed,
    StorageError,
    UnknownPlan,
    UnknownStep,
    WorldClosed,
)
from dynaflow.execution_plan import ExecutionPlan, PlanRecord
from dynaflow.executor import InlineExecutor, PlanFuture, ThreadedExecutor
from dynaflow.executor.steps import call_finalize, call_run
from dynaflow.middleware import stack as middleware_stack
from dynaflow.middleware.stack import MiddlewareSpec, MiddlewareStack, compose
from dynaflow.middleware.transaction import TransactionMiddleware
from dynaflow.operators import check_stoppable, skip_offline, stop_offline
from dynaflow.persistence import Storage, open_storage
from dynaflow.persistence.base import EventRow, PlanFilter, WorldRow
from dynaflow.phases import PhaseContext
from dynaflow.planner import Planner, plan_core
from dynaflow.states import FINISHED_STEP_STATES, PlanResult, PlanState, StepKind, StepState
from dynaflow.values import to_json

log = logging.getLogger("dynaflow.world")

_CORES: dict[str, Callable[..., Any]] = {
    "plan": plan_core,
    "run": call_run,
    "finalize": call_finalize,
}


class Triggered:
    """What ``World.trigger`` returns: the plan id and a future for the end of its execution."""

    def __init__(self, plan_id: str, future: PlanFuture) -> None:
        self.plan_id = plan_id
        self.future = future

    def wait(self, timeout: float | None = None) -> ExecutionPlan:
        """The plan once its execution ends (stopped, or paused awaiting an operator); raises
        ``TimeoutError`` if that takes longer than ``timeout`` seconds."""
        return self.future.result(timeout)

    def __repr__(self) -> str:
        return f"<Triggered plan {self.plan_id}>"


class World:
    """Opens persistence and starts an executor; a context manager; thread-safe.

    ``executor``: ``"threads"`` (a scheduler thread and ``workers`` worker threads),
    ``"inline"`` (everything in the calling thread: deterministic tests) or ``None`` (a client
    that only plans).
    """

    def __init__(
        self,
        url: str = "sqlite:///dynaflow.db",
        *,
        workers: int = 4,
        executor: str | None = "threads",
        middleware: Sequence[MiddlewareSpec] = (),
        auto_rescue: bool = True,
        migrate: bool | None = None,
        shutdown_timeout: float = 30.0,
        world_id: str | None = None,
        lease: float = 30.0,
    ) -> None:
        if not isinstance(url, str) or not url:
            raise ConfigurationError(f"World(url=...) needs a database URL string, got {url!r}")
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ConfigurationError(f"World(workers=...) must be an int >= 1, got {workers!r}")
        if executor not in ("threads", "inline", None):
            raise ConfigurationError(
                f"World(executor=...) must be 'threads', 'inline' or None, got {executor!r}"
            )
        if isinstance(lease, bool) or not isinstance(lease, int | float) or lease <= 0:
            raise ConfigurationError(f"World(lease=...) must be seconds > 0, got {lease!r}")
        self.id = world_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        #: seconds without a heartbeat after which a world counts as dead and its plans are
        #: taken over; heartbeats go every lease / 3
        self.lease = float(lease)
        self._next_maintenance = 0.0
        self._incarnation = 0
        self.auto_rescue = auto_rescue
        self.shutdown_timeout = shutdown_timeout
        self.middleware = MiddlewareStack([TransactionMiddleware(), *middleware])
        self._chains: dict[tuple[Any, str], tuple[int, Callable[..., Any]]] = {}
        self._closed = False
        self._close_lock = threading.Lock()
        registry.load_entry_points()
        self.storage: Storage = open_storage(url, migrate=migrate)
        self.executor: InlineExecutor | ThreadedExecutor | None = None
        if executor is not None:
            started = now()
            self.storage.register_world(
                WorldRow(self.id, started, started, socket.gethostname(), os.getpid(), executor)
            )
        if executor == "threads":
            self.executor = ThreadedExecutor(self, workers)
        elif executor == "inline":
            self.executor = InlineExecutor(self)
        if self.executor is not None:
            self._adopt_released_plans()
            self.maintain(force=True)

    # -- middleware chains -------------------------------------------------------------------

    def chain(self, cls: type[Action], hook: str) -> Callable[..., Any]:
        """The ``hook`` chain for ``cls``: world middleware outermost, then the class's, around
        the phase's core. Built once per class and rebuilt only if a stack changes."""
        key = (cls, hook)
        cached = self._chains.get(key)
        if cached is not None and cached[0] == middleware_stack.version:
            return cached[1]
        chain = compose([*self.middleware.entries(), *cls.middleware.entries()], hook, _CORES[hook])
        self._chains[key] = (middleware_stack.version, chain)
        return chain

    def phase_chain(self, hook: str, core: Callable[..., Any]) -> Callable[..., Any]:
        """The ``plan_phase`` / ``finalize_phase`` chain of world middleware around ``core``."""
        return compose(self.middleware.entries(), hook, core)

    # -- planning and execution --------------------------------------------------------------

    def plan(
        self, action_class: type[Action], *args: Any, key: str | None = None, **kwargs: Any
    ) -> ExecutionPlan:
        """Plan only. Returns the plan ``planned`` — or ``stopped``/``error`` with the planning
        error recorded, if planning raised."""
        plan_id, _ = self._plan(action_class, args, kwargs, key)
        return self.get_plan(plan_id)

    def _plan(
        self,
        action_class: type[Action],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        key: str | None,
    ) -> tuple[str, BaseException | None]:
        self._check_open()
        if not (isinstance(action_class, type) and issubclass(action_class, Action)):
            raise ConfigurationError(
                f"{action_class!r} is not an Action class; pass a subclass of dynaflow.Action"
            )
        if key is not None:
            existing = self.storage.find_plan_by_key(key)
            if existing is not None:
                return existing.id, None
        plan_id = str(uuid.uuid4())
        planner = Planner(self, plan_id, key)
        context = PhaseContext(self, plan_id, "plan")
        planned = False

        def core(context: PhaseContext) -> None:
            nonlocal planned
            planner.plan_action(action_class, args, kwargs, parent=None)
            if planner.failure is not None:  # a parent caught a child's error: still a failure
                raise planner.failure
            new = planner.finish()
            planned = True
            self.storage.insert_plan(new)

        try:
            self.phase_chain("plan_phase", core)(context)
        except Exception as exc:
            if isinstance(exc, ConcurrentModification) and key is not None:
                existing = self.storage.find_plan_by_key(key)
                if existing is not None:  # another caller planned the same key first
                    return existing.id, None
            if planned or isinstance(exc, StorageError):
                raise  # planning succeeded; storing it failed: not a planning failure
            self.storage.insert_plan(planner.finish(failure=exc))
            self._signal_plan(plan_id, PlanState.STOPPED, PlanResult.ERROR)
            return plan_id, exc
        self._signal_plan(plan_id, PlanState.PLANNED, PlanResult.PENDING)
        return plan_id, None

    def execute(self, plan_id: str) -> PlanFuture:
        """Run a planned or paused plan. The future resolves when its execution ends."""
        self._check_open()
        executor = self._require_executor()
        future = PlanFuture(self, plan_id)
        executor.engine.execute(plan_id, future)
        executor.run_pending()
        return future

    def trigger(
        self, action_class: type[Action], *args: Any, key: str | None = None, **kwargs: Any
    ) -> Triggered:
        """Plan and execute. A planning failure raises :class:`PlanningFailed`. With ``key``, an
        existing plan with that key is returned instead of planning a second one."""
        executor = self._require_executor()
        plan_id, failure = self._plan(action_class, args, kwargs, key)
        if failure is not None:
            raise PlanningFailed(plan_id, failure) from failure
        future = PlanFuture(self, plan_id)
        record = self.storage.get_plan_record(plan_id)
        if record.state == PlanState.PLANNED:
            executor.engine.execute(plan_id, future)
            executor.run_pending()
        elif record.state == PlanState.STOPPED:
            future.set_result(plan_id)
        else:  # an existing keyed plan still executing here: follow it
            executor.call(lambda: _follow(executor.engine, plan_id, future))
            executor.run_pending()
        return Triggered(plan_id, future)

    # -- events and operators ------------------------------------------------------------------

    def event(self, plan_id: str, step_id: int, event: Any, optional: bool = False) -> Future[Any]:
        """Deliver ``event`` (a JSON value) to a suspended run step: it is persisted now and
        handed to ``run(event)`` in arrival order; an event for a running step waits until it
        suspends. The future resolves when the event is handled — or fails with
        :class:`EventRejected` if the step finishes first. An event for an unknown or finished
        step raises :class:`EventRejected` (with ``optional=True`` it is dropped quietly).

        Called from inside a running step, the event is saved with that step's outcome and
        delivered only after it. With no executor in this world (or the plan run by another
        world), the future resolves once the event is queued.
        """
        self._check_open()
        payload = to_json(event, f"event for step {step_id} of plan {plan_id}")
        future: Future[Any] = Future()
        try:
            step = self.storage.get_step(plan_id, step_id)
            if step.kind != StepKind.RUN:
                raise EventRejected(
                    f"step {step_id} of plan {plan_id} is a {step.kind} step; only run steps "
                    "take events"
                )
            if step.state in FINISHED_STEP_STATES:
                raise EventRejected(
                    f"step {step_id} of plan {plan_id} is {step.state}; it takes no more events"
                )
        except (UnknownPlan, UnknownStep, EventRejected) as exc:
            if optional:
                log.debug("optional event for plan %s step %s dropped: %s", plan_id, step_id, exc)
                future.set_result(None)
                return future
            if isinstance(exc, EventRejected):
                raise
            raise EventRejected(str(exc)) from exc
        row = EventRow(plan_id, step_id, EVENT, payload, now())
        context = current_context()
        if context is not None:  # inside a running step: saved with its outcome
            context.events.append((row, future))
            return future
        self.storage.add_events([row])
        assert row.id is not None
        if self.executor is None:
            future.set_result(None)
            return future
        self.executor.engine.event_sent(plan_id, step_id, row.id, future)
        self.executor.run_pending()
        return future

    def cancel(self, plan_id: str, *, abort: bool = False) -> PlanFuture:
        """Cancel a plan: steps not yet started become ``cancelled``; ``Cancellable`` steps that
        run or wait get ``cancel()`` (``abort()`` with ``abort=True``); other running steps
        finish. The plan stops with result ``cancelled``; finalize does not run. The future
        resolves when it has stopped. Cancelling a stopped plan raises :class:`InvalidState`."""
        return self._operate(plan_id, "cancel", abort)

    def halt(self, plan_id: str) -> PlanFuture:
        """Stop a plan at once: no new step starts, its queued events and timers are dropped,
        unfinished steps become ``cancelled`` and the plan is ``stopped``; code already running
        finishes and its result is recorded."""
        return self._operate(plan_id, "halt", False)

    def _operate(self, plan_id: str, operation: str, abort: bool) -> PlanFuture:
        self._check_open()
        if not isinstance(plan_id, str):
            raise UnknownPlan(plan_id)
        check_stoppable(self, plan_id, operation)
        future = PlanFuture(self, plan_id)
        if self.executor is None:
            stop_offline(self, plan_id, operation)
            future.set_result(plan_id)
            return future
        record = self.storage.get_plan_record(plan_id)
        engine = self.executor.engine
        if record.state == PlanState.RUNNING and record.world_id is None:
            engine.execute(plan_id, Future(), adopt_from=None)  # take it over, then stop it
        if operation == "cancel":
            engine.inbox.put(("cancel", plan_id, future, abort))
        else:
            engine.inbox.put(("halt", plan_id, future))
        self.executor.run_pending()
        return future

    def _adopt_released_plans(self) -> None:
        """Take over the plans a world released when it shut down (running, no owner)."""
        assert self.executor is not None
        running = PlanFilter(state=(PlanState.RUNNING,))
        for record in self.storage.find_plans(running, order_by="created_at"):
            if record.world_id is None:
                self.executor.engine.execute(record.id, Future(), adopt_from=None)
        self.executor.run_pending()

    def maintain(self, force: bool = False) -> None:
        """Heartbeat, and take over the plans of worlds whose lease expired. Executors call it
        on their tick (every lease / 3)."""
        if self.executor is None or self._closed:
            return
        clock = time.monotonic()
        if not force and clock < self._next_maintenance:
            return
        self._next_maintenance = clock + self.lease / 3
        at = now()
        storage, engine = self.storage, self.executor.engine
        if not storage.heartbeat(self.id, at):
            # declared dead: another world takes (or took) over the plans owned under the old
            # id. Drop them here and carry on under a new id, so that whatever a failed
            # takeover left behind is still seen as orphaned (never owned by a live world)
            old = self.id
            self._incarnation += 1
            self.id = f"{old.split('~')[0]}~{self._incarnation}"
            log.error(
                "world %s missed its lease and was declared dead; it stops running its plans "
                "(other worlds take them over) and goes on as %s",
                old,
                self.id,
            )
            self.executor.call(
                lambda: engine.fail_all(
                    ConcurrentModification(f"world {old} lost its plans to another world")
                )
            )
            storage.register_world(WorldRow(self.id, at, at, socket.gethostname(), os.getpid()))
        cutoff = at - timedelta(seconds=self.lease)
        taken = False
        for plan_id, owner in storage.orphaned_plans(cutoff):
            if owner != self.id:
                log.warning("taking over plan %s from world %s (lease expired)", plan_id, owner)
                engine.execute(plan_id, Future(), adopt_from=owner)
                taken = True
        for world in storage.worlds():
            if world.id != self.id and world.heartbeat_at < cutoff:
                storage.unregister_world(world.id)
        if taken:
            self.executor.run_pending()

    # -- operators: resume, skip, retry ---------------------------------------------------------

    def resume(self, plan_id: str) -> PlanFuture:
        """Run a paused plan again: failed steps run again, finished ones are left, and the
        finalize phase runs again in full (finalizers must be idempotent). The future resolves
        when its execution ends. Raises :class:`InvalidState` unless the plan is paused."""
        record = self._paused(plan_id, "resumed")
        return self.execute(record.id)

    def skip(self, plan_id: str, step_id: int, *, resume: bool = False) -> PlanFuture:
        """Skip a failed step of a paused plan: it, every step consuming its output (directly
        or not) and its finalize step become ``skipped``, in one transaction; the action's
        ``on_skip()`` runs first and may refuse by raising. Steps merely ordered after it run
        once the plan is resumed (``resume=True`` does so at once). The result becomes
        ``warning``."""
        self._check_open()
        self._paused(plan_id, "changed by skip")
        skip_offline(self, plan_id, step_id)
        if resume:
            return self.execute(plan_id)
        future = PlanFuture(self, plan_id)
        future.set_result(plan_id)
        return future

    def retry(self, plan_id: str, step_id: int) -> PlanFuture:
        """Run one failed step again now, without resuming the other failed ones; when it
        succeeds, the steps after it go on. The future resolves when the execution ends."""
        executor = self._require_executor()
        record = self.storage.get_plan_record(plan_id)
        step = self.storage.get_step(plan_id, step_id)
        if step.state != StepState.ERROR:
            raise InvalidState(
                f"step {step_id} of plan {plan_id} is {step.state}; only a failed step can be "
                "retried"
            )
        future = PlanFuture(self, plan_id)
        if record.state == PlanState.PAUSED:
            executor.engine.execute(plan_id, future, only=step_id)
        elif record.state == PlanState.RUNNING:
            executor.engine.inbox.put(("retry", plan_id, step_id, future))
        else:
            raise InvalidState(f"plan {plan_id} is {record.state}; it cannot be retried")
        executor.run_pending()
        return future

    def _paused(self, plan_id: str, what: str) -> PlanRecord:
        self._check_open()
        if not isinstance(plan_id, str):
            raise UnknownPlan(plan_id)
        record = self.storage.get_plan_record(plan_id)
        if record.state != PlanState.PAUSED:
            raise InvalidState(
                f"plan {plan_id} is {record.state}; only a paused plan can be {what}"
                + (" (it is still executing; wait for it)" if record.state == "running" else "")
            )
        return record

    def follow(self, plan_id: str) -> PlanFuture:
        """A future for the end of the plan's current execution: it resolves when the plan
        stops or pauses here, or at once if no executor of this world is running it."""
        self._check_open()
        self.storage.get_plan_record(plan_id)  # UnknownPlan
        future = PlanFuture(self, plan_id)
        executor = self.executor
        if executor is None:
            future.set_result(plan_id)
            return future
        executor.call(lambda: _follow(executor.engine, plan_id, future))
        executor.run_pending()
        return future

    def run_pending(self) -> None:
        """Inline executor: run everything that is ready now, until nothing more is."""
        self._check_open()
        if self.executor is not None:
            self.executor.run_pending()

    # -- reading ---------------------------------------------------------------------------

    def get_plan(self, plan_id: str) -> ExecutionPlan:
        """A read-only snapshot of the plan; :class:`UnknownPlan` if there is none."""
        self._check_open()
        if not isinstance(plan_id, str):
            raise UnknownPlan(plan_id)
        return self.storage.load_plan(plan_id)

    def find_plans(
        self,
        *,
        state: PlanState | str | Sequence[PlanState | str] | None = None,
        result: PlanResult | str | Sequence[PlanResult | str] | None = None,
        label: str | None = None,
        action: type[Action] | str | None = None,
        page: int = 1,
        per_page: int = 50,
        order_by: str = "-created_at",
    ) -> list[PlanRecord]:
        """Plan rows matching every given filter, newest first by default. ``page`` counts from
        1; ``action`` is the root action class (or its qualified name)."""
        self._check_open()
        if not isinstance(page, int) or page < 1:
            raise ConfigurationError(f"page must be an int >= 1, got {page!r}")
        if not isinstance(per_page, int) or per_page < 1:
            raise ConfigurationError(f"per_page must be an int >= 1, got {per_page!r}")
        return self.storage.find_plans(
            _filters(state, result, label, action),
            offset=(page - 1) * per_page,
            limit=per_page,
            order_by=order_by,
        )

    def count_plans(
        self,
        *,
        state: PlanState | str | Sequence[PlanState | str] | None = None,
        result: PlanResult | str | Sequence[PlanResult | str] | None = None,
        label: str | None = None,
        action: type[Action] | str | None = None,
    ) -> int:
        self._check_open()
        return self.storage.count_plans(_filters(state, result, label, action))

    # -- lifecycle -------------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Stop the executor (waiting up to ``timeout`` for running steps) and close storage.
        Plans it was running are released: still ``running``, with no owner; the next World
        opened with an executor on the same database takes them over and carries on."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            if self.executor is not None:
                self.executor.shutdown(self.shutdown_timeout if timeout is None else timeout)
                # plans still owned (steps that outlived the timeout) are taken over at once
                self.storage.unregister_world(self.id)
        finally:
            self.storage.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<World {self.id} {self.storage.display_url}>"

    # -- internals -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise WorldClosed()

    def _require_executor(self) -> InlineExecutor | ThreadedExecutor:
        self._check_open()
        if self.executor is None:
            raise ConfigurationError(
                "this World has no executor (executor=None): it can plan but not run; open a "
                "World with executor='threads' or 'inline' to execute plans"
            )
        return self.executor

    def _signal_plan(self, plan_id: str, state: PlanState, result: PlanResult) -> None:
        signals.emit(signals.plan_state_changed, self, plan_id=plan_id, state=state, result=result)


def _follow(engine: Any, plan_id: str, future: PlanFuture) -> None:
    runtime = engine.plans.get(plan_id)
    if runtime is not None:
        runtime.futures.append(future)
    else:
        future.set_result(plan_id)


def _filters(
    state: Any, result: Any, label: str | None, action: type[Action] | str | None
) -> PlanFilter:
    def states(value: Any, enum: Any, what: str) -> tuple[Any, ...] | None:
        if value is None:
            return None
        values = [value] if isinstance(value, str) else list(value)
        try:
            return tuple(enum(v) for v in values)
        except ValueError:
            allowed = ", ".join(e.value for e in enum)
            raise ConfigurationError(
                f"unknown plan {what} in {value!r}; use one of {allowed}"
            ) from None

    if isinstance(action, type):
        action = registry.class_name(action)
    return PlanFilter(
        state=states(state, PlanState, "state"),
        result=states(result, PlanResult, "result"),
        label=label,
        action=action,
    )
