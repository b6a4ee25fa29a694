"""The SubPlans mixin: an action whose run step spawns child plans and finishes when they have.

Write ``create_sub_plans()``, yielding a :class:`SubPlan` per child::

    class ImportAll(SubPlans, Action):
        batch_size = 100      # children planned at a time
        concurrency = 5       # children running at once (None: no limit)

        def create_sub_plans(self):
            for record in self.input["records"]:
                yield SubPlan(ImportOne, record)

The step plans the children in batches, starts at most ``concurrency`` of them at a time (on
any executor world that serves their queues) and waits suspended, holding no thread. Each child
that stops or pauses sends the step an event in the transaction that ends it; the step wakes
(taking every end queued meanwhile at once), counts in the database the children it planned
that have not ended yet (reading only those), starts as many more as there is room for, and
plans the next batch when the planned ones run out. Every ``sub_plans_check_every`` seconds it
also wakes by itself, in case an end was missed.

``create_sub_plans()`` is called again for each batch and must yield the same children in the
same order each time: the step skips those it has planned already (it keeps counts, not the
generator). Its state lives in the step's output under ``sub_plans`` (with an ``Output`` model,
declare ``sub_plans: dict = {}``)::

    {"total": 10000, "planned": 300, "started": 205, "ended": 200,
     "counts": {"success": 198, "error": 2}, "failed": {"<child id>": "paused/error", ...},
     "queued": ["<child id>", ...], ...}

``ended`` (and the step's progress, ended / total) is counted on every wake; ``counts``, the
ended children per result, reads every ended child, so it is counted when the step starts or
runs again, on each periodic check, and when every child has ended (it is exact then).

When every child has ended, ``on_sub_plans_finished(counts, failed)`` decides: by default the
step fails if any child did not succeed (``stopped`` with ``success`` or ``warning``), naming
them. A paused child counts as failed: resume the parent with ``world.resume(id,
sub_plans=True)`` to resume the paused children too, or fix them one by one and resume the
parent, which counts again. Cancelling or halting the parent cancels or halts its children.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any, ClassVar

from dynaflow.action import Cancellable
from dynaflow.clock import now
from dynaflow.exceptions import (
    ConfigurationError,
    DynaflowError,
    InvalidArgument,
    SubPlansFailed,
)
from dynaflow.persistence.base import PlanFilter
from dynaflow.polling import output_get, output_set
from dynaflow.states import PlanResult, PlanState

#: the timer event of the periodic count (its payload also carries a token)
CHECK = "__dynaflow_sub_plans_check__"
#: results of a child that count as success
GOOD = (PlanResult.SUCCESS, PlanResult.WARNING)
#: failed children named in the error of the default ``on_sub_plans_finished``
NAMED = 20
#: children read at once
PAGE = 1000
#: the states of a child that has not ended
OPEN = (PlanState.SCHEDULED, PlanState.PLANNED, PlanState.RUNNING)


class SubPlan:
    """One child plan to spawn: ``SubPlan(ActionClass, *args, **kwargs)``."""

    __slots__ = ("action_class", "args", "kwargs")

    def __init__(self, action_class: type, *args: Any, **kwargs: Any) -> None:
        self.action_class, self.args, self.kwargs = action_class, args, kwargs

    def __repr__(self) -> str:
        return f"SubPlan({getattr(self.action_class, '__qualname__', self.action_class)}, ...)"


class SubPlans(Cancellable):
    #: the ends of many children are taken in one wake
    event_batches: ClassVar[bool] = True
    #: run again after a crash, the step counts its children again and goes on
    idempotent: ClassVar[bool] = True
    #: children planned at a time (a new batch when the planned ones have all started)
    batch_size: ClassVar[int] = 100
    #: children running at once, counted across every world (``None``: no limit)
    concurrency: ClassVar[int | None] = None
    #: seconds between counts of the children in the database (a safety net for lost ends)
    sub_plans_check_every: ClassVar[float] = 60.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__qualname__
        if not _positive_int(cls.batch_size):
            raise ConfigurationError(f"{name}.batch_size must be an int >= 1")
        if cls.concurrency is not None and not _positive_int(cls.concurrency):
            raise ConfigurationError(f"{name}.concurrency must be an int >= 1 or None")
        check = cls.sub_plans_check_every
        if isinstance(check, bool) or not isinstance(check, int | float) or check <= 0:
            raise ConfigurationError(f"{name}.sub_plans_check_every must be seconds > 0")

    # -- to implement ----------------------------------------------------------------------

    def create_sub_plans(self) -> Iterable[SubPlan]:
        """Yield a :class:`SubPlan` per child, the same ones in the same order on every
        call."""
        raise NotImplementedError(f"{type(self).__qualname__} must define create_sub_plans()")

    def on_sub_plans_finished(self, counts: dict[str, int], failed: dict[str, str]) -> None:
        """Every child has ended. ``counts``: children per result (``paused`` for those paused,
        whatever their result);
        ``failed``: child id -> ``"state/result"`` of each that did not succeed. Raise to
        fail the step; the default fails if any child failed."""
        if failed:
            total = sum(counts.values())
            named = ", ".join(f"{plan_id} ({how})" for plan_id, how in list(failed.items())[:NAMED])
            more = f" and {len(failed) - NAMED} more" if len(failed) > NAMED else ""
            raise SubPlansFailed(f"{len(failed)} of {total} sub-plans failed: {named}{more}")

    # -- the run protocol ------------------------------------------------------------------

    def run(self, event: Any = None) -> None:
        state = self._state()
        events = event if isinstance(event, list) else [event]
        if state is not None and state.get("deciding") and any(map(_decide, events)):
            # every child has ended and the counts are saved: decide
            self.on_sub_plans_finished(dict(state["counts"]), dict(state["failed"]))
            return
        for item in events:
            if not (item is None or _decide(item) or _ended(item) or _check(item)):
                raise InvalidArgument(
                    f"{type(self).__qualname__} waits for its sub-plans; it got the event {item!r}"
                )
        recount = event is None  # the first run, or run again: counts per result too
        if state is None:  # the first run
            state = self._start()
        elif event is None:  # run again (resumed, retried, taken over): a new check chain
            state["deciding"] = False
            self._check_later(state)
        elif any(_check(e) and e.get("token") == state["check"] for e in events):
            self._check_later(state)  # (a check of an earlier run lapses)
            recount = True
        self._count(state)
        self._fill(state)
        self.progress(state["ended"], state["total"] or None)  # type: ignore[attr-defined]
        finished = self._finished(state)
        if recount or finished:
            self._count_results(state)
        if finished:
            state["failed"] = self._failed()
            state["deciding"] = True
            self._keep(state)  # the final counts are saved first (a failing decision saves
            self.world.event(  # type: ignore[attr-defined]  # no output), then it decides
                self.plan_id,  # type: ignore[attr-defined]
                self.step_id,  # type: ignore[attr-defined]
                {"decide": CHECK},
            )
        self._keep(state)
        self.suspend()  # type: ignore[attr-defined]

    def cancel(self) -> None:
        """The parent is cancelled: so are its children (those already stopped stay)."""
        world: Any = self.world  # type: ignore[attr-defined]
        for child in world.sub_plan_ids(self.plan_id):  # type: ignore[attr-defined]
            try:
                world.cancel(child)
            except DynaflowError:  # stopped meanwhile
                continue

    # -- state -----------------------------------------------------------------------------

    def _state(self) -> dict[str, Any] | None:
        state = output_get(self, "sub_plans")
        return state if isinstance(state, dict) and "planned" in state else None

    def _keep(self, state: dict[str, Any] | None) -> None:
        output_set(self, "sub_plans", state, "SubPlans (sub_plans: dict = {})")

    def _start(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "total": None,
            "planned": 0,
            "started": 0,
            "ended": 0,
            "queued": [],
            "counts": {},
            "failed": {},
            "check": None,
            "deciding": False,
        }
        self._check_later(state)
        return state

    def _check_later(self, state: dict[str, Any]) -> None:
        token = now().isoformat()
        state["check"] = token
        self.plan_event(  # type: ignore[attr-defined]
            {"check": CHECK, "token": token}, delay=float(self.sub_plans_check_every)
        )

    # -- children --------------------------------------------------------------------------

    def _fill(self, state: dict[str, Any]) -> None:
        """Start children up to the concurrency, planning the next batch when needed."""
        if self.cancel_requested:  # type: ignore[attr-defined]
            return
        limit = self.concurrency
        while True:
            ended = state["ended"]
            room = (
                len(state["queued"])
                if limit is None
                else min(limit - (state["started"] - ended), len(state["queued"]))
            )
            if room > 0:
                start, state["queued"] = state["queued"][:room], state["queued"][room:]
                state["started"] += len(start)
                self.world.hand_off(start)  # type: ignore[attr-defined]
            if state["queued"] or state["total"] is not None:
                return
            if limit is not None and state["started"] - ended >= limit:
                return
            self._plan_batch(state)

    def _plan_batch(self, state: dict[str, Any]) -> None:
        world: Any = self.world  # type: ignore[attr-defined]
        first = state["planned"]
        children = itertools.islice(self.create_sub_plans(), first, first + self.batch_size)
        batch = []
        for index, child in enumerate(children, first):
            if not isinstance(child, SubPlan):
                raise InvalidArgument(
                    f"{type(self).__qualname__}.create_sub_plans() must yield "
                    f"dynaflow.SubPlan(ActionClass, *args, **kwargs), got {child!r}"
                )
            batch.append((child.action_class, child.args, child.kwargs, index))
        # the batch in one transaction (none of it if storing fails)
        for plan_id, failure in world.plan_sub_plans(
            self.plan_id,  # type: ignore[attr-defined]
            self.step_id,  # type: ignore[attr-defined]
            batch,
        ):
            if failure is None:
                state["queued"].append(plan_id)
            else:  # stored stopped/error: it has ended already
                state["started"] += 1
                state["ended"] += 1
                key = str(PlanResult.ERROR)
                state["counts"][key] = state["counts"].get(key, 0) + 1
        state["planned"] = first + len(batch)
        if len(batch) < self.batch_size:  # the generator ran out: that is all of them
            state["total"] = state["planned"]

    def _count(self, state: dict[str, Any]) -> None:
        """How many of the planned children have ended (stopped or paused): those planned less
        those still to end, counted in the database (which reads only those, whatever told
        the step to look)."""
        storage = self.world.storage  # type: ignore[attr-defined]
        where = PlanFilter(state=OPEN, parent=self.plan_id)  # type: ignore[attr-defined]
        still = sum(storage.plan_counts(where).values())
        # (after a crash, a batch planned but not recorded counts as not ended until it is
        # planned again: the count errs on the side of the limit)
        state["ended"] = max(0, state["planned"] - still)

    def _count_results(self, state: dict[str, Any]) -> None:
        """The children that ended, per result (``paused`` for those paused): one grouped
        count of every child."""
        storage = self.world.storage  # type: ignore[attr-defined]
        parent = self.plan_id  # type: ignore[attr-defined]
        counts: dict[str, int] = {}
        for (how, result), n in storage.plan_counts(PlanFilter(parent=parent)).items():
            if how in (PlanState.STOPPED, PlanState.PAUSED):
                key = _key(how, result)
                counts[key] = counts.get(key, 0) + n
        state["counts"] = dict(sorted(counts.items()))

    def _failed(self) -> dict[str, str]:
        """Each child that did not succeed: id -> ``"state/result"``."""
        storage = self.world.storage  # type: ignore[attr-defined]
        parent = self.plan_id  # type: ignore[attr-defined]
        bad = tuple(r for r in PlanResult if r not in GOOD and r != PlanResult.PENDING)
        failed: dict[str, str] = {}
        for where in (
            PlanFilter(state=(PlanState.PAUSED,), parent=parent),
            PlanFilter(state=(PlanState.STOPPED,), result=bad, parent=parent),
        ):
            offset = 0
            while True:
                page = storage.find_plans(where, offset=offset, limit=PAGE, order_by="created_at")
                failed.update((r.id, f"{r.state}/{r.result}") for r in page)
                if len(page) < PAGE:
                    break
                offset += PAGE
        return failed

    def _finished(self, state: dict[str, Any]) -> bool:
        total = state["total"]
        return total is not None and not state["queued"] and state["ended"] >= total


def _decide(event: Any) -> bool:
    return isinstance(event, dict) and event.get("decide") == CHECK


def _check(event: Any) -> bool:
    return isinstance(event, dict) and event.get("check") == CHECK


def _ended(event: Any) -> bool:
    return isinstance(event, dict) and "sub_plan" in event


def _key(how: str, result: str) -> str:
    """A child's count: its result once stopped, ``paused`` while paused."""
    return "paused" if how == PlanState.PAUSED else str(result)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
