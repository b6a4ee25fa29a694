"""The ``dynaflow`` command: run the demo, migrate the database, list, show, watch and operate
plans, look at the cluster. docs/cli.md describes every command.

Every command takes ``--url`` (also read from ``$DYNAFLOW_URL``). Errors dynaflow raises for
things a user can get wrong are printed as one red line, without a traceback; the exit code says
what happened (:class:`~dynaflow.cli_support.Exit`). Passwords in database URLs are shown as
``***``, and stored text (labels, errors, world ids) is printed with its control characters
escaped. Read commands print JSON with ``--json``.
"""

from __future__ import annotations

import sys

import click
from click.core import ParameterSource

from dynaflow.cli_cluster import queues, status, worker, worlds
from dynaflow.cli_console import console
from dynaflow.cli_operators import COMMANDS as OPERATOR_COMMANDS
from dynaflow.cli_plans import plans
from dynaflow.cli_prune import register as register_prune
from dynaflow.cli_schedules import register as register_schedules
from dynaflow.cli_support import (
    Exit,
    _console,
    _fail,
    _Group,
    _require_existing_file,
    emit_json,
    hint,
    json_option,
    url_arg,
    url_option,
)
from dynaflow.cli_watch import watch_plan
from dynaflow.render import safe
from dynaflow.urls import display_url

DEMO_URL = "sqlite:///dynaflow-demo.db"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dynaflow")
def main() -> None:
    """dynaflow: durable plan-then-execute workflows.

    Every command takes --url (default: $DYNAFLOW_URL, else sqlite:///dynaflow.db). Exit codes:
    0 done (a plan followed to its end ended well), 1 the plan ended paused or stopped with an
    error or cancelled, 2 bad input (usage, unknown or ambiguous id, an action the plan's state
    does not allow), 3 the database or cluster could not do it, 4 --timeout ran out."""


# -- demo ------------------------------------------------------------------------------------


@main.command()
@url_option(
    default=DEMO_URL,
    help="Database to plan and run the demo in, its own table too (default: $DYNAFLOW_URL, "
    f"else {DEMO_URL}).",
)
@click.option("--db", "db_url", hidden=True, metavar="URL", help="Deprecated: use --url.")
@click.option("--workers", default=4, show_default=True, type=click.IntRange(min=1))
@click.pass_context
def demo(ctx: click.Context, url: str, db_url: str | None, workers: int) -> None:
    """Plan and run CreateInfrastructure: concurrent machines, an output reference, a
    subscribed plugin action and a finalize writing the application's own table."""
    from dynaflow.cli_support import _URL_META
    from dynaflow.demo import run_demo

    if db_url is not None:
        if ctx.get_parameter_source("url") is ParameterSource.COMMANDLINE and url != db_url:
            _fail("give the database once: --url URL (--db is its old name)")
        _console(stderr=True).print("warning: --db is deprecated; use --url", style="yellow")
        url = db_url
        ctx.meta[_URL_META] = (url, ParameterSource.COMMANDLINE)
    if not run_demo(url, workers=workers, console=_console(), url_arg=url_arg(url)):
        sys.exit(Exit.PLAN_FAILED)


# -- db --------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema migrations."""


@db.command()
@url_option
def upgrade(url: str) -> None:
    """Migrate the database schema to the newest version (an SQLite file is created)."""
    from dynaflow.persistence import migrate

    before = migrate.current(url)
    migrate.upgrade(url)
    after = migrate.current(url)
    change = (
        f"already at {after}"
        if before == after
        else f"upgraded from {before or '(empty)'} to {after}"
    )
    _console().print(safe(f"{display_url(url)}: {change}"), soft_wrap=True)


@db.command()
@url_option
@json_option
def current(url: str, as_json: bool) -> None:
    """Show the database's schema version and the newest one this code knows."""
    from dynaflow.persistence import migrate

    _require_existing_file(url)
    revision = migrate.current(url)
    head = migrate.head()
    if as_json:
        emit_json(
            {
                "url": display_url(url),
                "revision": revision,
                "head": head,
                "up_to_date": revision == head,
            }
        )
        return
    state = "up to date" if revision == head else f"needs {hint('db upgrade')}"
    _console().print(
        safe(f"{display_url(url)}: {revision or '(empty)'} (head {head}, {state})"),
        soft_wrap=True,
    )


# -- the rest ------------------------------------------------------------------------------------

main.add_command(plans)
plans.add_command(watch_plan)
for command in OPERATOR_COMMANDS:
    plans.add_command(command)
main.add_command(status)
main.add_command(queues)
main.add_command(worlds)
main.add_command(worker)
register_schedules(main, plans)
main.add_command(console)
register_prune(plans)


if __name__ == "__main__":
    main()
