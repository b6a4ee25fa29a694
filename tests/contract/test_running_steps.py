"""The storage contract for counting the run steps each world is running, on every storage."""

from __future__ import annotations

from dynaflow.persistence import Storage
from dynaflow.persistence.base import Batch, Claim, StepUpdate
from dynaflow.states import StepState

from .test_storage import T0, make_plan


def test_running_steps_are_counted_per_world(storage: Storage) -> None:
    assert storage.running_steps() == {}
    first, second = make_plan(steps=3), make_plan(steps=2)
    storage.insert_plan(first)
    storage.insert_plan(second)
    pending = frozenset({StepState.PENDING})
    storage.write(
        Batch(
            claims=[
                Claim(first.plan.id, [1, 2], pending, "w1", T0),
                Claim(second.plan.id, [1], pending, "w2", T0),
                Claim(second.plan.id, [2], pending, "w1", T0),
            ]
        )
    )
    assert storage.running_steps() == {"w1": 3, "w2": 1}

    done = StepUpdate(first.plan.id, 1, StepState.RUNNING, StepState.SUCCESS)
    assert storage.update_steps([done]) == []
    assert storage.running_steps() == {"w1": 2, "w2": 1}
