"""Suspending run steps and waking them with events.

``Action.suspend()`` raises :class:`Suspend`, which ends the ``run`` call; the executor saves the
step as ``suspended`` and later calls ``run(event)`` once per event. Events and timers are rows
in the database (see :class:`~dynaflow.persistence.base.EventRow`), so they survive the process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from dynaflow.persistence.base import EventRow, RequestRow
from dynaflow.types import WorldHandle


class EventKind(StrEnum):
    """What a queued event row is (stored as its value)."""

    #: sent with ``World.event``: delivered to ``run(event)``
    EVENT = "event"
    #: planned with ``plan_event``: delivered to ``run(event)`` when due
    TIMER = "timer"
    #: planned with ``schedule_timeout``: errors the step if it is unfinished when due
    TIMEOUT = "timeout"
    #: the next attempt under a ``Retry`` policy
    RETRY = "retry"


EVENT, TIMER, TIMEOUT, RETRY = EventKind


class Suspend(BaseException):
    """Raised by ``Action.suspend()`` to end the current ``run`` call.

    A BaseException so that a ``try: ... except Exception:`` in user code cannot swallow it.
    """

    def __init__(self, callback: Callable[[SuspendedHandle], Any] | None) -> None:
        super().__init__("suspended")
        self.callback = callback


@dataclass(frozen=True, slots=True)
class SuspendedHandle:
    """Given to a suspend callback: lets anyone holding the world wake the step."""

    world: WorldHandle
    plan_id: str
    step_id: int

    def send(self, event: Any, optional: bool = False) -> Future[Any]:
        """Deliver ``event`` to the step (thread-safe; see ``World.event``)."""
        return self.world.event(self.plan_id, self.step_id, event, optional=optional)


@dataclass(slots=True)
class RunContext:
    """What one ``run``/``cancel`` call of a step collects, saved with the step's outcome."""

    plan_id: str
    step_id: int
    #: events and timers planned during the call (inserted with the outcome)
    events: list[tuple[EventRow, Future[Any] | None]] = field(default_factory=list)
    #: requests the call left (a SubPlans step starting children), inserted with the outcome
    requests: list[RequestRow] = field(default_factory=list)
    #: what the call reports (progress, log lines): a :class:`~dynaflow.reporting.Reporter`,
    #: made by ``reporting()`` on the first report (most steps report nothing)
    reporter: Any = None
    reporting: Any = None

    def report(self) -> Any:
        """This call's reporter (made now if it is the first report)."""
        if self.reporter is None:
            self.reporter = self.reporting()
        return self.reporter

    #: the executor's record of the step (its ``cancel_requested`` is set by ``World.cancel``)
    step: Any = None
    #: the kind of the event this call handles and when it was sent (a timer: when it fell
    #: due); ``None`` for a first call, a retry or a cancel
    woken_by: tuple[str, datetime] | None = None
    #: the step belongs to a plan another world runs, which offered it to this one
    offered: bool = False


_current = threading.local()


def current_context() -> RunContext | None:
    """The context of the step this thread is running, if any."""
    return getattr(_current, "context", None)


def set_current_context(context: RunContext | None) -> None:
    _current.context = context
