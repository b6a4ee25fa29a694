"""``dynaflow plans watch``: following a plan another process runs, live, to its end, and
exiting with how it ended. The plan runs here (a threaded world, its steps gated on events);
the watcher is a ``dynaflow`` process of its own, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynaflow import Action, World

WAIT = 20.0
GATES: dict[str, threading.Event] = {}
ARRIVED: dict[str, threading.Event] = {}


class Gated(Action):
    """Runs until its gate opens; fails if its input says so."""

    def plan(self, name: str, fail: bool = False) -> None:
        self.plan_self(name=name, fail=fail)

    def run(self) -> None:
        name = self.input["name"]
        ARRIVED[name].set()
        assert GATES[name].wait(WAIT), f"gate {name} never opened"
        if self.input["fail"]:
            raise RuntimeError(f"{name} could not finish")


class TwoSteps(Action):
    def plan(self, fail: bool = False) -> None:
        with self.sequence():
            self.plan_action(Gated, "first")
            self.plan_action(Gated, "second", fail=fail)


@pytest.fixture(autouse=True)
def gates() -> Iterator[None]:
    for name in ("first", "second"):
        GATES[name], ARRIVED[name] = threading.Event(), threading.Event()
    yield
    for gate in GATES.values():
        gate.set()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'watch.db'}"
    return str(request.getfixturevalue("pg_url"))


class Watcher:
    """``dynaflow plans watch`` in a process of its own, its output read line by line."""

    def __init__(self, *args: str, cwd: Path) -> None:
        env = {**os.environ, "COLUMNS": "200"}
        env.pop("DYNAFLOW_URL", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dynaflow.cli", "plans", "watch", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert self.process.stdout is not None
        stdout = self.process.stdout
        reader = threading.Thread(target=lambda: [self.lines.put(line) for line in stdout])
        reader.daemon = True
        reader.start()

    def expect(self, text: str) -> str:
        """The next line holding ``text`` (waiting at most WAIT seconds for it)."""
        while True:
            try:
                line = self.lines.get(timeout=WAIT)
            except queue.Empty:
                self.process.kill()
                raise AssertionError(f"no line with {text!r}; saw {self.seen}") from None
            self.seen.append(line)
            if text in line:
                return line

    def finish(self) -> tuple[int, str, str]:
        code = self.process.wait(timeout=WAIT)
        assert self.process.stderr is not None
        rest = "".join(iter(lambda: self._next(), ""))
        return code, "".join(self.seen) + rest, self.process.stderr.read()

    def _next(self) -> str:
        try:
            return self.lines.get(timeout=1)
        except queue.Empty:
            return ""


@pytest.fixture
def world(url: str) -> Iterator[World]:
    with World(url, executor="threads") as world:
        try:
            yield world
        finally:
            for gate in GATES.values():  # before closing: its steps may wait on them
                gate.set()


pytestmark = pytest.mark.slow  # a watcher process per test


def test_watch_follows_a_plan_run_elsewhere_to_a_good_end(
    world: World, url: str, tmp_path: Path
) -> None:
    plan_id = world.trigger(TwoSteps).plan_id
    assert ARRIVED["first"].wait(WAIT)
    watcher = Watcher(plan_id[:8], "--url", url, "--interval", "0.05", cwd=tmp_path)
    watcher.expect(f"watching plan {plan_id}")
    GATES["first"].set()
    assert "[1/2]" in watcher.expect("Gated success")
    watcher.expect("Gated running")  # the second step, live: its gate is still closed
    GATES["second"].set()
    code, out, err = watcher.finish()
    assert code == 0, (out, err)
    assert f"plan {plan_id}: stopped / success" in out
    assert "[2/2]" in out


def test_watch_exits_1_when_the_plan_pauses_and_says_how_to_resume(
    world: World, url: str, tmp_path: Path
) -> None:
    plan_id = world.trigger(TwoSteps, fail=True).plan_id
    watcher = Watcher(plan_id, "--url", url, "--interval", "0.05", cwd=tmp_path)
    watcher.expect(f"watching plan {plan_id}")
    GATES["first"].set()
    GATES["second"].set()
    code, out, err = watcher.finish()
    assert code == 1, (out, err)
    assert f"plan {plan_id}: paused / error" in out
    assert "Gated: RuntimeError: second could not finish" in out
    assert f"`dynaflow plans resume {plan_id} --url " in out
    assert f"--import {TwoSteps.__module__}` runs its failed steps again" in out


def test_watch_gives_up_after_its_timeout_with_exit_4(
    world: World, url: str, tmp_path: Path
) -> None:
    plan_id = world.trigger(TwoSteps).plan_id
    assert ARRIVED["first"].wait(WAIT)
    watcher = Watcher(plan_id, "--url", url, "--timeout", "0.2", cwd=tmp_path)
    code, out, err = watcher.finish()
    assert code == 4, (out, err)
    assert f"plan {plan_id}: running" in out and "it goes on" in out


def test_watch_json_prints_the_plan_when_it_ends(world: World, url: str, tmp_path: Path) -> None:
    plan_id = world.trigger(TwoSteps).plan_id
    watcher = Watcher(plan_id, "--url", url, "--json", "--interval", "0.05", cwd=tmp_path)
    GATES["first"].set()
    GATES["second"].set()
    code, out, err = watcher.finish()
    assert code == 0, err
    data = json.loads(out)
    assert (data["id"], data["state"], data["result"]) == (plan_id, "stopped", "success")


def test_ctrl_c_stops_watching_with_exit_130(world: World, url: str, tmp_path: Path) -> None:
    plan_id = world.plan(TwoSteps).id  # planned: nothing runs it yet
    watcher = Watcher(plan_id, "--url", url, cwd=tmp_path)
    watcher.expect(f"watching plan {plan_id}")
    watcher.process.send_signal(signal.SIGINT)
    code, _, err = watcher.finish()
    assert code == 130 and "interrupted" in err
