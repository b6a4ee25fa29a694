"""The Action base class: what users subclass.

An action instance lives for one phase only. Between phases only ``input``, ``output`` and the
ids survive, rebuilt from the database, so an action keeps nothing else on ``self``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, Protocol

from pydantic import BaseModel

from dynaflow import clock, plan_hooks, registry, singletons
from dynaflow.clock import now, seconds
from dynaflow.events import TIMEOUT, TIMER, RunContext, Suspend, SuspendedHandle
from dynaflow.exceptions import ConfigurationError, InvalidArgument, InvalidState, PlanningError
from dynaflow.flows import Concurrence, Sequence
from dynaflow.middleware.stack import MiddlewareSpec, MiddlewareStack
from dynaflow.persistence.base import EventRow
from dynaflow.queues import queue_name
from dynaflow.rescue import Rescue, Retry
from dynaflow.types import WorldHandle
from dynaflow.values import to_json

if TYPE_CHECKING:
    from dynaflow.middleware.base import Middleware

#: key of the action input that holds captured request context (see ContextMiddleware)
CONTEXT_KEY = "__context__"


class Planning(Protocol):
    """What an action calls on the planner while its ``plan`` runs."""

    def plan_self(self, action: Action, input: dict[str, Any]) -> None: ...

    def plan_action(
        self,
        cls: type[Action],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        parent: Action | None,
        trigger: Action | None = None,
    ) -> Action: ...

    def scope(self, flow: Sequence | Concurrence) -> AbstractContextManager[None]: ...


class Connections(Protocol):
    """Where an action finds the connection of the current phase transaction (the storage)."""

    def current_connection(self) -> Any: ...


class Action:
    """Subclass and define any of ``plan``, ``run`` and ``finalize``.

    Class attributes:

    * ``Input`` / ``Output``: optional pydantic models; without them input and output are dicts.
    * ``subscribe``: an Action class (or tuple): plan this action whenever that one is planned.
    * ``queue``: the executor queue run steps go to (a name, or a ``dynaflow.Queue``).
    * ``idempotent``: a run step interrupted by a crash may simply run again.
    * ``rescue_strategy`` (``Rescue.PAUSE | SKIP | FAIL``) and ``retry`` (a ``Retry``): what
      happens when the run step fails. An optional ``on_skip()`` is called before an operator
      (or auto-rescue) skips the step; if it raises, nothing is skipped.
    * ``middleware``: middleware for this class and its subclasses (a list of classes or
      instances in the class body, or ``Cls.use(...)`` later).
    * ``singleton`` (or ``singleton_key = lambda input: ...``): at most one plan holding this
      action (with this key) is active at a time; see :mod:`dynaflow.singletons`.
    * ``on_success``, ``on_failure``, ``on_stopped``, ``on_paused``: optional methods taking
      the plan, called when the plan stops or pauses; see :mod:`dynaflow.plan_hooks`.
    * ``secret_inputs`` / ``secret_outputs``: input and output keys (``"password"``, or a
      dotted path into nested objects: ``"db.password"``) the console shows as ``••••``.
    """

    Input: ClassVar[type[BaseModel] | None] = None
    Output: ClassVar[type[BaseModel] | None] = None
    subscribe: ClassVar[Any] = None
    queue: ClassVar[str] = "default"
    idempotent: ClassVar[bool] = False
    #: the weight of this action's run step in its plan's progress (0: it does not count)
    progress_weight: ClassVar[float] = 1
    #: ``run(event)`` takes the events sent to the step in batches: every sent event queued
    #: when it wakes, as a list, in arrival order (timers still come one at a time)
    event_batches: ClassVar[bool] = False
    #: what auto-rescue does when the run step fails; ``None``: as the parent action says
    #: (PAUSE at the top)
    rescue_strategy: ClassVar[Rescue | None] = None
    #: run a failed step again on a persisted timer (see :class:`~dynaflow.rescue.Retry`)
    retry: ClassVar[Retry | None] = None
    middleware: ClassVar[MiddlewareStack] = MiddlewareStack()
    singleton: ClassVar[bool] = False
    singleton_key: ClassVar[Callable[[Any], Any] | None] = None
    #: keys the console masks (see the ``present`` middleware hook)
    secret_inputs: ClassVar[tuple[str, ...]] = ()
    secret_outputs: ClassVar[tuple[str, ...]] = ()

    #: set per class by __init_subclass__
    action_class_name: ClassVar[str] = "dynaflow.action.Action"
    has_run: ClassVar[bool] = False
    has_finalize: ClassVar[bool] = False
    #: ``run`` takes an event parameter, so the action can suspend
    run_takes_event: ClassVar[bool] = False
    #: the execution-plan hooks the class defines (``on_success``, ...)
    plan_hooks: ClassVar[frozenset[str]] = frozenset()

    # instance state, set by the planner or the executor
    id: int
    plan_id: str
    step_id: int | None
    world: WorldHandle
    input: Any
    output: Any
    raw_input: dict[str, Any]
    triggering_action: Action | None
    has_planned_self: bool
    _planner: Planning | None
    _run_context: RunContext | None
    _connections: Connections | None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        parent = next(
            base.__dict__["middleware"]
            for base in cls.__mro__[1:]
            if isinstance(base.__dict__.get("middleware"), MiddlewareStack)
        )
        declared = cls.__dict__.get("middleware")
        stack = MiddlewareStack(parent=parent)
        if declared is not None:
            if isinstance(declared, MiddlewareStack):
                raise ConfigurationError(
                    f"{cls.__qualname__}.middleware: list middleware classes or instances "
                    "(e.g. middleware = [AuditMiddleware]), or call the class's use()"
                )
            for spec in declared:
                stack.use(spec)
        cls.middleware = stack
        cls.action_class_name = registry.class_name(cls)
        cls.has_run = callable(getattr(cls, "run", None))
        cls.has_finalize = callable(getattr(cls, "finalize", None))
        cls.run_takes_event = cls.has_run and _takes_event(cls.run)  # type: ignore[attr-defined]
        cls.queue = queue_name(cls.queue, f"{cls.__qualname__}.queue")
        weight = cls.progress_weight
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise ConfigurationError(
                f"{cls.__qualname__}.progress_weight must be a number >= 0, got {weight!r}"
            )
        if cls.retry is not None and not isinstance(cls.retry, Retry):
            raise ConfigurationError(f"{cls.__qualname__}.retry must be a dynaflow.Retry")
        if cls.rescue_strategy is not None:
            try:
                cls.rescue_strategy = Rescue(cls.rescue_strategy)
            except ValueError:
                raise ConfigurationError(
                    f"{cls.__qualname__}.rescue_strategy must be a dynaflow.Rescue "
                    f"(PAUSE, SKIP or FAIL), got {cls.rescue_strategy!r}"
                ) from None
        for name in ("secret_inputs", "secret_outputs"):
            keys = getattr(cls, name)
            if not isinstance(keys, tuple | list | frozenset | set) or not all(
                isinstance(k, str) and k for k in keys
            ):
                raise ConfigurationError(
                    f"{cls.__qualname__}.{name} must be a tuple of key names, like "
                    f'("password",), got {keys!r}'
                )
            setattr(cls, name, tuple(keys))
        for name in ("Input", "Output"):
            model = getattr(cls, name)
            if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise ConfigurationError(f"{cls.__qualname__}.{name} must be a pydantic BaseModel")
        singletons.check_class(cls)
        cls.plan_hooks = plan_hooks.methods(cls)
        registry.register(cls, _subscription_targets(cls))

    @classmethod
    def instance(
        cls,
        world: WorldHandle,
        plan_id: str,
        action_id: int,
        step_id: int | None,
        connections: Connections | None = None,
    ) -> Action:
        """A bare instance (``__init__`` is not called): what the planner and the executor
        fill in. The one place action instances are made."""
        action: Action = cls.__new__(cls)
        action.id = action_id
        action.plan_id = plan_id
        action.step_id = step_id
        action.world = world
        action.triggering_action = None
        action.has_planned_self = step_id is not None
        action._planner = None
        action._run_context = None
        action._connections = connections
        action.raw_input = {}
        return action

    @classmethod
    def use(
        cls,
        middleware: MiddlewareSpec,
        *,
        before: MiddlewareSpec | None = None,
        after: MiddlewareSpec | None = None,
        replace: MiddlewareSpec | None = None,
    ) -> Middleware:
        """Register middleware on this class (and its subclasses)."""
        return cls.middleware.use(middleware, before=before, after=after, replace=replace)

    # -- plan phase ------------------------------------------------------------------------

    def plan(self, *args: Any, **kwargs: Any) -> None:
        """Default planning: ``plan_self(**kwargs)``."""
        if args:
            raise PlanningError(
                f"{self.action_class_name} got positional arguments {args!r} but defines no "
                "plan() taking them; pass keyword arguments or define plan()"
            )
        self.plan_self(**kwargs)

    def plan_self(self, **input: Any) -> None:
        """Add this action's own run step (if it defines ``run``) and finalize step (if it
        defines ``finalize``), with ``input``. Values may be output references."""
        self._planning("plan_self").plan_self(self, input)

    def plan_action(self, action_class: type[Action], *args: Any, **kwargs: Any) -> Action:
        """Plan a child action now (depth first) and return it, so that its ``output`` can be
        referenced in later inputs."""
        return self._planning("plan_action").plan_action(action_class, args, kwargs, parent=self)

    def sequence(self) -> AbstractContextManager[None]:
        """Inside this block, planned steps run one after another."""
        return self._planning("sequence").scope(Sequence())

    def concurrence(self) -> AbstractContextManager[None]:
        """Inside this block, planned steps may run at the same time (the default)."""
        return self._planning("concurrence").scope(Concurrence())

    def _planning(self, what: str) -> Planning:
        planner = getattr(self, "_planner", None)
        if planner is None:
            raise PlanningError(
                f"{what}() can only be called while {self.action_class_name} plans (in plan())"
            )
        return planner

    # -- run phase: suspend, events, timers ----------------------------------------------------

    def suspend(self, callback: Callable[[SuspendedHandle], Any] | None = None) -> NoReturn:
        """End this ``run`` call without finishing the step: the worker is freed and the step
        waits, ``suspended``, until an event wakes it with ``run(event)``. ``callback(handle)``
        is called once the suspended state is saved; ``handle.send(event)`` wakes the step."""
        self._context("suspend")
        if not type(self).run_takes_event:
            raise ConfigurationError(
                f"{self.action_class_name}.run() takes no event parameter, so it cannot "
                "suspend; define it as run(self, event=None)"
            )
        raise Suspend(callback)

    def plan_event(
        self, event: Any, delay: float | None = None, *, at: datetime | None = None
    ) -> None:
        """Schedule ``event`` for this step after ``delay`` seconds (or at ``at``): a persisted
        timer, delivered to ``run(event)`` when due by whichever executor is alive then."""
        context = self._context("plan_event")
        if (delay is None) == (at is None):
            raise InvalidArgument("plan_event() takes either delay= (seconds) or at= (a datetime)")
        planned_at = now()  # one reading: the timer is due exactly ``delay`` after it was planned
        if delay is not None:
            due = planned_at + timedelta(
                seconds=seconds(delay, f"plan_event(delay={delay!r}): the delay")
            )
        else:
            if not isinstance(at, datetime) or at.tzinfo is None:
                raise InvalidArgument(f"plan_event(at={at!r}) needs a timezone-aware datetime")
            due = at
        payload = to_json(event, f"event planned by {self.action_class_name}#{self.id}")
        row = EventRow(context.plan_id, context.step_id, TIMER, payload, planned_at, due)
        context.events.append((row, None))

    def schedule_timeout(self, seconds: float) -> None:
        """Error this step if it is still running or suspended ``seconds`` from now."""
        context = self._context("schedule_timeout")
        clock.seconds(seconds, f"schedule_timeout({seconds!r})", positive=True)
        at = now()
        row = EventRow(
            context.plan_id,
            context.step_id,
            TIMEOUT,
            {"seconds": seconds},
            at,
            at + timedelta(seconds=seconds),
        )
        context.events.append((row, None))

    def progress(self, done: float, total: float | None = None) -> None:
        """Say how far this run step got: ``done`` of ``total`` (any unit). Shown by
        ``dynaflow plans show/watch`` and the console, emitted as ``signals.step_progress``,
        stored at most every half second while the step runs, and with its outcome at its end."""
        self._context("progress").report().progress(done, total)

    def log(self, message: str) -> None:
        """Add a line to this step's log (kept with the plan: ``world.step_logs``; at most
        1,000 lines per step), emitted as ``signals.step_logged``."""
        self._context("log").report().log(message)

    @property
    def cancel_requested(self) -> bool:
        """The plan is being cancelled (see ``Cancellable``)."""
        context = getattr(self, "_run_context", None)
        return context is not None and bool(context.step.cancel_requested)

    def _context(self, what: str) -> RunContext:
        context = getattr(self, "_run_context", None)
        if context is None:
            raise InvalidState(
                f"{what}() can only be called while {self.action_class_name} runs (in run())"
            )
        return context

    # -- run and finalize phases -----------------------------------------------------------

    @property
    def context(self) -> dict[str, Any]:
        """Request context captured at plan time (see ContextMiddleware)."""
        raw = getattr(self, "raw_input", None) or {}
        context = raw.get(CONTEXT_KEY)
        return context if isinstance(context, dict) else {}

    @property
    def connection(self) -> Any:
        """The SQLAlchemy connection of the current phase transaction (finalize and plan phases
        with the TransactionMiddleware), or ``None``. Write your own tables through it."""
        connections = getattr(self, "_connections", None)
        return connections.current_connection() if connections is not None else None

    def __repr__(self) -> str:
        ident = getattr(self, "id", "?")
        return f"<{type(self).__qualname__}#{ident}>"


class Cancellable:
    """Mixin for actions that can stop their external work when their plan is cancelled.

    ``cancel()`` is called (in place of ``run``) for a suspended step, or as soon as a running
    one suspends; when it returns the step is ``cancelled``. It may itself ``suspend()`` to wait
    for the external system to confirm. ``abort()`` defaults to ``cancel()``.
    """

    def cancel(self) -> None:
        raise NotImplementedError(f"{type(self).__qualname__} must define cancel()")

    def abort(self) -> None:
        self.cancel()


def _subscription_targets(cls: type[Action]) -> tuple[type[Action], ...]:
    subscribe = cls.__dict__.get("subscribe")
    if subscribe is None:
        return ()
    targets = subscribe if isinstance(subscribe, tuple) else (subscribe,)
    for target in targets:
        if not (isinstance(target, type) and issubclass(target, Action)):
            raise ConfigurationError(
                f"{registry.class_name(cls)}.subscribe must be an Action class or a tuple of "
                f"them, got {target!r}"
            )
    return targets


def _takes_event(run: Callable[..., Any]) -> bool:
    try:
        parameters = list(inspect.signature(run).parameters.values())[1:]
    except (TypeError, ValueError):
        return False
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in parameters
    )


def plan_signature(cls: type[Action]) -> inspect.Signature:
    """The signature of ``cls.plan``, cached on the class."""
    cached = cls.__dict__.get("_plan_signature")
    if cached is None:
        cached = inspect.signature(cls.plan)
        cls._plan_signature = cached  # type: ignore[attr-defined]
    return cached
