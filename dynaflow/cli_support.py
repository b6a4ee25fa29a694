"""What the ``dynaflow`` commands share: the console, one-line errors, the ``--url`` and
``--import`` options, and opening a world for reading."""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.text import Text

from dynaflow.exceptions import DynaflowError
from dynaflow.render import printable
from dynaflow.urls import hide_passwords
from dynaflow.world import World

DEFAULT_URL = "sqlite:///dynaflow.db"
URL_HELP = "Database URL (default: $DYNAFLOW_URL, else sqlite:///dynaflow.db)."


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr, soft_wrap=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 120  # piped output: do not squeeze tables and trees into 80 columns
    return console


def _fail(message: str) -> NoReturn:
    """Print ``message`` as one red line (passwords hidden, control characters escaped) and exit
    with status 1."""
    line = printable(hide_passwords(message))
    _console(stderr=True).print(Text.assemble(("error: ", "bold red"), (line, "red")))
    sys.exit(1)


class _Group(click.Group):
    """A group that turns dynaflow's own errors into one red line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DynaflowError as exc:
            _fail(str(exc))


def url_option(function: Any) -> Any:
    return click.option(
        "--url",
        envvar="DYNAFLOW_URL",
        default=DEFAULT_URL,
        show_envvar=True,
        metavar="URL",
        help=URL_HELP,
    )(function)


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
            f"no database at {url}; `dynaflow demo --db {url}` or `dynaflow db upgrade --url "
            f"{url}` creates one, or pass --url (or set DYNAFLOW_URL)"
        )


def import_option(function: Any) -> Any:
    return click.option(
        "--import",
        "imports",
        multiple=True,
        metavar="MODULE",
        help="Import this module first (where your action classes are); repeatable.",
    )(function)


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
