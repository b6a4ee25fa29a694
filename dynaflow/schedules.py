"""Recurring plans: an action planned at each time of a cron expression, in a time zone.

A schedule is a row (``dynaflow_schedules``) holding the action class, its arguments, the cron
expression and time zone, the catch-up policy, and the time of its next run. Executor worlds
plan the runs that fell due (:func:`plan_due`); each run is a compare-and-set on the schedule's
revision in the transaction that stores the run's plan, so however many worlds look, each run
is planned exactly once. Times come from the cron library (cronsim, which handles daylight
saving time as Debian's cron does) in the schedule's zone (zoneinfo), and are stored UTC.

Catch-up, for runs whose time passed while no world could plan them (all workers down, say):

* ``"skip"``: a run more than :data:`GRACE` late is dropped; only runs still on time are planned;
* ``"once"``: the missed runs are planned as one run (stamped with the latest missed time);
* ``"all"``: every missed run is planned, oldest first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from dynaflow import registry
from dynaflow.clock import now
from dynaflow.exceptions import (
    ConcurrentModification,
    InvalidArgument,
    UnknownActionClass,
    UnknownSchedule,
)
from dynaflow.persistence.base import HistoryRow, NewPlan, RequestRow
from dynaflow.persistence.schedules import ScheduleRow
from dynaflow.services import Services

log = logging.getLogger("dynaflow.schedules")

CATCH_UP = ("skip", "once", "all")
#: how late a run may be planned and still count as on time (``catch_up="skip"``)
GRACE = timedelta(minutes=1)
#: missed runs planned per schedule and look (``"all"``: the rest on the next looks)
RUNS_PER_LOOK = 100
#: cron times walked to find the latest missed one before asking the library backwards
SCAN = 10_000

#: ``World._plan(action_class, args, kwargs, hand_off=, store=) -> (plan id, failure)``
Plan = Callable[..., tuple[str, BaseException | None]]


@dataclass(frozen=True, slots=True)
class Schedule:
    """A recurring plan, as ``world.schedules()`` lists it. Times are timezone-aware in the
    schedule's zone (``tz``)."""

    key: str
    action_class: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    cron: str
    tz: str
    catch_up: str
    #: when the next run is due (while paused: when it would have been)
    next_run_at: datetime
    paused: bool
    #: the time of the last run planned, and its plan
    last_run_at: datetime | None
    last_plan_id: str | None

    @classmethod
    def of(cls, row: ScheduleRow) -> Schedule:
        zone = ZoneInfo(row.tz)
        last = row.last_run_at.astimezone(zone) if row.last_run_at is not None else None
        return cls(
            row.key,
            row.action_class,
            tuple(row.args),
            dict(row.kwargs),
            row.cron,
            row.tz,
            row.catch_up,
            row.next_run_at.astimezone(zone),
            row.paused_at is not None,
            last,
            row.last_plan_id,
        )


# -- cron and time zones ------------------------------------------------------------------------


def zone(tz: object) -> ZoneInfo:
    if not isinstance(tz, str) or not tz:
        raise InvalidArgument(f"tz must be an IANA time zone name like 'Europe/Prague', got {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(
            f"unknown time zone {tz!r}: use an IANA name like 'UTC' or 'Europe/Prague' "
            "(zoneinfo.available_timezones() lists them)"
        ) from None


def next_time(cron: str, tz: str, after: datetime) -> datetime:
    """The first time of ``cron`` in zone ``tz`` strictly after ``after``, in UTC."""
    return next(CronSim(cron, after.astimezone(ZoneInfo(tz)))).astimezone(UTC)


def check(cron: object, tz: object, catch_up: object, key: object) -> None:
    """Refuse a bad key, cron expression, time zone or catch-up policy."""
    if not isinstance(key, str) or not key or len(key) > 255:
        raise InvalidArgument(f"key must be a non-empty str of at most 255 characters, got {key!r}")
    if catch_up not in CATCH_UP:
        raise InvalidArgument(
            f"catch_up={catch_up!r}: use 'skip' (missed runs are dropped), 'once' (they run "
            "once) or 'all' (each runs)"
        )
    where = zone(tz)
    if not isinstance(cron, str) or len(cron) > 255:
        raise InvalidArgument(f"cron must be a cron expression string, got {cron!r}")
    try:
        next(CronSim(cron, datetime.now(where)))
    except (CronSimError, StopIteration, ValueError) as exc:
        problem = str(exc) or "it never matches"
        raise InvalidArgument(
            f"invalid cron expression {cron!r} ({problem}): five fields, minute hour "
            "day-of-month month day-of-week, like '0 2 * * *' (02:00 every day)"
        ) from None


# -- defining, pausing, resuming --------------------------------------------------------------


