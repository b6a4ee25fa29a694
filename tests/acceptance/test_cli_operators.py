"""Operator commands (``dynaflow plans resume|retry|skip|cancel|halt``, ``dynaflow status``) as
an operator runs them: in a subprocess, on an SQLite file, importing the app's actions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynaflow import World

ACTIONS = textwrap.dedent(
    """
    import os
    from dynaflow import Action

    class Deploy(Action):
        def plan(self, name):
            self.plan_self(name=name)

        def run(self):
            if os.path.exists(self.input["name"] + ".broken"):
                raise RuntimeError("cannot deploy " + self.input["name"])
            self.output["deployed"] = self.input["name"]

    class Release(Action):
        def plan(self):
            with self.sequence():
                self.plan_action(Deploy, "api")
                self.plan_action(Deploy, "web")
    """
)


def dynaflow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dynaflow.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200", "PYTHONPATH": str(cwd)},
    )


@pytest.fixture
def paused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, int]:
    """A Release plan paused on the failed deploy of 'api': (url, plan id, step id)."""
    (tmp_path / "ops_actions.py").write_text(ACTIONS)
    (tmp_path / "api.broken").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    from ops_actions import Release  # type: ignore[import-not-found]

    url = f"sqlite:///{tmp_path / 'ops.db'}"
    with World(url, executor="inline") as world:
        plan = world.trigger(Release).wait(10)
    assert (plan.state, plan.result) == ("paused", "error")
    (failed,) = [s for s in plan.steps if s.state == "error"]
    return url, plan.id, failed.id


@pytest.fixture
def worker(paused: tuple[str, str, int], tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A `dynaflow worker` process on the paused plan's database, importing the app's
    actions; stopped with SIGTERM (it must exit 0)."""
    url, _, _ = paused
    process = subprocess.Popen(
        [sys.executable, "-m", "dynaflow.cli", "worker", "--url", url, "--import", "ops_actions",
         "--lease", "5"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    deadline = time.monotonic() + 30
    with World(url, executor=None) as world:
        while not any(w.pid == process.pid for w in world.worlds()):
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the worker did not register"
            time.sleep(0.05)
    yield process
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output


@pytest.mark.usefixtures("worker")
def test_resume_runs_the_failed_step_again(paused: tuple[str, str, int], tmp_path: Path) -> None:
    url, plan_id, _ = paused
    (tmp_path / "api.broken").unlink()
    result = dynaflow(
        "plans", "resume", plan_id, "--url", url, "--import", "ops_actions", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert f"plan {plan_id}: stopped / success" in result.stdout
    with World(url, executor=None) as world:
        assert world.get_plan(plan_id).result == "success"


@pytest.mark.usefixtures("worker")
def test_skip_and_resume_gives_a_warning(paused: tuple[str, str, int], tmp_path: Path) -> None:
    url, plan_id, step_id = paused
    result = dynaflow(
        "plans", "skip", plan_id, str(step_id), "--resume", "--url", url,
        "--import", "ops_actions", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"plan {plan_id}: stopped / warning" in result.stdout
    with World(url, executor=None) as world:
        plan = world.get_plan(plan_id)
    assert {s.id: s.state for s in plan.steps if s.kind == "run"}[step_id] == "skipped"


def test_resume_without_a_worker_says_the_request_waits(
    paused: tuple[str, str, int], tmp_path: Path
) -> None:
    url, plan_id, _ = paused
    result = dynaflow("plans", "resume", plan_id, "--url", url, cwd=tmp_path)
    assert result.returncode == 3  # the cluster cannot do it now
    assert "no live executor world" in result.stderr and "stays queued" in result.stderr
    # the command that starts one, as it can be pasted
    assert f"`dynaflow worker --url {url} --import ops_actions`" in result.stderr
    status = dynaflow("status", "--url", url, cwd=tmp_path)
    assert "waiting requests" in status.stdout and plan_id[:8] in status.stdout


def test_a_paused_plan_ends_paused_again_exit_1(
    paused: tuple[str, str, int], tmp_path: Path, worker: subprocess.Popen[str]
) -> None:
    url, plan_id, step_id = paused  # api.broken is still there: the retry fails again
    result = dynaflow("plans", "retry", plan_id, str(step_id), "--url", url, cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    assert f"plan {plan_id}: paused / error" in result.stdout


def test_skip_needs_the_action_class_up_front(paused: tuple[str, str, int], tmp_path: Path) -> None:
    url, plan_id, step_id = paused
    result = dynaflow(
        "plans", "skip", plan_id, str(step_id), "--url", url, cwd=tmp_path.parent
    )  # fmt: skip
    assert result.returncode == 2
    assert "pass --import ops_actions" in result.stderr
    with World(url, executor=None) as world:
        assert world.get_plan(plan_id).state == "paused"  # nothing changed


def test_operator_errors_are_one_line(paused: tuple[str, str, int], tmp_path: Path) -> None:
    url, plan_id, step_id = paused
    cases = [
        (("plans", "retry", plan_id, str(step_id + 1)), "only a failed step can be retried"),
        (("plans", "resume", "no-such-plan"), "no execution plan with id 'no-such-plan'"),
        (("plans", "skip", plan_id, "999"), "has no step 999"),
    ]
    for args, message in cases:
        result = dynaflow(*args, "--url", url, "--import", "ops_actions", cwd=tmp_path)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    cancelled = dynaflow("plans", "cancel", plan_id, "--url", url, cwd=tmp_path)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "stopped / cancelled" in cancelled.stdout
    again = dynaflow("plans", "halt", plan_id, "--url", url, cwd=tmp_path)
    assert again.returncode == 2 and "already stopped" in again.stderr


def test_status_lists_the_live_executor_worlds(
    paused: tuple[str, str, int], tmp_path: Path
) -> None:
    url, _, _ = paused
    with World(url, executor="inline", world_id="ops-console-world"):
        result = dynaflow("status", "--url", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ops-console-world" in result.stdout
    after = dynaflow("status", "--url", url, cwd=tmp_path)
    assert "ops-console-world" not in after.stdout  # a world that closed unregisters
