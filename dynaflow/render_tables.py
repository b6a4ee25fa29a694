"""The tables the ``dynaflow`` commands print — plans, a plan's history, worlds, queues, waiting
requests — laid out so that ids are always shown whole.

A table is printed as a table when it fits the terminal's width as it is; in a narrower
terminal each row becomes a block instead: its ids on a line of their own (never cut, never
wrapped by rich), then its other values. Everything read from the database goes through
:func:`~dynaflow.render.safe`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from dynaflow.execution_plan import HistoryRecord, PlanRecord, WorldRecord
from dynaflow.persistence.base import RequestRow
from dynaflow.persistence.reports import StepLogLine
from dynaflow.render import PLAN_STYLES, format_duration, safe, short_name, state_text

Cell = Text | str


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    #: shown whole on the first line of a block, in a narrow terminal (ids)
    key: bool = False
    justify: str = "left"
    style: str = ""
    #: in a block, the value is shown after its header ("started 2026-...")
    named: bool = True
    #: long text (a label, an error): wrapped within the table rather than widening it
    wrap: bool = False


#: the least width a wrapped column keeps in a table
WRAP_WIDTH = 24


def print_rows(
    console: Console, columns: Sequence[Column], rows: Sequence[Sequence[Cell]], title: str = ""
) -> None:
    """``rows`` under ``columns``: a table if its columns fit ``console`` whole (the wrapped
    ones at least :data:`WRAP_WIDTH` wide), else one block per row."""
    if _fits(console, columns, rows):
        table = _table(columns, title)
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    if title:
        console.print(Text(title, style="italic"))
    for row in rows:
        cells = list(zip(columns, row, strict=True))
        first = Text("  ").join(_text(c) for column, c in cells if column.key and c)
        console.print(first, soft_wrap=True)  # never wrapped, never cut
        rest = Text(" · ", style="dim").join(
            _named(column, c) for column, c in cells if not column.key and c
        )
        if rest:
            console.print(Text("  ").append_text(rest), overflow="fold")


def _table(columns: Sequence[Column], title: str = "") -> Table:
    table = Table(
        title=title or None,
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
    )
    for column in columns:
        table.add_column(
            column.header,
            no_wrap=not column.wrap,
            overflow="fold",
            justify=column.justify,  # type: ignore[arg-type]
            style=column.style,
        )
    return table


def _fits(console: Console, columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> bool:
    """Whether the table's unwrapped columns fit whole, beside its wrapped ones at their
    least width."""
    kept = [i for i, column in enumerate(columns) if not column.wrap]
    table = _table([columns[i] for i in kept])
    for row in rows:
        table.add_row(*(row[i] for i in kept))
    unbounded = console.options.update(max_width=1_000_000)
    width = Measurement.get(console, unbounded, table).maximum
    for i, column in enumerate(columns):
        if column.wrap:
            cells = [_text(column.header), *(_text(row[i]) for row in rows)]
            natural = max(Measurement.get(console, unbounded, c).maximum for c in cells)
            width += min(natural, WRAP_WIDTH) + 3  # its padding and a separator
    return width <= console.width


def _text(cell: Cell) -> Text:
    return cell if isinstance(cell, Text) else Text(cell)


def _named(column: Column, cell: Cell) -> Text:
    text = _text(cell).copy()
    if column.style and not text.style:
        text.stylize(column.style)
    if column.named and column.header:
        return Text(f"{column.header} ", style="dim").append_text(text)
    return text


def local_time(at: datetime | None, *, seconds: bool = True, millis: bool = False) -> str:
    """``at`` in the local time zone, with its date: ``2026-12-01 18:24:44``."""
    if at is None:
        return ""
    shown = at.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f" if millis else "%Y-%m-%d %H:%M:%S")
    if millis:
        return shown[:-3]
    return shown if seconds else shown[:-3]


def utc_offset() -> str:
    """The local time zone's offset, as the tables' headers name it (``UTC+01:00``)."""
    offset = datetime.now().astimezone().strftime("%z")
    return f"UTC{offset[:3]}:{offset[3:]}"


# -- plans -------------------------------------------------------------------------------------

PLAN_COLUMNS = (
    Column("id", key=True, style="dim"),
    Column("label", style="bold", named=False, wrap=True),
    Column("state", named=False),
    Column("started"),
    Column("duration", justify="right", style="cyan", named=False),
)


def print_plans(
    console: Console, plans: Sequence[PlanRecord], durations: Mapping[str, float | None]
) -> None:
    """Plan rows as ``dynaflow plans list`` prints them (``durations`` by plan id)."""
    rows = []
    for plan in plans:
        started = plan.started_at or plan.created_at
        rows.append(
            (
                safe(plan.id),
                safe(plan.label),
                state_text(plan.state, plan.result),
                local_time(started),
                format_duration(durations.get(plan.id)),
            )
        )
    print_rows(console, PLAN_COLUMNS, rows)


# -- a plan's history ----------------------------------------------------------------------------


def print_history(
    console: Console, history: Sequence[HistoryRecord], step_names: Mapping[int, str]
) -> None:
    """The plan's history, oldest first: when (date and time), what, which step, which world,
    and the details (an error's class and message, a retry's time)."""
    columns = (
        Column(f"at ({utc_offset()})", key=True),
        Column("event", key=True),
        Column("step", key=True),
        Column("world", key=True),
        Column("detail", named=False, wrap=True),
    )
    rows = []
    for row in history:
        step = ""
        if row.step_id is not None:
            step = f"{row.step_id} {short_name(step_names.get(row.step_id, ''))}".rstrip()
        rows.append(
            (
                local_time(row.at, millis=True),
                Text(row.event, style=_event_style(row.event)),
                safe(step),
                safe(row.world_id or ""),
                detail_text(row.detail),
            )
        )
    print_rows(console, columns, rows, title="history")


def print_logs(
    console: Console, lines: Sequence[StepLogLine], step_names: Mapping[int, str]
) -> None:
    """What the plan's steps logged, by step and line number, with local times."""
    if not lines:
        console.print("log: nothing logged", style="dim")
        return
    columns = (
        Column(f"at ({utc_offset()})", key=True),
        Column("step", key=True),
        Column("#", key=True),
        Column("message", named=False, wrap=True),
    )
    rows = [
        (
            local_time(line.at, millis=True),
            safe(f"{line.step_id} {short_name(step_names.get(line.step_id, ''))}".rstrip()),
            str(line.seq),
            safe(line.message),
        )
        for line in lines
    ]
    print_rows(console, columns, rows, title="log")


