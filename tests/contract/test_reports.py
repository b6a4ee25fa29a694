"""The storage contract of what run steps report: progress (only by the world running the
step) and numbered log lines, on every storage."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dynaflow.exceptions import UnknownPlan
from dynaflow.persistence import Storage
from dynaflow.persistence.base import Claim
from dynaflow.persistence.reports import StepLogLine
from dynaflow.states import StepState

from .test_storage import T0, make_plan


def running(storage: Storage, plan_id: str, step_id: int, world: str) -> None:
    claim = Claim(plan_id, [step_id], frozenset({StepState.PENDING}), world, T0)
    assert storage.claim_steps(claim) == [step_id]


def test_progress_is_saved_only_by_the_world_running_the_step(storage: Storage) -> None:
    storage.insert_plan(make_plan("p"))
    assert not storage.save_progress("p", 1, "w-1", {"done": 1})  # pending: not running
    running(storage, "p", 1, "w-1")
    assert not storage.save_progress("p", 1, "w-2", {"done": 1})  # another world's step
    assert storage.save_progress("p", 1, "w-1", {"done": 2, "total": 5, "weight": 3})
    assert storage.load_plan("p").step(1).progress == {"done": 2, "total": 5, "weight": 3}
    assert storage.load_plans(["p"])["p"].step(1).progress == {"done": 2, "total": 5, "weight": 3}
    assert storage.get_step("p", 1).progress == {"done": 2, "total": 5, "weight": 3}
    assert storage.load_plan("p").step(2).progress is None


def test_log_lines_are_numbered_per_step_and_stored_once(storage: Storage) -> None:
    storage.insert_plan(make_plan("p"))
    at = [T0 + timedelta(seconds=i) for i in range(4)]
    assert storage.last_log_seq("p", 1) == 0
    storage.add_step_logs("p", [StepLogLine(1, 1, at[0], "one"), StepLogLine(2, 1, at[1], "a")])
    storage.add_step_logs("p", [StepLogLine(1, 2, at[2], "two")])
    # a flush tried again: what is stored already stays as it was
    storage.add_step_logs("p", [StepLogLine(1, 2, at[3], "again"), StepLogLine(1, 3, at[3], "3")])
    assert storage.last_log_seq("p", 1) == 3
    assert storage.last_log_seq("p", 2) == 1
    assert [(x.step_id, x.seq, x.message) for x in storage.step_logs("p")] == [
        (1, 1, "one"),
        (1, 2, "two"),
        (1, 3, "3"),
        (2, 1, "a"),
    ]
    assert storage.step_logs("p", 1, after=1) == [
        StepLogLine(1, 2, at[2], "two"),
        StepLogLine(1, 3, at[3], "3"),
    ]
    assert [x.seq for x in storage.step_logs("p", 1, limit=2)] == [1, 2]
    assert storage.step_logs("p", 9) == []


def test_log_lines_of_an_unknown_plan_are_refused(storage: Storage) -> None:
    with pytest.raises(UnknownPlan):
        storage.add_step_logs("missing", [StepLogLine(1, 1, T0, "x")])
