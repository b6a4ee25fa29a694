"""Opening the first World inside freezegun's freeze_time (the frozen-clock sample of
docs/events.md) prints no "datetime.date size changed" warning, and times read from the
database after the freeze are real datetimes: the database drivers are imported with dynaflow,
never while the time is frozen. Each case runs in a fresh interpreter, where the first World
is the one inside the freeze."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import datetime, sys
    from datetime import timedelta
    from freezegun import freeze_time
    from dynaflow import Action, World

    class Remind(Action):
        def run(self, event=None):
            if event is None:
                self.plan_event("remind", delay=0.5)
                self.suspend()

    with freeze_time("2030-01-01 12:00:00") as clock:
        world = World(sys.argv[1], executor="inline")
        triggered = world.trigger(Remind)
        clock.tick(timedelta(seconds=0.5))
        world.run_pending()
        print(triggered.wait(timeout=5).result)
    plan = world.get_plan(triggered.plan_id)
    times = [plan.created_at, plan.ended_at, *(h.at for h in plan.history)]
    print(sorted({type(t).__name__ for t in times}))
    world.close()
    """
)


def run_sample(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", SCRIPT, url],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "storage", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_the_first_world_opened_on_a_frozen_clock(
    storage: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if storage == "sqlite":
        url = f"sqlite:///{tmp_path / 'frozen.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    result = run_sample(url)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == ["success", "['datetime']"]
