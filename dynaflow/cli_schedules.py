"""The ``dynaflow`` commands for plans that start later: ``plans reschedule`` (a delayed or
chained plan) and ``schedules list|pause|resume|remove`` (recurring plans). They use a client
world: they change rows, and executor worlds act on them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from rich.text import Text

from dynaflow.cli_support import _console, _fail, _open, emit_json, json_option, url_option
from dynaflow.render import safe, short_name
from dynaflow.render_json import iso
from dynaflow.render_tables import Column, print_rows
from dynaflow.schedules import Schedule

#: ``+90s``, ``+15m``, ``+2h``, ``+1d`` (from now)
_RELATIVE = re.compile(r"^\+(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_time(value: str, option: str) -> datetime | timedelta:
    """An ISO 8601 time with its offset (``2030-01-31T02:00:00+01:00``, ``...Z``), ``now``, or
    ``+N`` seconds/minutes/hours/days from now (``+15m``)."""
    if value == "now":
        return timedelta(0)
    relative = _RELATIVE.match(value)
    if relative:
        return timedelta(**{_UNITS[relative.group(2)]: float(relative.group(1))})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        _fail(
            f"{option} {value!r}: give an ISO 8601 time with its offset "
            "(2030-01-31T02:00:00+01:00, or ...Z for UTC), 'now', or +N[s|m|h|d] from now"
        )
    if parsed.tzinfo is None:
        _fail(
            f"{option} {value!r} has no time zone, so it names no instant: add its offset "
            "(+01:00, or Z for UTC)"
        )
    return parsed


@click.command("reschedule")
@click.argument("plan_id")
@url_option
@click.option("--at", "start_at", metavar="TIME", help="When it starts (ISO 8601, now, +15m).")
@click.option("--before", "start_before", metavar="TIME", help="Its new deadline.")
@click.option("--no-deadline", is_flag=True, help="Remove its deadline.")
def reschedule_plan(
    plan_id: str, url: str, start_at: str | None, start_before: str | None, no_deadline: bool
) -> None:
    """Change when a scheduled (delayed or chained) plan (PLAN_ID whole, or a unique prefix)
    starts, or its deadline."""
    if start_at is None and start_before is None and not no_deadline:
        _fail("give --at TIME, --before TIME or --no-deadline")
    if start_before is not None and no_deadline:
        _fail("give either --before TIME or --no-deadline, not both")
    at = None if start_at is None else parse_time(start_at, "--at")
    before = ... if start_before is None else parse_time(start_before, "--before")
    with _open(url) as world:
        plan_id = world.resolve_plan_id(plan_id)
        row = world.reschedule(plan_id, start_at=at, start_before=None if no_deadline else before)
    deadline = row.start_before.isoformat() if row.start_before else "none"
    _console().print(
        safe(f"plan {plan_id}: starts at {row.start_at.isoformat()} (deadline {deadline})"),
        soft_wrap=True,
    )


@click.group()
def schedules() -> None:
    """Recurring plans: their next runs; pause, resume or remove one."""


@schedules.command("list")
@url_option
@json_option
def list_schedules(url: str, as_json: bool) -> None:
    """Each schedule: its action, cron expression and time zone, catch-up policy, next run
    (in its time zone), and last run with its plan."""
    with _open(url) as world:
        rows = world.schedules()
        now = world.now()
    if as_json:
        emit_json({"at": iso(now), "schedules": [schedule_json(row) for row in rows]})
        return
    if not rows:
        _console().print("no schedules")
        return
    columns = (
        Column("key", key=True),
        Column("action"),
        Column("cron"),
        Column("tz"),
        Column("catch-up"),
        Column("next run"),
        Column("last run"),
        Column("last plan", key=True),
        Column("", named=False),
    )
    lines = [
        (
            safe(row.key),
            safe(short_name(row.action_class)),
            safe(row.cron),
            safe(row.tz),
            safe(row.catch_up),
            _next(row, now),
            safe(_when(row.last_run_at)),
            safe(row.last_plan_id or ""),
            Text("paused", style="bold yellow") if row.paused else Text("active", style="green"),
        )
        for row in rows
    ]
    print_rows(_console(), columns, lines)


def schedule_json(row: Schedule) -> dict[str, Any]:
    """A schedule as ``schedules list --json`` gives it (times in UTC; ``tz`` is its zone)."""
    return {
        "key": row.key,
        "action_class": row.action_class,
        "args": list(row.args),
        "kwargs": row.kwargs,
        "cron": row.cron,
        "tz": row.tz,
        "catch_up": row.catch_up,
        "next_run_at": iso(row.next_run_at),
        "paused": row.paused,
        "last_run_at": iso(row.last_run_at),
        "last_plan_id": row.last_plan_id,
    }


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M %Z") if value is not None else ""


def _next(row: Schedule, now: datetime) -> Text:
    text = _when(row.next_run_at)
    if row.paused:
        return Text(text, style="dim")
    if row.next_run_at.astimezone(UTC) < now:  # due, and no executor world planned it yet
        late = now - row.next_run_at.astimezone(UTC)
        return Text(f"{text} (due {late.total_seconds():.0f}s ago)", style="bold red")
    return Text(text)


@schedules.command("pause")
@click.argument("key")
@url_option
def pause_schedule(key: str, url: str) -> None:
    """Plan no run of the schedule until it is resumed."""
    with _open(url) as world:
        world.pause_schedule(key)
    _console().print(safe(f"schedule {key}: paused"))


@schedules.command("resume")
@click.argument("key")
@url_option
def resume_schedule(key: str, url: str) -> None:
    """Plan its runs again, from the next time after now."""
    with _open(url) as world:
        row = world.resume_schedule(key)
    _console().print(safe(f"schedule {key}: active; next run {_when(row.next_run_at)}"))


@schedules.command("remove")
@click.argument("key")
@url_option
def remove_schedule(key: str, url: str) -> None:
    """Delete the schedule (the runs it planned stay)."""
    with _open(url) as world:
        world.unschedule(key)
    _console().print(safe(f"schedule {key}: removed"))


def register(main: click.Group, plans: click.Group) -> None:
    """Add these commands to the ``dynaflow`` command."""
    main.add_command(schedules)
    plans.add_command(reschedule_plan)
