"""``dynaflow plans prune`` as an operator runs it: in a subprocess, on SQLite and PostgreSQL,
on plans that ended 40 days ago and plans that ended now."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dynaflow import Action, PlanState, World
from dynaflow.testing import frozen_clock


class Job(Action):
    def run(self) -> None:
        if self.input.get("fail"):
            raise RuntimeError("broken")


def dynaflow(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dynaflow.cli", "plans", "prune", *args, "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


def count(url: str) -> dict[str, int]:
    with World(url, executor=None) as world:
        return {
            "all": world.count_plans(),
            "success": world.count_plans(result="success"),
            "cancelled": world.count_plans(result="cancelled"),
        }


def populate(url: str) -> str:
    """Three plans that ended 40 days ago (two succeeded, one was cancelled) and one that ended
    now."""
    long_ago = datetime.now(UTC) - timedelta(days=40)
    with frozen_clock(long_ago), World(url, executor="inline") as world:
        world.trigger(Job).wait(timeout=10)
        world.trigger(Job).wait(timeout=10)
        failed = world.trigger(Job, fail=True).wait(timeout=10)
        assert failed.state == PlanState.PAUSED
        world.cancel(failed.id).result(timeout=10)
    with World(url, executor="inline") as world:
        world.trigger(Job).wait(timeout=10)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return populate(f"sqlite:///{tmp_path / 'ops.db'}")
    return populate(str(request.getfixturevalue("pg_url")))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """(Bad input is refused before the database is opened: one database is enough.)"""
    return populate(f"sqlite:///{tmp_path / 'ops.db'}")


def test_a_dry_run_says_what_would_go_and_removes_nothing(url: str) -> None:
    result = dynaflow("--older-than", "30d", "--dry-run", url=url)
    assert result.returncode == 0, result.stderr
    first, *table = result.stdout.splitlines()
    assert first.startswith("would remove 3 plans (")
    assert first.endswith("; nothing removed (--dry-run)")
    assert any(line.split() == ["plans", "3"] for line in table)
    assert any(line.split() == ["steps", "6"] for line in table)  # a plan and a run step each
    assert count(url)["all"] == 4


def test_prune_removes_the_old_plans_of_a_result_and_says_how_many(url: str) -> None:
    result = dynaflow("--older-than", "30d", "--result", "success", url=url)
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("removed 2 success plans (") and first.endswith("in 1 transaction")
    assert count(url) == {"all": 2, "success": 1, "cancelled": 1}

    again = dynaflow("--older-than", "30d", url=url)
    assert again.stdout.startswith("removed 1 plans (")
    assert count(url) == {"all": 1, "success": 1, "cancelled": 0}


def test_json_output_counts_every_table(url: str) -> None:
    result = dynaflow("--older-than", "720h", "--batch", "1", "--json", url=url)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["dry_run"], report["plans"], report["batches"]) == (False, 3, 3)
    assert report["cutoff"].endswith("Z") and report["result"] is None
    assert report["tables"]["plans"] == 3 and report["tables"]["steps"] == 6
    assert report["rows"] == sum(report["tables"].values())
    assert count(url)["all"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "-1d"], "'-1d' is negative"),
        (["--older-than", "30x"], "cannot read '30x' as a duration; give a duration like 30d"),
        (["--older-than", "30d", "--result", "pending"], "'pending' is not one of 'success'"),
        (["--older-than", "30d", "--batch", "0"], "0 is not in the range 1<=x<=5000"),
        ([], "Missing option '--older-than'"),
    ],
)
def test_bad_input_exits_2_and_removes_nothing(
    sqlite_url: str, args: list[str], message: str
) -> None:
    result = dynaflow(*args, url=sqlite_url)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert count(sqlite_url)["all"] == 4


def test_a_worker_with_a_bad_retention_exits_2(sqlite_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dynaflow.cli", "worker", "--retention", "1y", "--url", sqlite_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "cannot read '1y' as a duration" in result.stderr
    assert count(sqlite_url)["all"] == 4


@pytest.mark.slow
def test_a_worker_with_a_retention_prunes_when_it_starts(sqlite_url: str) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-m", "dynaflow.cli", "worker", "--retention", "30d", "--url", sqlite_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = threading.Timer(60, worker.kill)  # a worker that never says it: killed
    deadline.start()
    try:
        assert worker.stdout is not None
        for line in worker.stdout:
            if "retention: removed" in line:
                assert "removed 3 plans (" in line
                break
        else:
            pytest.fail("the worker did not log what it pruned within 60 s")
    finally:
        deadline.cancel()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            raise
    assert worker.returncode == 0
    assert count(sqlite_url)["all"] == 1
