"""``--json`` on the read commands: the documented shapes (docs/cli.md), times in ISO 8601 UTC,
plain JSON a script can read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from freezegun import freeze_time

from dynaflow import Action, World
from dynaflow.persistence import migrate

from .cli_runner import run, run_json

T0 = datetime(2030, 3, 1, 9, 30, 0, tzinfo=UTC)
#: escape sequences and markup in a label: JSON escapes them, a script gets them back as stored
HOSTILE = "deploy \x1b[2J[bold]x[/] ✓"

PLAN_KEYS = [
    "id",
    "label",
    "state",
    "result",
    "action_class",
    "created_at",
    "started_at",
    "ended_at",
    "paused_at",
    "duration",
    "world_id",
    "idempotency_key",
    "parent_id",
    "parent_step_id",
]
STEP_KEYS = [
    "id",
    "kind",
    "action_id",
    "action_class",
    "state",
    "queue",
    "world_id",
    "started_at",
    "ended_at",
    "duration",
    "run_time",
    "runs",
    "error",
    "progress",
]


class Greet(Action):
    label = HOSTILE

    def plan(self, name: str) -> None:
        self.plan_self(name=name)

    def run(self) -> None:
        self.output["greeting"] = f"hello {self.input['name']}"


class Fails(Action):
    def run(self) -> None:
        raise ValueError("no such user: bob")


def utc(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[str, str, str, World]]:
    """Under a clock frozen at T0: a plan that succeeded and one paused on an error, in a
    database an executor world (still open) serves: ``(url, ok id, paused id, world)``."""
    url = f"sqlite:///{tmp_path / 'json.db'}"
    with (
        freeze_time(T0, ignore=["sqlalchemy"]),
        World(url, executor="inline", world_id="json-world") as world,
    ):
        ok = world.trigger(Greet, name="ann", idempotency_key="greet-ann").wait(10)
        paused = world.trigger(Fails).wait(10)
        yield url, ok.id, paused.id, world


def test_plans_list(db: tuple[str, str, str, World]) -> None:
    url, ok, paused, _ = db
    data = run_json("plans", "list", "--url", url)
    assert list(data) == ["plans", "page", "per_page", "pages", "total"]
    assert (data["page"], data["per_page"], data["pages"], data["total"]) == (1, 20, 1, 2)
    rows = {row["id"]: row for row in data["plans"]}
    assert set(rows) == {ok, paused}
    row = rows[ok]
    assert list(row) == PLAN_KEYS
    assert row["label"] == HOSTILE  # as stored, control characters and markup included
    assert (row["state"], row["result"]) == ("stopped", "success")
    assert row["action_class"].endswith("test_cli_json.Greet")
    assert row["idempotency_key"] == "greet-ann"
    assert row["parent_id"] is None and row["parent_step_id"] is None
    assert row["world_id"] == "json-world"
    assert utc(row["created_at"]) == T0 and utc(row["ended_at"]) == T0
    assert row["duration"] == 0.0 and row["paused_at"] is None
    assert (rows[paused]["state"], rows[paused]["result"]) == ("paused", "error")
    assert utc(rows[paused]["paused_at"]) == T0
    only = run_json("plans", "list", "--url", url, "--state", "paused")
    assert [r["id"] for r in only["plans"]] == [paused]
    assert run_json("plans", "list", "--url", url, "--parent", ok[:8])["plans"] == []


def test_plans_show(db: tuple[str, str, str, World]) -> None:
    url, ok, paused, _ = db
    data = run_json("plans", "show", ok[:8], "--url", url)
    assert list(data)[: len(PLAN_KEYS)] == PLAN_KEYS
    assert list(data)[len(PLAN_KEYS) :] == [
        "error",
        "progress",
        "steps",
        "actions",
        "run_flow",
        "run_edges",
        "finalize_order",
        "history",
        "sub_plans",
    ]
    assert data["id"] == ok and data["error"] is None
    assert data["progress"] == {"done": 1, "total": 1, "fraction": 1.0}
    assert data["sub_plans"] == []
    run_step = next(s for s in data["steps"] if s["kind"] == "run")
    assert list(run_step) == STEP_KEYS
    assert (run_step["state"], run_step["runs"], run_step["duration"]) == ("success", 1, 0.0)
    assert utc(run_step["started_at"]) == T0
    action = next(a for a in data["actions"] if a["id"] == run_step["action_id"])
    assert action["input"] == {"name": "ann"}
    assert action["output"] == {"greeting": "hello ann"}
    events = [row["event"] for row in data["history"]]
    assert events[0] == "plan planning" and events[-1] == "plan stopped"
    assert all(utc(row["at"]) == T0 for row in data["history"])

    failed = run_json("plans", "show", paused, "--url", url)
    step = next(s for s in failed["steps"] if s["state"] == "error")
    assert step["error"]["class_name"] == "ValueError"
    assert step["error"]["message"] == "no such user: bob"
    assert "Traceback" in step["error"]["traceback"]
    error_rows = [r for r in failed["history"] if r["event"] == "step error"]
    assert error_rows[0]["detail"]["error"]["message"] == "no such user: bob"


def test_status_worlds_and_queues(db: tuple[str, str, str, World]) -> None:
    url, _, _, _ = db
    status = run_json("status", "--url", url)
    assert list(status) == ["at", "worlds", "released_plans", "queues", "waiting_requests"]
    utc(status["at"])
    (world,) = status["worlds"]
    assert list(world) == [
        "id",
        "hostname",
        "pid",
        "executor",
        "queues",
        "started_at",
        "heartbeat_at",
        "heartbeat_age",
        "stale",
        "running_plans",
    ]
    assert (world["id"], world["executor"], world["stale"]) == ("json-world", "inline", False)
    listed = run_json("worlds", "list", "--url", url)["worlds"]
    assert [w["id"] for w in listed] == ["json-world"]
    queues = run_json("queues", "list", "--url", url)["queues"]
    default = next(q for q in queues if q["name"] == "default")
    assert list(default) == ["name", "limit", "worlds", "steps"]
    assert default["worlds"] == {"json-world": world["queues"]["default"]}
    assert default["steps"]["success"] == 1 and default["steps"]["error"] == 1


def test_db_current(db: tuple[str, str, str, World]) -> None:
    url, _, _, _ = db
    assert run_json("db", "current", "--url", url) == {
        "url": url,
        "revision": migrate.head(),
        "head": migrate.head(),
        "up_to_date": True,
    }


def test_an_error_in_json_mode_prints_no_json(db: tuple[str, str, str, World]) -> None:
    url, _, _, _ = db
    result = run("plans", "show", "nope", "--url", url, "--json")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: no execution plan with id 'nope'")
