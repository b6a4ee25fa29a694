"""What the ``dynaflow`` commands share: the console, one-line errors and the exit codes, the
``--url``, ``--import`` and ``--json`` options, hints that can be pasted as they are, plan id
prefixes, and opening a world for reading."""

from __future__ import annotations

import os
import re
import shlex
import sys
from enum import IntEnum
from typing import Any, NoReturn

import click
from click.core import ParameterSource
from rich.console import Console
from rich.text import Text

from dynaflow.exceptions import (
    ConfigurationError,
    DynaflowError,
    EventRejected,
    IllegalTransition,
    InvalidState,
    UnknownPlan,
    UnknownStep,
)
from dynaflow.execution_plan import ExecutionPlan
from dynaflow.render import printable
from dynaflow.render_json import dumps
from dynaflow.states import PlanResult, PlanState
from dynaflow.urls import display_url, hide_passwords
from dynaflow.world import World

DEFAULT_URL = "sqlite:///dynaflow.db"
URL_HELP = "Database URL (default: $DYNAFLOW_URL, else sqlite:///dynaflow.db)."
#: where the url option leaves the URL and where it came from, for the hints
_URL_META = "dynaflow.url"


class Exit(IntEnum):
    """The ``dynaflow`` command's exit codes (docs/cli.md)."""

    #: done; a plan followed to its end ended well (stopped with success or warning)
    OK = 0
    #: a plan followed to its end ended badly: paused, or stopped with error or cancelled
    PLAN_FAILED = 1
    #: bad input: usage, an unknown or ambiguous id, an action the plan's state does not allow
    BAD_INPUT = 2
    #: the database or the cluster could not do it (unreachable, schema, no executor world)
    UNAVAILABLE = 3
    #: the plan was still going when --timeout ran out
    TIMEOUT = 4
    #: interrupted (Ctrl-C)
    INTERRUPTED = 130


#: dynaflow's errors that mean the request was wrong (the rest: the database or the cluster);
#: with them every ``LookupError`` (an unknown plan, step, world, schedule...) and
#: ``ValueError`` or ``TypeError`` (a bad value) dynaflow raises
BAD_INPUT: tuple[type[Exception], ...] = (
    LookupError,
    ValueError,
    TypeError,
    InvalidState,
    IllegalTransition,
    ConfigurationError,
    EventRejected,
)


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr, soft_wrap=stderr, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 120  # piped output: do not squeeze tables and trees into 80 columns
    return console


def _fail(message: str, code: int = Exit.BAD_INPUT) -> NoReturn:
    """Print ``message`` as one red line (passwords hidden, control characters escaped) and exit
    with ``code``."""
    line = printable(hide_passwords(message))
    _console(stderr=True).print(Text.assemble(("error: ", "bold red"), (line, "red")))
    sys.exit(code)


