"""What the ``dynaflow`` command prints is safe for the operator's terminal: stored text cannot
drive it, database passwords are never shown, and a module given to ``--import`` that fails is
one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynaflow import Action, World

#: clears the screen, plants an OSC 8 hyperlink, returns the carriage and styles a lie
HOSTILE = "\x1b[2J\x1b[H\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\\r[bold red]ALL GOOD[/]"
#: how the CLI must show it: every control character escaped, the markup as written
SHOWN = "\\x1b[2J\\x1b[H\\x1b]8;;http://evil\\x1b\\click\\x1b]8;;\\x1b\\\\r[bold red]ALL GOOD[/]"
WORLD_ID = "[bold red]ALL GOOD[/]\x1b[2J"
#: any C0 or C1 control character but newline
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


class Hostile(Action):
    label = f"deploy {HOSTILE}"

    def plan(self) -> None:
        self.plan_action(Fails)
        self.plan_action(EvilName)

    def run(self) -> None:
        pass


class Fails(Action):
    def run(self) -> None:
        raise RuntimeError(f"boom {HOSTILE}")


# a stored class name is stored text too
EvilName = type("Evil\x1b[31mName", (Action,), {"run": lambda self: None})


def dynaflow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250", "PYTHONPATH": str(cwd)}
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)  # rich would style the output with escape sequences of its own
    return subprocess.run(
        [sys.executable, "-m", "dynaflow.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[tuple[str, str, World]]:
    """A plan paused on a step whose error, like the plan's label, holds escape sequences and
    markup, run by a world (still open) whose id holds markup: (url, plan id, world)."""
    url = f"sqlite:///{tmp_path / 'hostile.db'}"
    with World(url, executor="inline", world_id=WORLD_ID) as world:
        plan = world.trigger(Hostile).wait(10)
        assert (plan.state, plan.result) == ("paused", "error")
        yield url, plan.id, world


def assert_terminal_safe(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    found = sorted({repr(c) for c in CONTROL.findall(output)})
    assert not found, f"raw control characters reach the terminal: {found}"
    return output


def test_plans_list_shows_a_hostile_label_escaped(
    hostile: tuple[str, str, World], tmp_path: Path
) -> None:
    url, plan_id, _ = hostile
    output = assert_terminal_safe(dynaflow("plans", "list", "--url", url, cwd=tmp_path))
    assert plan_id in output
    assert f"deploy {SHOWN}" in output


def test_plans_show_escapes_labels_errors_tracebacks_classes_and_world_ids(
    hostile: tuple[str, str, World], tmp_path: Path
) -> None:
    url, plan_id, _ = hostile
    result = dynaflow(
        "plans", "show", plan_id, "--url", url, "--history", "--traceback", cwd=tmp_path
    )
    output = assert_terminal_safe(result)
    assert output.startswith(f"deploy {SHOWN}  paused / error")
    assert f"RuntimeError: boom {SHOWN}" in output  # the error line
    assert re.search(rf"raise RuntimeError\(.*\)\n.*RuntimeError: boom {re.escape(SHOWN)}", output)
    assert "Evil\\x1b[31mName" in output  # the class name
    assert "[bold red]ALL GOOD[/]\\x1b[2J" in output  # the world id in the history, as written


def test_status_shows_a_hostile_world_id_escaped(
    hostile: tuple[str, str, World], tmp_path: Path
) -> None:
    url, _, _ = hostile
    output = assert_terminal_safe(dynaflow("status", "--url", url, cwd=tmp_path))
    assert "[bold red]ALL GOOD[/]\\x1b[2J" in output


@pytest.mark.parametrize("command", [("plans", "list"), ("db", "current"), ("db", "upgrade")])
def test_a_password_in_the_query_is_never_printed(command: tuple[str, ...], tmp_path: Path) -> None:
    url = "postgresql+psycopg://dynaflow@127.0.0.1:1/nowhere?password=s3cret&connect_timeout=2"
    result = dynaflow(*command, "--url", url, cwd=tmp_path)
    assert result.returncode == 3
    assert "cannot open the database" in result.stderr
    assert "password=***" in result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


BROKEN_APP = """
import configparser

raise RuntimeError("no [deploy] section in app.ini")
"""


@pytest.mark.parametrize(
    "module, message",
    [
        (
            "broken_app",
            "cannot import 'broken_app' (--import): RuntimeError: no [deploy] section in "
            "app.ini; fix the module; `python -c 'import broken_app'` shows the traceback",
        ),
        (
            "no_such_app",
            "cannot import 'no_such_app' (--import): ModuleNotFoundError: No module named "
            "'no_such_app'; check the name, and run from its folder or add that folder to "
            "PYTHONPATH",
        ),
    ],
)
def test_a_module_that_cannot_be_imported_is_one_line(
    module: str, message: str, tmp_path: Path
) -> None:
    (tmp_path / "broken_app.py").write_text(BROKEN_APP)
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    for command in (("plans", "resume", "some-plan"), ("plans", "cancel", "some-plan")):
        result = dynaflow(*command, "--url", url, "--import", module, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == f"error: {message}"
        assert result.stdout == ""
    assert not (tmp_path / "ops.db").exists()