def _event_style(event: str) -> str:
    word = event.rsplit(" ", 1)[-1]
    return {"error": "red", "paused": "bold red", "cancelled": "red", "success": "green"}.get(
        word, PLAN_STYLES.get(word, "")
    )


def detail_text(detail: Mapping[str, Any] | None) -> Text:
    """A history row's details, short: ``RuntimeError: boom; attempt 1, again at 18:24:45``."""
    if not detail:
        return Text("")
    parts: list[str] = []
    error = detail.get("error")
    if isinstance(error, Mapping):
        parts.append(f"{error.get('class_name', '?')}: {error.get('message', '')}")
    if "attempt" in detail:
        parts.append(f"attempt {detail['attempt']}")
    if "retry_at" in detail:
        try:
            parts.append(f"again at {local_time(datetime.fromisoformat(detail['retry_at']))}")
        except (TypeError, ValueError):
            parts.append(f"again at {detail['retry_at']}")
    for key, value in detail.items():
        if key not in ("error", "attempt", "retry_at"):
            parts.append(f"{key}={value}")
    return safe("; ".join(parts), "red" if error else "")


# -- worlds, queues, requests --------------------------------------------------------------------


def print_worlds(console: Console, worlds: Sequence[WorldRecord], plans: Mapping[str, int]) -> None:
    """Executor worlds with their heartbeat age (stale ones marked) and running plans."""
    columns = (
        Column("world", key=True),
        Column("host"),
        Column("pid"),
        Column("queues"),
        Column("started"),
        Column("heartbeat age"),
        Column("plans"),
        Column("", named=False),
    )
    rows = [
        (
            safe(row.id),
            safe(row.hostname or ""),
            safe(row.pid or ""),
            safe(", ".join(f"{q}={n}" for q, n in (row.queues or {}).items())),
            local_time(row.started_at),
            f"{row.heartbeat_age:.1f}s",
            str(plans.get(row.id, 0)),
            Text("STALE", style="bold red") if row.stale else Text("alive", style="green"),
        )
        for row in worlds
    ]
    print_rows(console, columns, rows, title="worlds")


def print_queues(console: Console, overview: Mapping[str, Mapping[str, Any]]) -> None:
    """Each queue: its limit, the live worlds serving it, its run steps by state."""
    columns = (
        Column("queue", key=True),
        Column("limit"),
        Column("served by"),
        Column("pending"),
        Column("running"),
        Column("suspended"),
        Column("error"),
        Column("done"),
    )
    rows = []
    for name, row in overview.items():
        served = ", ".join(f"{w}={n}" for w, n in row["worlds"].items()) or "nobody"
        done = sum(row.get(state, 0) for state in ("success", "skipped", "cancelled"))
        rows.append(
            (
                safe(name),
                str(row["limit"]) if row["limit"] else "-",
                Text(served, style="red") if not row["worlds"] else safe(served),
                str(row.get("pending", 0)),
                str(row.get("running", 0)),
                str(row.get("suspended", 0)),
                str(row.get("error", 0)),
                str(done),
            )
        )
    print_rows(console, columns, rows, title="queues")


def print_requests(console: Console, waiting: Sequence[RequestRow], at: datetime) -> None:
    """Requests no executor world has answered, with why each world declined them."""
    columns = (
        Column("request", key=True),
        Column("plan", key=True),
        Column("kind"),
        Column("for"),
        Column("taken by"),
        Column("age"),
        Column("declined because", wrap=True),
    )
    rows = []
    for r in waiting:
        declined = "; ".join(f"{w}: {why}" for w, why in (r.declined or {}).items())
        rows.append(
            (
                str(r.id),
                safe(r.plan_id),
                safe(r.kind),
                safe(r.world_id or "any world"),
                safe(r.taken_by or ""),
                f"{max(0.0, (at - r.created_at).total_seconds()):.0f}s",
                safe(declined),
            )
        )
    print_rows(console, columns, rows, title="waiting requests")