class _Group(click.Group):
    """A group that turns dynaflow's own errors into one red line and an exit code that says
    which kind of error it was, and Ctrl-C into exit code 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DynaflowError as exc:
            code = Exit.BAD_INPUT if isinstance(exc, BAD_INPUT) else Exit.UNAVAILABLE
            _fail(error_message(exc), code)
        except KeyboardInterrupt:
            _console(stderr=True).print("interrupted", style="dim")
            sys.exit(Exit.INTERRUPTED)


def error_message(exc: DynaflowError) -> str:
    """What the command line says for ``exc``: its hints as commands to paste. (An error
    another world answered with carries its message only.)"""
    plan_id = getattr(exc, "plan_id", None)
    if isinstance(exc, UnknownPlan) and plan_id is not None:
        return (
            f"no execution plan with id {plan_id!r} in {display_url(given_url())}; "
            f"{hint('plans list')} lists the plans there"
        )
    if isinstance(exc, UnknownStep) and plan_id is not None:
        return (
            f"plan {plan_id} has no step {exc.step_id!r}; "
            f"{hint(f'plans show {plan_id}')} shows its steps"
        )
    return complete_hints(str(exc))


# -- the URL, and hints that name it ------------------------------------------------------------


def _remember_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    ctx.meta[_URL_META] = (value, ctx.get_parameter_source(param.name or "url"))
    return value


def url_option(function: Any = None, *, default: str = DEFAULT_URL, help: str = URL_HELP) -> Any:
    """The ``--url`` option, also read from ``$DYNAFLOW_URL`` (``@url_option``, or
    ``@url_option(default=..., help=...)``)."""
    option = click.option(
        "--url",
        envvar="DYNAFLOW_URL",
        default=default,
        show_envvar=True,
        metavar="URL",
        help=help,
        callback=_remember_url,
    )
    return option if function is None else option(function)


def given_url() -> str:
    """The URL this command was given (``--url``, ``$DYNAFLOW_URL`` or the default)."""
    ctx = click.get_current_context(silent=True)
    stored = ctx.meta.get(_URL_META) if ctx is not None else None
    return stored[0] if stored else os.environ.get("DYNAFLOW_URL") or DEFAULT_URL


def url_arg(url: str | None = None) -> str:
    """The ``--url`` option of a command to paste: ``--url "$DYNAFLOW_URL"`` when the URL came
    from the environment, else the URL itself, quoted for the shell (a password shows as
    ``***``: dynaflow never prints one)."""
    ctx = click.get_current_context(silent=True)
    stored = ctx.meta.get(_URL_META) if ctx is not None else None
    url = url if url is not None else given_url()
    if stored and stored[0] == url and stored[1] is ParameterSource.ENVIRONMENT:
        return '--url "$DYNAFLOW_URL"'
    return "--url " + shlex.quote(display_url(url))


def hint(command: str, *, url: str | None = None, then: str = "") -> str:
    """```dynaflow COMMAND --url URL THEN```: a command to paste, on this command's database
    (or ``url``'s), with more options after the URL."""
    return f"`dynaflow {command} {url_arg(url)}{' ' + then if then else ''}`"


_HINT = re.compile(r"`dynaflow ([^`]*)`")


def complete_hints(message: str) -> str:
    """``message`` with each ```dynaflow ...``` it suggests given this command's ``--url``."""

    def complete(match: re.Match[str]) -> str:
        command = match.group(1)
        if "--url" in command or command.startswith("-"):
            return match.group(0)
        return hint(command)

    return _HINT.sub(complete, message)


# -- options -----------------------------------------------------------------------------------


def json_option(function: Any) -> Any:
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print JSON (the shape docs/cli.md describes) instead of text.",
    )(function)


def emit_json(data: Any) -> None:
    click.echo(dumps(data))


def import_option(function: Any) -> Any:
    return click.option(
        "--import",
        "imports",
        multiple=True,
        metavar="MODULE",
        help="Import this module first (where your action classes are); repeatable.",
    )(function)


# -- worlds, plans -----------------------------------------------------------------------------


def _open(url: str) -> World:
    """A client world for reading."""
    _require_existing_file(url)
    return World(url, executor=None)


def _require_existing_file(url: str) -> None:
    """Reading commands must not create an empty SQLite file where none was."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # World reports a malformed URL itself
    if parsed.get_backend_name() != "sqlite":
        return
    path = parsed.database or ""
    if path and path != ":memory:" and not path.startswith("file:") and not os.path.exists(path):
        _fail(
            f"no database at {url}: check --url (or DYNAFLOW_URL); {hint('db upgrade', url=url)} "
            f"creates an empty one, {hint('demo', url=url)} one with the demo's plan"
        )


def plan_exit(plan: ExecutionPlan) -> Exit:
    """How the plan ended, as an exit code: OK, PLAN_FAILED, or TIMEOUT while it goes on."""
    if plan.state == PlanState.STOPPED and plan.result in (PlanResult.SUCCESS, PlanResult.WARNING):
        return Exit.OK
    if plan.state in (PlanState.STOPPED, PlanState.PAUSED):
        return Exit.PLAN_FAILED
    return Exit.TIMEOUT


def module_of(action_class: str) -> str:
    """The module an action class name lives in (for ``--import``)."""
    return action_class.rpartition(".")[0] or action_class


def _imports(imports: tuple[str, ...]) -> None:
    # modules beside the command, as `python -m` would find them
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in imports:
        _import(module)


def _import(module: str) -> None:
    """Import a module named by ``--import``; any failure is one line, never a traceback."""
    import importlib

    try:
        importlib.import_module(module)
    except Exception as exc:
        name = exc.name if isinstance(exc, ModuleNotFoundError) else None
        if name is not None and (module == name or module.startswith(name + ".")):
            fix = "check the name, and run from its folder or add that folder to PYTHONPATH"
        else:  # the module itself (or something it imports) raised
            fix = f"fix the module; `python -c 'import {module}'` shows the traceback"
        _fail(f"cannot import {module!r} (--import): {type(exc).__name__}: {exc}; {fix}")
