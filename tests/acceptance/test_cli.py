"""The ``dynaflow`` command as a user runs it: in a subprocess, on an SQLite file."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from dynaflow import World
from dynaflow.persistence import migrate
from dynaflow.render import short_name
from dynaflow.states import StepKind

PLAN_ID = re.compile(r"^plan ([0-9a-f-]{36})", re.MULTILINE)


def dynaflow(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dynaflow.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, list[str]]:
    """``dynaflow demo`` run twice on one database: its URL, the file, the two outputs."""
    tmp = tmp_path_factory.mktemp("demo")
    url = f"sqlite:///{tmp / 'demo.db'}"
    outputs = []
    for _ in range(2):
        result = dynaflow("demo", "--url", url, cwd=tmp)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        outputs.append(result.stdout)
    return url, tmp / "demo.db", outputs


def plan_ids(outputs: list[str]) -> list[str]:
    return [PLAN_ID.search(output).group(1) for output in outputs]  # type: ignore[union-attr]


def test_demo_shows_every_step_succeeding(demo: tuple[str, Path, list[str]]) -> None:
    url, _, outputs = demo
    output = outputs[0]
    (plan_id,) = plan_ids(outputs[:1])
    assert "stopped / success" in output
    with World(url, executor=None) as world:
        plan = world.get_plan(plan_id)
    assert (plan.state, plan.result) == ("stopped", "success")
    tree = output[output.index(f"plan {plan_id}") :]
    shown = [s for s in plan.steps if s.kind != StepKind.PLAN]
    assert len(shown) >= 9  # 3 machines, 3 monitoring registrations, 3 finalizers (+ plugins)
    for step in shown:
        assert re.search(rf"✔ +{step.id} {short_name(step.action_class)}  success", tree), step
    # the web machine got the db machine's uuid through an output reference
    assert re.search(
        r"CreateMachine  success .*name=host3 profile=web db_machine=<step \d+\.uuid>", tree
    )
    assert "(subscribed to CreateMachine)" in tree
    # progress was reported while it ran
    assert re.search(r"run +\d+ CreateMachine running", output)


def test_demo_finalize_wrote_its_table_each_run(demo: tuple[str, Path, list[str]]) -> None:
    _, path, outputs = demo
    first, second = plan_ids(outputs)
    assert first != second
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT plan_id, name, profile, uuid, db_machine FROM demo_machines ORDER BY id"
        ).fetchall()
    assert len(rows) == 6
    for plan_id in (first, second):
        machines = {
            name: (profile, uuid, dep) for pid, name, profile, uuid, dep in rows if pid == plan_id
        }
        assert {name: m[0] for name, m in machines.items()} == {
            "host1": "db",
            "host2": "storage",
            "host3": "web",
        }
        assert machines["host3"][2] == machines["host1"][1]  # the resolved reference
        assert machines["host1"][1] in outputs[[first, second].index(plan_id)]


def test_plans_list(demo: tuple[str, Path, list[str]], tmp_path: Path) -> None:
    url, _, outputs = demo
    first, second = plan_ids(outputs)
    result = dynaflow("plans", "list", "--url", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.index(second) < result.stdout.index(first)  # newest first
    assert "CreateInfrastructure" in result.stdout
    assert "2 plans" in result.stdout

    paged = dynaflow(
        "plans",
        "list",
        "--result",
        "success",
        "--per-page",
        "1",
        "--page",
        "2",
        cwd=tmp_path,
        env={"DYNAFLOW_URL": url},
    )
    assert paged.returncode == 0, paged.stderr
    assert first in paged.stdout and second not in paged.stdout
    assert "page 2 of 2" in paged.stdout

    none = dynaflow("plans", "list", "--url", url, "--state", "paused", cwd=tmp_path)
    assert none.returncode == 0
    assert "no plans match" in none.stdout


def test_plans_show(demo: tuple[str, Path, list[str]], tmp_path: Path) -> None:
    url, _, outputs = demo
    plan_id = plan_ids(outputs)[1]
    result = dynaflow("plans", "show", plan_id, "--url", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("CreateInfrastructure  stopped / success")
    assert f"plan {plan_id}" in out
    for part in ("run", "sequence", "concurrence", "finalize", "RegisterMonitoring"):
        assert part in out
    assert out.count("✘") == 0
    assert len(re.findall(r"CreateMachine  success \d", out)) == 6  # 3 run + 3 finalize steps


def test_plans_show_unknown_id(demo: tuple[str, Path, list[str]], tmp_path: Path) -> None:
    url, _, _ = demo
    result = dynaflow("plans", "show", "no-such-plan", "--url", url, cwd=tmp_path)
    assert result.returncode == 2  # bad input
    assert result.stdout == ""
    assert "no execution plan with id 'no-such-plan'" in result.stderr
    assert f"`dynaflow plans list --url {url}` lists the plans there" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "url, message, code",
    [
        ("sqlite:///missing.db", "no database at sqlite:///missing.db", 2),
        (
            "postgresql+psycopg://dynaflow:secret@127.0.0.1:1/nowhere",
            "cannot open the database",
            3,
        ),
    ],
)
def test_unreachable_database(url: str, message: str, code: int, tmp_path: Path) -> None:
    result = dynaflow("plans", "list", "--url", url, cwd=tmp_path)
    assert result.returncode == code
    assert message in result.stderr
    assert "secret" not in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "missing.db").exists()


def test_db_current_and_upgrade(demo: tuple[str, Path, list[str]], tmp_path: Path) -> None:
    url, _, _ = demo
    result = dynaflow("db", "current", "--url", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f": {migrate.head()} (head {migrate.head()}, up to date)" in result.stdout

    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgraded = dynaflow("db", "upgrade", "--url", fresh, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"upgraded from (empty) to {migrate.head()}" in upgraded.stdout
    again = dynaflow("db", "current", "--url", fresh, cwd=tmp_path)
    assert "up to date" in again.stdout
