"""Who can run what: which worlds are alive (judged on the database's clock), the queues a
world serves, and whether this process can run a plan (imports its action classes, serves its
queues)."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from dynaflow import registry
from dynaflow.exceptions import ConfigurationError, UnknownActionClass
from dynaflow.execution_plan import ExecutionPlan
from dynaflow.persistence.base import Storage, WorldRow
from dynaflow.queues import check_name
from dynaflow.states import DONE_STEP_STATES, StepKind


def check_queues(queues: Mapping[str, int] | None, workers: int) -> dict[str, int]:
    """The queues a world serves, with the pool size of each (``{"default": workers}`` when
    none are given); :class:`ConfigurationError` for a bad name or size."""
    if queues is None:
        return {"default": workers}
    if not isinstance(queues, Mapping) or not queues:
        raise ConfigurationError(
            f"World(queues=...) must map queue names to pool sizes, like {{'default': 4}}; "
            f"got {queues!r}"
        )
    pools: dict[str, int] = {}
    for name, size in queues.items():
        check_name(name)
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigurationError(
                f"queue {name!r}: the pool size must be an int >= 1, got {size!r}"
            )
        pools[name] = size
    return pools


def cannot_run(plan: ExecutionPlan, queues: Collection[str]) -> str | None:
    """Why this process cannot run ``plan`` (an action class it cannot import, a queue it does
    not serve), or ``None``."""
    for step in plan.steps:
        if step.kind == StepKind.PLAN or step.state in DONE_STEP_STATES:
            continue
        try:
            registry.resolve(step.action_class)
        except UnknownActionClass:
            return f"cannot import action class {step.action_class} (step {step.id})"
        if step.kind == StepKind.RUN and step.queue not in queues:
            return f"does not serve queue {step.queue!r} (step {step.id})"
    return None


def alive(storage: Storage, world_id: str | None) -> WorldRow | None:
    """The row of ``world_id`` if that world is alive now (on the database's clock)."""
    if world_id is None:
        return None
    at = storage.now()
    for row in storage.worlds():
        if row.id == world_id:
            return row if row.expires_at >= at else None
    return None
