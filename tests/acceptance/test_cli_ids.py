"""Ids on the command line: shown whole at every terminal width, and taken whole or as a
unique prefix wherever a command takes one."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynaflow import Action, World

from .cli_runner import run

WIDTHS = (200, 110, 100, 80, 60, 40, 30)
#: as long as a world id may be
LONG_WORLD = "worker-on-a-rather-long-host-name.example.internal-4242"


class Tidy(Action):
    label = "tidy the shared build caches of every team"

    def run(self) -> None:
        pass


class Breaks(Action):
    def run(self) -> None:
        raise RuntimeError("the disk /srv/cache is full")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[str, list[str], World]]:
    """A database with 17 plans (two of them share the first character of their ids; one
    is paused on an error), and an executor world with a long id, still open:
    ``(url, plan ids, world)``."""
    url = f"sqlite:///{tmp_path / 'ids.db'}"
    with World(url, executor="inline", world_id=LONG_WORLD) as world:
        ids = [world.trigger(Tidy).wait(10).id for _ in range(16)]
        paused = world.trigger(Breaks).wait(10)
        assert paused.state == "paused"
        yield url, [*ids, paused.id], world


@pytest.mark.parametrize("columns", WIDTHS)
def test_plans_list_shows_every_id_whole(db: tuple[str, list[str], World], columns: int) -> None:
    url, ids, _ = db
    result = run("plans", "list", "--url", url, "--per-page", "50", columns=columns)
    assert result.exit_code == 0, result.output
    for plan_id in ids:
        assert plan_id in result.stdout, (columns, result.stdout)
    assert "tidy the shared build caches" in result.stdout or columns < 60
    if columns >= 200:  # a table: one line per plan, its id first
        lines = [line for line in result.stdout.splitlines() if ids[0] in line]
        assert len(lines) == 1 and "stopped / success" in lines[0]


@pytest.mark.parametrize("columns", WIDTHS)
def test_world_ids_are_whole_in_status_and_worlds_list(
    db: tuple[str, list[str], World], columns: int
) -> None:
    url, _, _ = db
    for command in (("status",), ("worlds", "list")):
        result = run(*command, "--url", url, columns=columns)
        assert result.exit_code == 0, result.output
        assert LONG_WORLD in result.stdout, (command, columns, result.stdout)


@pytest.mark.parametrize("columns", (200, 80, 40))
def test_plans_show_history_has_dates_times_and_the_error(
    db: tuple[str, list[str], World], columns: int
) -> None:
    url, ids, _ = db
    result = run("plans", "show", ids[-1], "--url", url, "--history", columns=columns)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert ids[-1] in out
    errors = [line for line in out.splitlines() if "step error" in line]
    assert errors, out
    # the error's class and message go with it, not just the step's number
    after = " ".join(out[out.index("step error") :].split())  # wrapped in narrow terminals
    assert "RuntimeError: the disk /srv/cache is full" in after
    last = db[2].get_plan(ids[-1]).history[-1]
    stamp = last.at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert stamp in out  # a date and a time
    assert LONG_WORLD in out


def test_a_unique_prefix_is_taken_wherever_a_plan_id_is(db: tuple[str, list[str], World]) -> None:
    url, ids, _ = db
    paused = ids[-1]
    prefix = _unique_prefix(ids, paused)
    shown = run("plans", "show", prefix, "--url", url)
    assert shown.exit_code == 0, shown.output
    assert f"plan {paused}" in shown.stdout
    watched = run("plans", "watch", prefix, "--url", url)
    assert watched.exit_code == 1  # it is paused
    assert f"plan {paused}: paused / error" in watched.stdout
    cancelled = run("plans", "cancel", prefix, "--url", url)
    assert cancelled.exit_code == 0, cancelled.output
    assert f"plan {paused}: stopped / cancelled" in cancelled.stdout


def test_an_ambiguous_prefix_is_refused_naming_the_candidates(
    db: tuple[str, list[str], World],
) -> None:
    url, ids, world = db
    by_first: dict[str, list[str]] = defaultdict(list)
    for plan_id in ids:
        by_first[plan_id[0]].append(plan_id)
    prefix, candidates = next((p, c) for p, c in by_first.items() if len(c) > 1)
    for command in (("plans", "show"), ("plans", "watch"), ("plans", "cancel")):
        result = run(*command, prefix, "--url", url)
        assert result.exit_code == 2, (command, result.output)
        assert result.stdout == ""
        assert f"plan id '{prefix}' is ambiguous" in result.stderr
        for candidate in candidates:
            assert candidate in result.stderr
        assert "give more of the id" in result.stderr
    assert world.get_plan(ids[-1]).state == "paused"  # a refused cancel changed nothing


def test_an_unknown_id_is_bad_input_with_a_command_to_list_them(
    db: tuple[str, list[str], World],
) -> None:
    url, _, _ = db
    for command in (("plans", "show"), ("plans", "watch"), ("plans", "resume")):
        result = run(*command, "zz-no-such", "--url", url)
        assert result.exit_code == 2, (command, result.output)
        assert "no execution plan with id 'zz-no-such'" in result.stderr
        assert f"`dynaflow plans list --url {url}` lists the plans there" in result.stderr


def test_worlds_forget_takes_a_prefix(db: tuple[str, list[str], World]) -> None:
    url, _, _ = db
    with World(url, executor="inline", world_id="spare-world-1") as spare:
        refused = run("worlds", "forget", "spare-", "--url", url)
        assert refused.exit_code == 2  # its heartbeat is fresh
        assert "spare-world-1" in refused.stderr
        forced = run("worlds", "forget", "spare-", "--force", "--url", url)
        assert forced.exit_code == 0, forced.output
        assert "world spare-world-1 forgotten" in forced.stdout
        assert "spare-world-1" not in {w.id for w in spare.worlds()}


def _unique_prefix(ids: list[str], plan_id: str) -> str:
    for length in range(1, len(plan_id)):
        prefix = plan_id[:length]
        if sum(1 for i in ids if i.startswith(prefix)) == 1:
            return prefix
    return plan_id
