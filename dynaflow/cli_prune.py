"""``dynaflow plans prune``: remove finished plans older than a duration, in batches, each its own
short transaction (see :mod:`dynaflow.retention`). Bad input (a duration it cannot read, a
result a finished plan cannot have) is a usage error, exit status 2, and nothing is removed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click
from rich.table import Table

from dynaflow.cli_support import _console, _open, emit_json, json_option, url_option
from dynaflow.exceptions import ConfigurationError
from dynaflow.render_json import iso
from dynaflow.retention import (
    BATCH,
    DURATIONS,
    MAX_BATCH,
    RESULTS,
    PruneReport,
    Retention,
    parse_duration,
)


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> timedelta:
    try:
        return parse_duration(value, "--older-than", DURATIONS)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc).removeprefix("--older-than: "), ctx, param) from None


@click.command("prune")
@click.option(
    "--older-than",
    required=True,
    metavar="DURATION",
    callback=_duration,
    help="Remove plans that ended longer ago than this: 30d, 12h, 90m, 45s, 2w, 1d12h.",
)
@click.option(
    "--result", type=click.Choice(RESULTS), help="Only plans that ended with this result."
)
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
@click.option(
    "--batch",
    default=BATCH,
    show_default=True,
    type=click.IntRange(1, MAX_BATCH),
    help="Plans removed per transaction.",
)
@json_option
@url_option
def prune_plans(
    older_than: timedelta,
    result: str | None,
    dry_run: bool,
    batch: int,
    as_json: bool,
    url: str,
) -> None:
    """Remove stopped plans that ended longer ago than --older-than, with their steps, history,
    events and logs. Plans in use are never removed: not stopped, the parent of a sub-plan
    that stays, or a plan a scheduled chained plan still waits for."""
    with _open(url) as world:
        report = world.prune(older_than, result=result, dry_run=dry_run, batch=batch)
    if as_json:
        emit_json({**report.to_json(), "cutoff": iso(report.cutoff)})  # as every JSON time
        return
    _print(report)


def _print(report: PruneReport) -> None:
    console = _console()
    console.print(str(report) + ("; nothing removed (--dry-run)" if report.dry_run else ""))
    if not report.plans:
        return
    table = Table(header_style="bold", box=None, pad_edge=False)
    table.add_column("table")
    table.add_column("would remove" if report.dry_run else "removed", justify="right")
    for name, count in report.rows.items():
        if count:
            table.add_row(name, str(count))
    console.print(table)


def _retention(ctx: click.Context, param: click.Parameter, value: str | None) -> Retention | None:
    if value is None:
        return None
    try:
        return Retention.checked(
            parse_duration(value, "--retention", DURATIONS), what="--retention"
        )
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc).removeprefix("--retention: "), ctx, param) from None


def retention_option(function: Any) -> Any:
    """``--retention DURATION``: a worker's ``World(retention=...)``."""
    return click.option(
        "--retention",
        metavar="DURATION",
        callback=_retention,
        help="Remove plans that ended longer ago than this (30d, 12h, ...), every 5 minutes.",
    )(function)


def register(plans: click.Group) -> None:
    """Add ``prune`` to the ``dynaflow plans`` group."""
    plans.add_command(prune_plans)
