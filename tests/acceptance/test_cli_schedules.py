"""``dynaflow schedules list|pause|resume|remove`` and ``dynaflow plans reschedule`` as an
operator runs them: in a subprocess, on an SQLite file a client world scheduled into."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dynaflow import Action, World

from .cli_runner import run, run_json


class Nightly(Action):
    def run(self) -> None:
        pass


def dynaflow(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dynaflow.cli", *args, "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)  # bad input: docs/cli.md
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    with World(url, executor=None) as world:
        world.schedule(Nightly, cron="30 2 * * *", tz="Europe/Prague", key="nightly")
        world.schedule(Nightly, cron="*/5 * * * *", key="often")
    return url


def test_schedules_list_shows_each_schedule_with_its_next_run(url: str) -> None:
    result = dynaflow("schedules", "list", url=url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    nightly = next(line for line in lines if "nightly" in line)
    assert "Nightly" in nightly and "30 2 * * *" in nightly and "Europe/Prague" in nightly
    assert "02:30 CE" in nightly and "active" in nightly  # CET or CEST, by the date
    often = next(line for line in lines if "often" in line)
    assert ":" in often and "UTC" in often


def test_pause_resume_and_remove_a_schedule(url: str) -> None:
    assert "schedule often: paused" in dynaflow("schedules", "pause", "often", url=url).stdout
    listed = dynaflow("schedules", "list", url=url).stdout
    assert "paused" in next(line for line in listed.splitlines() if "often" in line)
    with World(url, executor=None) as world:
        assert [s.paused for s in world.schedules()] == [False, True]

    resumed = dynaflow("schedules", "resume", "often", url=url)
    assert "schedule often: active; next run" in resumed.stdout
    assert dynaflow("schedules", "remove", "often", url=url).returncode == 0
    with World(url, executor=None) as world:
        assert [s.key for s in world.schedules()] == ["nightly"]

    error = one_line_error(dynaflow("schedules", "pause", "often", url=url))
    assert "no recurring schedule with key 'often'" in error


def test_plans_reschedule_moves_a_scheduled_plan(url: str) -> None:
    with World(url, executor=None) as world:
        plan_id = world.delay(
            Nightly, start_at=timedelta(hours=1), start_before=timedelta(hours=2)
        ).plan_id

    moved = dynaflow(
        "plans", "reschedule", plan_id[:13], "--at", "2099-01-01T02:00:00+01:00", "--no-deadline",
        url=url,
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    assert "starts at 2099-01-01T01:00:00+00:00 (deadline none)" in moved.stdout
    with World(url, executor=None) as world:
        row = world.delayed(plan_id)
        assert row is not None
        assert (row.start_at, row.start_before) == (datetime(2099, 1, 1, 1, tzinfo=UTC), None)

    relative = dynaflow("plans", "reschedule", plan_id, "--at", "+1h", "--before", "+3d", url=url)
    assert relative.returncode == 0, relative.stderr
    with World(url, executor=None) as world:
        row = world.delayed(plan_id)
        assert row is not None and row.start_before is not None
        assert row.start_before - row.start_at == timedelta(hours=71)


def test_bad_reschedules_are_one_line_errors(url: str) -> None:
    with World(url, executor=None) as world:
        plan_id = world.delay(Nightly, start_at=timedelta(hours=1)).plan_id
    cases = [
        (("--at", "2030-01-01T00:00"), "has no time zone"),
        (("--at", "tomorrow"), "give an ISO 8601 time"),
        ((), "give --at TIME, --before TIME or --no-deadline"),
        (("--before", "+1h", "--no-deadline"), "not both"),
        (("--before", "+1m"), "is before start_at"),
    ]
    for options, message in cases:
        error = one_line_error(dynaflow("plans", "reschedule", plan_id, *options, url=url))
        assert message in error
    error = one_line_error(dynaflow("plans", "reschedule", "nope", "--at", "now", url=url))
    assert "no execution plan with id 'nope'" in error


def test_schedules_list_json(url: str) -> None:
    data = run_json("schedules", "list", "--url", url)
    assert list(data) == ["at", "schedules"]
    nightly, often = data["schedules"]
    assert list(nightly) == [
        "key",
        "action_class",
        "args",
        "kwargs",
        "cron",
        "tz",
        "catch_up",
        "next_run_at",
        "paused",
        "last_run_at",
        "last_plan_id",
    ]
    assert (nightly["key"], nightly["cron"], nightly["tz"]) == (
        "nightly",
        "30 2 * * *",
        "Europe/Prague",
    )
    assert nightly["action_class"].endswith("Nightly") and nightly["paused"] is False
    due = datetime.fromisoformat(nightly["next_run_at"])
    assert nightly["next_run_at"].endswith("Z") and due > datetime.now(UTC)
    assert due.astimezone(ZoneInfo("Europe/Prague")).strftime("%H:%M") == "02:30"
    assert (nightly["last_run_at"], nightly["last_plan_id"]) == (None, None)
    assert often["key"] == "often"


@pytest.mark.parametrize("columns", [200, 80, 40])
def test_schedules_list_keeps_keys_whole(tmp_path: Path, columns: int) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    key = "nightly-report-for-the-finance-department-in-prague"
    with World(url, executor=None) as world:
        world.schedule(Nightly, cron="30 2 * * *", tz="Europe/Prague", key=key)
    result = run("schedules", "list", "--url", url, columns=columns)
    assert result.exit_code == 0, result.output
    assert key in result.stdout
