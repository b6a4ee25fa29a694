"""``dynaflow worker`` given bad options or a database it cannot work with: a one-line error
and a non-zero exit, never a traceback; and a worker whose database connections are killed
under it reconnects and goes on."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dynaflow import World
from dynaflow.persistence.migrate import VERSION_TABLE

from .actions import Shape
from .harness import (
    WAIT,
    Database,
    Worker,
    dynaflow,
    one_line_error,
    read_runs,
    schema_url,
    wait_until,
    workers,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "queue, message",
    [
        ("default=0", "queue 'default': the pool size must be an int >= 1, got 0"),
        ("default=-2", "queue 'default': the pool size must be an int >= 1, got -2"),
        ("a b=2", "queue name 'a b': use 1 to 64 letters, digits"),
        ("=2", "queue name '': use 1 to 64 letters, digits"),
        ("default=many", "--queue 'default=many': write NAME=SIZE"),
    ],
)
def test_a_bad_queue_is_a_one_line_error(tmp_path: Path, queue: str, message: str) -> None:
    url = f"sqlite:///{tmp_path / 'dynaflow.db'}"
    result = dynaflow(
        "worker", "--url", url, "--import", "cluster.actions", "--queue", queue,
        directory=tmp_path,
    )  # fmt: skip
    assert message in one_line_error(result, 2)
    assert not (tmp_path / "dynaflow.db").exists()  # refused before opening anything


@pytest.mark.postgres
def test_a_worker_on_a_schema_newer_than_its_code_fails_clearly(
    url: str, db: Database, tmp_path: Path
) -> None:
    with db.engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = 'fffffffffff9'"))
    result = dynaflow("worker", "--url", url, "--import", "cluster.actions", directory=tmp_path)
    line = one_line_error(result, 3)
    assert "is at schema revision fffffffffff9, which is newer than this dynaflow" in line
    assert "upgrade dynaflow" in line
    assert db.worlds() == {}  # it wrote nothing


def _terminate(admin: sa.Engine, application_name: str) -> int:
    """Terminate the sessions named ``application_name`` on the test database; how many."""
    with admin.connect() as conn:
        return len(
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND application_name = :name"
                ),
                {"name": application_name},
            ).all()
        )


def _sessions(admin: sa.Engine, application_name: str) -> int:
    with admin.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = :name"
                ),
                {"name": application_name},
            ).scalar_one()
        )


@pytest.mark.postgres
@pytest.mark.timeout(180)
def test_a_worker_whose_connections_are_terminated_reconnects_and_loses_nothing(
    pg_admin: sa.Engine, pg: tuple[str, str], db: Database, tmp_path: Path, client: World
) -> None:
    name = f"dynaflow-cluster-{uuid.uuid4().hex[:8]}"  # only the worker's sessions have it
    worker_url = schema_url(pg_admin, pg[0], application_name=name)
    spec: list[Any] = [
        "seq",
        ["work", "a", {"seconds": 0.05}],
        ["con", ["work", "b", {"seconds": 0.1}], ["work", "c", {"seconds": 0.05}]],
        ["work", "d", {"seconds": 0.05}],
    ]  # idempotent steps: an outcome lost with the connection is run again
    with workers(worker_url, tmp_path) as start:
        worker = start("worker", lease=5)
        worker.registered(db)
        ids = [client.trigger(Shape, spec).plan_id for _ in range(30)]
        # every plan taken (its request answered) before the connections go: a connection
        # lost while a worker takes a plan is a test of its own (below)
        wait_until(
            lambda: db.plan_states(ids),
            lambda states: all(s != "planned" for s, _ in states.values()),
            "the worker takes every plan",
        )
        seen = 0
        for _ in range(3):
            seen = wait_until(
                lambda: len([r for r in read_runs(tmp_path) if r.what == "end"]),
                lambda ended, seen=seen: ended >= seen + 5,
                "steps run",
            )
            wait_until(lambda: _sessions(pg_admin, name), bool, "the worker is connected")
            assert _terminate(pg_admin, name) >= 1
        last = max(r.at for r in read_runs(tmp_path))

        ended = db.wait_ended(ids)
        assert set(ended.values()) == {("stopped", "success")}, ended
        runs = read_runs(tmp_path)
        assert {r.pid for r in runs} == {worker.pid}
        assert any(r.at > last for r in runs)  # it went on after the last termination
        for plan in ids:
            steps = db.run_steps(plan)
            assert {s.state for s in steps.values()} == {"success"}
            for step in steps.values():
                assert worker.runs_world(step.world_id)
                assert any(r.plan == plan and r.step == step.id for r in runs)
        assert worker.process.poll() is None  # the same process, reconnected
        wait_until(lambda: _sessions(pg_admin, name), bool, "the worker is connected again")
        assert "notification listener lost its connection" in worker.output()


def drop_the_connection_once(db: Database, schema: str, event: str, when: str = "") -> None:
    """The first time a row trigger on ``event`` (``BEFORE UPDATE ON table``) fires (with
    ``when``, a ``WHEN (...)`` condition), the session that fires it is terminated (a sequence
    counts: it survives the rollback)."""
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(
                f"""
                CREATE SEQUENCE "{schema}".cluster_drops;
                CREATE FUNCTION "{schema}".cluster_drop_once() RETURNS trigger
                LANGUAGE plpgsql AS $$
                BEGIN
                    IF nextval('"{schema}".cluster_drops') = 1 THEN
                        PERFORM pg_terminate_backend(pg_backend_pid());
                    END IF;
                    RETURN COALESCE(NEW, OLD);  -- OLD for a DELETE (NULL would skip it)
                END $$;
                CREATE TRIGGER cluster_drop_once {event} FOR EACH ROW {when}
                EXECUTE FUNCTION "{schema}".cluster_drop_once();
                """
            )
        )


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_a_connection_lost_while_a_worker_records_a_plans_end_loses_nothing(
    pg: tuple[str, str],
    db: Database,
    tmp_path: Path,
    start_worker: Callable[..., Worker],
    client: World,
) -> None:
    schema = pg[0]
    drop_the_connection_once(
        db,
        schema,
        f'BEFORE UPDATE ON "{schema}".dynaflow_plans',
        "WHEN (OLD.state = 'running' AND NEW.state = 'stopped')",
    )
    worker = start_worker("worker", lease=5)
    worker.registered(db)
    triggered = client.trigger(Shape, ["seq", ["work", "a", {"seconds": 0}]])
    assert triggered.wait(WAIT).result == "success"
    assert "scheduler iteration failed: lost the connection" in worker.output()
    assert worker.runs_world(db.plans()[triggered.plan_id][2])


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_a_connection_lost_while_a_worker_claims_a_plan_does_not_strand_it(
    pg: tuple[str, str],
    db: Database,
    tmp_path: Path,
    start_worker: Callable[..., Worker],
    client: World,
) -> None:
    schema = pg[0]
    drop_the_connection_once(db, schema, f'BEFORE DELETE ON "{schema}".dynaflow_requests')
    worker = start_worker("worker", lease=5)
    worker.registered(db)
    triggered = client.trigger(Shape, ["seq", ["v", "a", {"n": 1}]])
    wait_until(
        lambda: "scheduler iteration failed: lost the connection" in worker.output(),
        bool,
        "the connection drops while the worker claims the plan",
    )
    assert triggered.wait(WAIT).result == "success", db.open_requests()
    assert db.open_requests() == []  # given back, taken again, and deleted with the claim
