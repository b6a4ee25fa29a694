"""The World: configuration, persistence, executor and middleware in one object."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from dynaflow import plan_options, registry, signals
from dynaflow.action import Action
from dynaflow.clock import now
from dynaflow.cluster import Cluster
from dynaflow.events import EVENT, current_context
from dynaflow.exceptions import (
    ConfigurationError,
    EventRejected,
    PlanningFailed,
    UnknownPlan,
    UnknownStep,
    WorldClosed,
)
from dynaflow.execution_plan import ExecutionPlan
from dynaflow.executor import Executor, InlineExecutor, PlanFuture, ThreadedExecutor
from dynaflow.executor.futures import Triggered
from dynaflow.executor.steps import call_finalize, call_run
from dynaflow.following import Follower
from dynaflow.hook_calls import PlanHooks, call_hook
from dynaflow.mailbox import Mailbox
from dynaflow.membership import check_queues
from dynaflow.middleware.chains import Chains
from dynaflow.middleware.stack import MiddlewareSpec, MiddlewareStack
from dynaflow.middleware.transaction import TransactionMiddleware
from dynaflow.operators.online import Operators, check_ids
from dynaflow.persistence import Storage, open_storage
from dynaflow.persistence.base import EventRow, Listening, NewPlan, RequestRow
from dynaflow.persistence.limits import check_world_id
from dynaflow.plan_options import NO_OPTIONS, PlanOptions
from dynaflow.planner import plan_core
from dynaflow.planning import plan_or_find
from dynaflow.queues import declared as declared_queues
from dynaflow.services import Services
from dynaflow.states import FINISHED_STEP_STATES, PlanResult, PlanState, StepKind
from dynaflow.urls import display_url
from dynaflow.values import to_json
from dynaflow.world_cluster import ClusterSide
from dynaflow.world_reads import PlanReads
from dynaflow.world_retention import RetentionSide, retention_of
from dynaflow.world_scheduling import SchedulingSide, Starter
from dynaflow.world_sub_plans import SubPlansSide

log = logging.getLogger("dynaflow.world")
#: the database of a World given neither a URL nor an engine
DEFAULT_URL = "sqlite:///dynaflow.db"

_CORES: dict[str, Callable[..., Any]] = {
    "plan": plan_core,
    "run": call_run,
    "finalize": call_finalize,
    "hook": call_hook,
}


class World(PlanReads, ClusterSide, SubPlansSide, SchedulingSide, RetentionSide):
    """Opens persistence and starts an executor; a context manager; thread-safe.

    ``executor``: ``"threads"`` (a scheduler thread and ``workers`` worker threads),
    ``"inline"`` (everything in the calling thread: deterministic tests) or ``None`` (a client
    that only plans). ``retention``: how long finished plans are kept (``"30d"``, a
    ``timedelta`` or a :class:`~dynaflow.Retention`); executor worlds remove older ones.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        engine: Any = None,
        workers: int = 4,
        executor: str | None = "threads",
        middleware: Sequence[MiddlewareSpec] = (),
        auto_rescue: bool = True,
        migrate: bool | None = None,
        shutdown_timeout: float = 30.0,
        world_id: str | None = None,
        lease: float = 30.0,
        queues: Mapping[str, int] | None = None,
        retention: Any = None,
    ) -> None:
        if engine is not None and url is not None:
            raise ConfigurationError(
                "World(url=..., engine=...): give one of them (the engine knows its database)"
            )
        if engine is None:
            url = DEFAULT_URL if url is None else url
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
        if world_id:
            check_world_id(world_id)
        pools = check_queues(queues, workers)
        self.retention = retention_of(retention)
        registry.load_entry_points()
        self.storage: Storage = open_storage(url, migrate=migrate, engine=engine)
        self.middleware = MiddlewareStack([TransactionMiddleware(), *middleware])
        self.services = Services(
            world=self,
            storage=self.storage,
            chains=Chains(self.middleware, _CORES),
            # a host name can be 253 characters: keep the id within its column
            id=world_id or f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
            auto_rescue=auto_rescue,
        )
        self.shutdown_timeout = shutdown_timeout
        self._hooks = PlanHooks(self.services)
        self._hooks.connect(self)
        self._closed = False
        self._close_lock = threading.Lock()
        #: heartbeats go every lease / 3; a world silent for a lease counts as dead
        self.cluster = Cluster(self.services, float(lease), pools)
        self._pools = pools
        self.follower = Follower(self.storage)
        self._listening: Listening | None = None
        #: another world released plans: adopt them on the next poll
        self._adopt = False
        #: a world came or went: look at the others' threads on the next poll
        self._look = False
        self._listen_lock = threading.Lock()
        self.executor: Executor | None = None
        self.mailbox: Mailbox | None = None
        self.starter: Starter | None = None
        if executor is not None:
            self.cluster.join(executor)
        if executor == "threads":
            self.executor = ThreadedExecutor(
                self.services,
                pools,
                self.cluster.maintain,
                self.cluster.lease,
                poll=self._poll_requests,
            )
        elif executor == "inline":
            self.executor = InlineExecutor(self.services, self.cluster.maintain)
        self.operators = Operators(self.services, self.executor, self.follower, self._listen)
        declared = declared_queues() if self.executor is not None else []
        if declared:  # executor worlds store the declared queues (writing only what changed)
            stored = self.storage.queue_limits()
            for queue in declared:
                if queue.name not in stored or stored[queue.name] != queue.limit:
                    self.storage.declare_queue(queue.name, queue.limit)
        if self.executor is not None:
            self.mailbox = Mailbox(self.services, self.executor, pools)
            self.executor.engine.requested = self._requested
            self.starter = Starter(self.services, self._plan)
            self.executor.engine.pools = dict(pools)
            self._listen()
            self.cluster.start(self.executor)
            self._start_pruning()
            log.info(
                "world %s up (pid %s, queues %s) on %s",
                self.id,
                os.getpid(),
                ", ".join(f"{q}={n}" for q, n in pools.items()),
                display_url(self.storage.display_url),
            )

    @property
    def id(self) -> str:
        """This world's id in the worlds table (a world declared dead goes on under a new one)."""
        return self.services.id

    @property
    def auto_rescue(self) -> bool:
        return self.services.auto_rescue

    # -- planning and execution --------------------------------------------------------------

    def plan(
        self,
        action_class: type[Action],
        /,
        *args: Any,
        idempotency_key: str | None = None,
        on_conflict: str | None = None,
        connection: Any = None,
        **kwargs: Any,
    ) -> ExecutionPlan:
        """Plan only. Returns the plan ``planned`` — or ``stopped``/``error`` with the planning
        error recorded, if planning raised. Options as for :meth:`trigger`."""
        self._check_open()
        args, kwargs, options = plan_options.parse(
            action_class, args, kwargs, idempotency_key, on_conflict, "plan", connection
        )
        with self._joined(connection):
            plan_id, _ = self._plan(action_class, args, kwargs, options)
            return self.get_plan(plan_id)

    def _plan(
        self,
        action_class: type[Action],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: PlanOptions = NO_OPTIONS,
        hand_off: RequestRow | None = None,
        parent: tuple[str, int] | None = None,
        plan_id: str | None = None,
        collect: list[NewPlan] | None = None,
        store: Callable[[NewPlan], None] | None = None,
    ) -> tuple[str, BaseException | None]:
        """Plan, or find the plan ``options`` point at: ``(plan id, planning failure)``.
        ``hand_off``: an execute request stored with the new plan, in its transaction;
        ``store``: what stores the new plan (a delayed one, a scheduled run) instead of
        ``insert_plan``."""
        self._check_open()
        return plan_or_find(
            self.services,
            action_class,
            args,
            kwargs,
            options,
            hand_off,
            parent=parent,
            plan_id=plan_id,
            collect=collect,
            store=store,
        )

    def execute(self, plan_id: str) -> PlanFuture:
        """Run a planned or paused plan. The future resolves when its execution ends. A world
        without an executor hands it to an executor world that can run it."""
        self._check_open()
        return self.operators.execute(plan_id)

    def trigger(
        self,
        action_class: type[Action],
        /,
        *args: Any,
        idempotency_key: str | None = None,
        on_conflict: str | None = None,
        connection: Any = None,
        **kwargs: Any,
    ) -> Triggered:
        """Plan and execute; every other argument goes to the action's ``plan()``. A planning
        failure raises :class:`PlanningFailed`.

        ``idempotency_key``: the plan already planned under this key is returned instead of
        planning a second one (:class:`IdempotencyConflict` if it was planned with other
        arguments). ``on_conflict``: when a singleton action's key is held by an active plan,
        ``"raise"`` (the default: :class:`SingletonActive`) or ``"return"`` that plan. A plan
        argument named like an option is passed inside :class:`~dynaflow.Args`. A world
        without an executor hands the plan to an executor world (any that serves its queues
        and can import its classes); ``wait()`` works the same.

        ``connection``: the application's SQLAlchemy ``Connection``, in a transaction on this
        world's database: the plan is stored in that transaction (with the application's own
        rows) and handed to an executor world — this one too — once the application commits;
        nothing of it remains if the application rolls back."""
        self._check_open()
        args, kwargs, options = plan_options.parse(
            action_class, args, kwargs, idempotency_key, on_conflict, "trigger", connection
        )
        hand_off = None
        if self.executor is None or connection is not None:  # a request stored with the plan
            hand_off = RequestRow("", "execute", {}, now(), None, self.id)
        with self._joined(connection):
            plan_id, failure = self._plan(action_class, args, kwargs, options, hand_off)
        if failure is not None:
            raise PlanningFailed(plan_id, failure) from failure
        if hand_off is not None and hand_off.id is not None:
            future = self.operators.handed_off(
                plan_id, hand_off.id, uncommitted=connection is not None
            )
            return Triggered(plan_id, future)
        record = self.storage.get_plan_record(plan_id)
        if record.state == PlanState.PLANNED:
            # a plan found by key or singleton: if another caller starts it first, follow that
            future = self.operators.execute(plan_id, follow_if_taken=options.may_find)
        elif record.state == PlanState.STOPPED:
            future = PlanFuture(self, plan_id)
            future.set_result(plan_id)
        else:  # an existing plan still executing, here or elsewhere: follow it
            future = self.operators.follow(plan_id)
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
            check_ids(plan_id, step_id)
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
        owner = self.storage.get_plan_record(plan_id).world_id
        with self.storage.transaction():
            self.storage.add_events([row])
            if owner != self.id:
                self.storage.notify([f"e {owner or '*'}"])
        assert row.id is not None
        if self.executor is None:
            future.set_result(None)
            return future
        self.executor.engine.event_sent(plan_id, step_id, row.id, future)
        self.executor.run_pending()
        return future

    def cancel(self, plan_id: str, *, abort: bool = False, by: str | None = None) -> PlanFuture:
        """Cancel a plan: steps not yet started become ``cancelled``; ``Cancellable`` steps that
        run or wait get ``cancel()`` (``abort()`` with ``abort=True``); other running steps
        finish. The plan stops with result ``cancelled``; finalize does not run. The future
        resolves when it has stopped. Cancelling a stopped plan raises :class:`InvalidState`.

        Every operator method records itself in the plan's history (``"operator cancel"``),
        with ``by`` (who asked, for an operator surface) in its detail."""
        return self._operate(plan_id, "cancel", abort, by)

    def halt(self, plan_id: str, *, by: str | None = None) -> PlanFuture:
        """Stop a plan at once: no new step starts, its queued events and timers are dropped,
        unfinished steps become ``cancelled`` and the plan is ``stopped``; code already running
        finishes and its result is recorded."""
        return self._operate(plan_id, "halt", False, by)

    def _operate(self, plan_id: str, operation: str, abort: bool, by: str | None) -> PlanFuture:
        """Cancel or halt the plan, then its sub-plans (and theirs)."""
        self._check_open()
        future = self.operators.stop(plan_id, operation, abort, by)
        self._down_to_sub_plans(plan_id, operation, abort, by)
        return future

    def maintain(self, force: bool = False) -> None:
        """Heartbeat, and take over the plans of worlds whose lease expired. Executors call it
        on their tick (every lease / 3)."""
        if not self._closed:
            self.cluster.maintain(force)

    # -- operators: resume, skip, retry ---------------------------------------------------------

    def resume(self, plan_id: str, *, sub_plans: bool = False, by: str | None = None) -> PlanFuture:
        """Run a paused plan again: failed steps run again, finished ones are left, and the
        finalize phase runs again in full (finalizers must be idempotent). The future resolves
        when its execution ends. Raises :class:`InvalidState` unless the plan is paused.
        ``sub_plans=True`` first resumes its paused sub-plans (and theirs)."""
        self._check_open()
        if sub_plans:
            self._down_to_sub_plans(plan_id, "resume", by=by)
        return self.operators.resume(plan_id, by)

    def skip(
        self, plan_id: str, step_id: int, *, resume: bool = False, by: str | None = None
    ) -> PlanFuture:
        """Skip a failed step of a paused plan: it, every step consuming its output (directly
        or not) and its finalize step become ``skipped``, in one transaction; the action's
        ``on_skip()`` runs first and may refuse by raising. Steps merely ordered after it run
        once the plan is resumed (``resume=True`` does so at once). The result becomes
        ``warning``."""
        self._check_open()
        return self.operators.skip(plan_id, step_id, resume, by)

    def retry(self, plan_id: str, step_id: int, *, by: str | None = None) -> PlanFuture:
        """Run one failed step again now, without resuming the other failed ones; when it
        succeeds, the steps after it go on. The future resolves when the execution ends."""
        self._check_open()
        return self.operators.retry(plan_id, step_id, by)

    def follow(self, plan_id: str) -> PlanFuture:
        """A future for the end of the plan's execution: it resolves when the plan stops or
        pauses (awaiting an operator), whichever world runs it — at once if it has already; a
        planned plan's future waits for an execution to end."""
        self._check_open()
        self.storage.get_plan_record(plan_id)  # UnknownPlan
        return self.operators.follow(plan_id)

    def run_pending(self) -> None:
        """Inline executor: run everything that is ready now (requests from other processes
        included), until nothing more is."""
        self._check_open()
        self._look_now()  # plans and runs that fell due; requests (inline)
        self._prune_if_due()
        if self.executor is not None:
            self.executor.run_pending()

    # -- lifecycle -------------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Stop the executor (waiting up to ``timeout`` for running steps) and close storage.
        Plans it was running are released: still ``running``, with no owner; the other
        executor worlds on the database take them over on their next heartbeat (a World opened
        with an executor later, at once) and carry on."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._stop_pruning(timeout)
            if self.mailbox is not None:
                self.mailbox.closed = True
            if self.executor is not None:
                self.executor.shutdown(self.shutdown_timeout if timeout is None else timeout)
                self.cluster.leave()
                log.info("world %s down", self.id)
        finally:
            self._hooks.disconnect(self)
            self.follower.close()
            if self._listening is not None:
                self._listening.close()
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

    # -- the database ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The database URL for display: every password (``user:password@``, ``?password=``)
        shown as ``***``."""
        return display_url(self.storage.display_url)

    def transaction(self) -> AbstractContextManager[Any]:
        """A transaction on this world's database for the application's own tables (reading
        what a finalizer wrote, say): ``with world.transaction() as connection:`` gives a
        SQLAlchemy ``Connection`` (``None`` on ``memory://``); it commits when the block ends
        and rolls back if it raises. A nested block in the same thread joins the outer one."""
        self._check_open()
        return self.storage.transaction()

    # -- internals -------------------------------------------------------------------------

    def _requested(self) -> None:
        """A step left requests (stored with its outcome): look at them now."""
        if self.mailbox is not None and self.executor is not None:
            self.mailbox.wanted("requests")
            self.executor.run_pending()

    def _joined(self, connection: Any) -> AbstractContextManager[Any]:
        """The application's transaction, for the block (none given: nothing)."""
        return nullcontext() if connection is None else self.storage.joined(connection)

    def _check_open(self) -> None:
        if self._closed:
            raise WorldClosed()

    def _signal_plan(self, plan_id: str, state: PlanState, result: PlanResult) -> None:
        signals.emit(signals.plan_state_changed, self, plan_id=plan_id, state=state, result=result)
