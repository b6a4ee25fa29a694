"""One name for the database, ``--url`` (or ``$DYNAFLOW_URL``), on every command; hints that
run as they are pasted, on the database they were given; exit codes by kind of error."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dynaflow import Action, World
from dynaflow.persistence import migrate

from .cli_runner import run

HINT = re.compile(r"`(dynaflow [^`]*)`")


class Hello(Action):
    def run(self) -> None:
        self.output["hello"] = "world"


def paste(hint: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a hint as a user pastes it into a shell (``dynaflow`` being this checkout's)."""
    command = hint.replace("dynaflow ", f"{shlex.quote(sys.executable)} -m dynaflow.cli ", 1)
    return subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=60)


def hints(text: str) -> list[str]:
    return HINT.findall(" ".join(text.split()))


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'urls.db'}"
    with World(url, executor="inline") as world:
        world.trigger(Hello).wait(10)
    return url


READS = [
    ("plans", "list"),
    ("status",),
    ("worlds", "list"),
    ("queues", "list"),
    ("db", "current"),
    ("schedules", "list"),
]


@pytest.mark.parametrize("command", READS)
def test_every_read_command_takes_the_url_from_dynaflow_url(
    db: str, command: tuple[str, ...]
) -> None:
    result = run(*command, "--json", env={"DYNAFLOW_URL": db})
    assert result.exit_code == 0, result.output
    by_option = run(*command, "--json", "--url", db)
    assert by_option.exit_code == 0, by_option.output


def test_every_command_has_url_and_no_other_name_for_it() -> None:
    from dynaflow.cli import main

    def commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from commands(command, (*path, name))
            else:
                yield (*path, name), command

    found = dict(commands(main))
    assert len(found) >= 18
    for path, command in found.items():
        shown = [p for p in command.params if not getattr(p, "hidden", False)]
        options = {o for p in shown for o in getattr(p, "opts", [])}
        assert "--url" in options, path
        assert "--db" not in options, path
        url = next(p for p in command.params if p.name == "url")
        assert url.envvar == "DYNAFLOW_URL", path


def test_demo_db_is_a_deprecated_alias_of_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    result = run("demo", "--db", url)
    assert result.exit_code == 0, result.output
    assert "warning: --db is deprecated; use --url" in result.stderr
    assert "inspect it with: dynaflow plans show " in result.stdout
    (shown,) = re.findall(r"dynaflow plans show \S+ --url \S+", " ".join(result.stdout.split()))
    assert paste(shown, tmp_path).returncode == 0  # the hint runs as it is
    both = run("demo", "--db", url, "--url", f"sqlite:///{tmp_path / 'other.db'}")
    assert both.exit_code == 2 and "give the database once" in both.stderr


def test_the_hint_for_a_missing_database_creates_it_where_it_was_asked(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    url = f"sqlite:///{tmp_path / 'not yet.db'}"  # a space: the hint quotes it
    result = run("plans", "list", "--url", url)
    assert result.exit_code == 2
    upgrade = next(h for h in hints(result.stderr) if h.startswith("dynaflow db upgrade"))
    assert paste(upgrade, work).returncode == 0
    assert (tmp_path / "not yet.db").exists()
    assert list(work.iterdir()) == []  # no ./dynaflow.db
    assert run("plans", "list", "--url", url).exit_code == 0


@pytest.fixture
def empty_pg(pg_admin: Any) -> Iterator[str]:
    """The URL of an empty PostgreSQL schema (not migrated)."""
    schema = f"dynaflow_cli_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.make_url(str(pg_admin.url)).set(drivername="postgresql+psycopg")
    url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with pg_admin.connect() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.mark.postgres
def test_the_migration_hint_names_the_url_it_was_given(empty_pg: str, tmp_path: Path) -> None:
    result = run("plans", "list", "--url", empty_pg)
    assert result.exit_code == 3  # the database cannot do it yet
    assert "is empty, this dynaflow needs revision" in result.stderr
    (upgrade,) = [h for h in hints(result.stderr) if h.startswith("dynaflow db upgrade")]
    assert "--url" in upgrade
    assert paste(upgrade, tmp_path).returncode == 0
    assert list(tmp_path.iterdir()) == []  # no ./dynaflow.db
    assert migrate.current(empty_pg) == migrate.head()
    assert run("plans", "list", "--url", empty_pg).exit_code == 0


def test_hints_from_the_environment_say_dynaflow_url(db: str) -> None:
    result = run("plans", "show", "nope", env={"DYNAFLOW_URL": db})
    assert result.exit_code == 2
    assert hints(result.stderr) == ['dynaflow plans list --url "$DYNAFLOW_URL"']


def test_db_current_on_an_old_schema_says_how_to_upgrade_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0004")
    result = run("db", "current", "--url", url)
    assert result.exit_code == 0
    (upgrade,) = hints(result.stdout)
    assert upgrade == f"dynaflow db upgrade --url {url}"
    assert paste(upgrade, tmp_path).returncode == 0
    assert migrate.current(url) == migrate.head()


@pytest.mark.parametrize(
    "args, code",
    [
        (("plans", "list", "--state", "sleeping"), 2),  # a bad option value (click's usage)
        (("plans", "frobnicate"), 2),  # no such command
        (("plans", "show", "nope"), 2),  # an unknown id
        (("plans", "retry", "nope", "x"), 2),  # a step id that is not a number
        (("plans", "list", "--url", "postgresql+psycopg://u@127.0.0.1:1/x"), 3),  # unreachable
        (("plans", "list", "--url", "mysql://u@h/x"), 3),  # a database dynaflow cannot use
    ],
)
def test_exit_codes_by_kind_of_error(db: str, args: tuple[str, ...], code: int) -> None:
    if "--url" not in args:
        args = (*args, "--url", db)
    result = run(*args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
