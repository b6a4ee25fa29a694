"""A worker takes only plans it can run: it declines those whose action classes it cannot
import or whose steps go to a queue it does not serve (``dynaflow status`` says why), and a
worker that can runs them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dynaflow import World

from .actions import Shape
from .extra import Extra
from .harness import WAIT, Database, Worker, dynaflow, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.mark.timeout(180)
def test_plans_needing_a_module_or_a_queue_run_only_on_the_worker_that_has_it(
    url: str, db: Database, tmp_path: Path, start_worker: Callable[..., Worker], client: World
) -> None:
    plain = start_worker("plain", queues=["default=2"], lease=5)  # no cluster.extra
    plain.registered(db)
    extra = client.trigger(Extra, name="x").plan_id
    imports = client.trigger(Shape, ["seq", ["imp", "i"]]).plan_id

    def declined_by_plain() -> dict[str, str]:
        return {
            r["plan_id"]: r["declined"][plain.world_id]
            for r in db.open_requests()
            if plain.world_id in r["declined"]
        }

    reasons = wait_until(
        declined_by_plain, lambda got: set(got) == {extra, imports}, "the plain worker declines"
    )
    assert reasons[extra].startswith("cannot import action class cluster.extra.Extra (step ")
    assert reasons[imports].startswith("does not serve queue 'imports' (step ")
    status = dynaflow("status", "--url", url, directory=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "waiting requests" in status.stdout and "declined because" in status.stdout
    for plan, reason in reasons.items():
        (line,) = [line for line in status.stdout.splitlines() if plan in line]
        assert f"{plain.world_id}: {reason}" in line, status.stdout
    assert db.plan_states([extra, imports]) == dict.fromkeys(
        [extra, imports], ("planned", "pending")
    )

    full = start_worker(
        "full",
        imports=["cluster.actions", "cluster.extra"],
        queues=["default=2", "imports=1"],
        lease=5,
    )
    full.registered(db)
    needing = [extra, imports]
    needing += [client.trigger(Extra, name=f"x{i}").plan_id for i in range(5)]
    needing += [client.trigger(Shape, ["seq", ["imp", f"i{i}"]]).plan_id for i in range(5)]
    anywhere = [client.trigger(Shape, ["seq", ["v", f"v{i}", {"n": i}]]).plan_id for i in range(10)]
    for plan in needing + anywhere:
        assert client.follow(plan).result(WAIT).result == "success", plan
    running = db.step_running()
    for plan in needing:
        (world,) = {w for (p, _), worlds in running.items() if p == plan for w in worlds}
        assert full.runs_world(world), (plan, world)
    for plan in anywhere:
        (world,) = {w for (p, _), worlds in running.items() if p == plan for w in worlds}
        assert full.runs_world(world) or plain.runs_world(world), (plan, world)
    assert plain.process.poll() is None and full.process.poll() is None