def define(services: Services, key: str, class_name: str, args: list[Any],
           kwargs: dict[str, Any], cron: str, tz: str, catch_up: str) -> ScheduleRow:  # fmt: skip
    """Create the schedule ``key``, or change it. A change keeps the runs already planned and
    never plans one of them again: the next run is the first time after both now and the last
    run planned."""
    storage, at = services.storage, now()
    while True:
        old = storage.get_schedule(key)
        start = at if old is None or old.last_run_at is None else max(at, old.last_run_at)
        row = ScheduleRow(key, class_name, args, kwargs, cron, tz, catch_up,
                          next_time(cron, tz, start), at, at)  # fmt: skip
        if old is not None:
            if (old.cron, old.tz) == (cron, tz):
                row.next_run_at = old.next_run_at  # a run already due stays due
            row.created_at, row.paused_at = old.created_at, old.paused_at
            row.last_run_at, row.last_plan_id = old.last_run_at, old.last_plan_id
        with storage.transaction():
            if storage.save_schedule(row, None if old is None else old.revision):
                storage.notify(["s *"])
                return row


def pause(services: Services, key: str, paused: bool) -> ScheduleRow:
    """Pause a schedule (no run is planned until it is resumed) or resume it: its next run is
    the first time after now (runs whose time passed while it was paused are not planned)."""
    storage, at = services.storage, now()
    while True:
        old = storage.get_schedule(key)
        if old is None:
            raise UnknownSchedule(key)
        if (old.paused_at is not None) == paused:
            return old
        row = replace(old, paused_at=at if paused else None, updated_at=at)
        if not paused:
            row.next_run_at = next_time(row.cron, row.tz, at)
        with storage.transaction():
            if storage.save_schedule(row, old.revision):
                storage.notify(["s *"])
                return row


# -- planning due runs -------------------------------------------------------------------------


def due_runs(row: ScheduleRow, at: datetime) -> tuple[list[datetime], datetime]:
    """The times of the runs to plan now for ``row`` (its catch-up policy applied) and the
    time of the run after them."""
    if row.catch_up == "all":
        times: list[datetime] = []
        t = row.next_run_at
        while t <= at and len(times) < RUNS_PER_LOOK:
            times.append(t)
            t = next_time(row.cron, row.tz, t)
        return times, t
    latest = _latest(row, at)
    following = next_time(row.cron, row.tz, at)
    if row.catch_up == "skip" and at - latest > GRACE:
        return [], following
    return [latest], following


def _latest(row: ScheduleRow, at: datetime) -> datetime:
    """The last time of the schedule at or before ``at`` (its next run is due by then)."""
    last, t = row.next_run_at, row.next_run_at
    for _ in range(SCAN):
        if t > at:
            return last
        last, t = t, next_time(row.cron, row.tz, t)
    # a frequent schedule missed for long: ask the library backwards from ``at``
    local = at.astimezone(ZoneInfo(row.tz))
    local = local.replace(microsecond=max(1, local.microsecond))  # so that ``at`` itself counts
    return next(CronSim(row.cron, local, reverse=True)).astimezone(UTC)


def plan_due(services: Services, plan: Plan, at: datetime) -> int:
    """Plan the runs due at ``at`` of every active schedule whose action this world can
    import, each exactly once across worlds; how many runs this world planned."""
    planned = 0
    for row in services.storage.due_schedules(at):
        try:
            cls = registry.resolve(row.action_class)
        except UnknownActionClass:
            log.debug("schedule %r: cannot import %s here", row.key, row.action_class)
            continue
        try:
            planned += _runs(services, plan, cls, row, at)
        except Exception:  # one broken schedule must not keep the others from running
            log.exception("schedule %r: planning its runs failed; trying again later", row.key)
    return planned


def _runs(services: Services, plan: Plan, cls: type, row: ScheduleRow, at: datetime) -> int:
    storage = services.storage
    times, following = due_runs(row, at)
    if not times:  # only missed runs, dropped ("skip"): move on to the next time
        claimed = replace(row, next_run_at=following, updated_at=at)
        with storage.transaction():
            storage.save_schedule(claimed, row.revision)
        log.info("schedule %r: missed runs skipped; next at %s", row.key, following.isoformat())
        return 0
    planned = 0
    for i, run_at in enumerate(times):
        after = times[i + 1] if i + 1 < len(times) else following
        claimed = replace(row, next_run_at=after, last_run_at=run_at, updated_at=at)
        hand_off = RequestRow("", "execute", {}, at, None, services.id)
        try:
            store = _store(services, row, claimed)
            _, failure = plan(
                cls, tuple(row.args), dict(row.kwargs), hand_off=hand_off, store=store
            )
        except ConcurrentModification:
            return planned  # another world has this schedule's runs: it goes on with them
        planned += 1
        if failure is not None:
            log.warning("schedule %r: the run of %s failed to plan: %s", row.key, run_at, failure)
        row = claimed
    return planned


def _store(services: Services, row: ScheduleRow, claimed: ScheduleRow) -> Callable[[NewPlan], None]:
    """Stores a run's plan together with the claim of its run, or raises
    :class:`ConcurrentModification` (another world planned it, or the schedule changed)."""
    storage = services.storage
    expect = row.revision

    def store(new: NewPlan) -> None:
        assert claimed.last_run_at is not None
        claimed.last_plan_id = new.plan.id
        detail = {"schedule": row.key, "run_at": claimed.last_run_at.isoformat()}
        new.history.append(HistoryRow(new.plan.id, now(), "planned by schedule", None,
                                      services.id, detail))  # fmt: skip
        with storage.transaction():
            if not storage.save_schedule(claimed, expect):
                raise ConcurrentModification(f"schedule {row.key!r}: its run was planned first")
            storage.insert_plan(new)

    return store
