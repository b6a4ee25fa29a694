"""Sub-plans: import many records, each in a plan of its own, at most five at a time.

``ImportAll`` is a ``SubPlans`` action: its run step plans one ``ImportRecord`` plan per record
(100 at a time, as they are needed), starts at most ``concurrency`` of them at once on whatever
executor worlds serve their queue, and waits suspended — holding no thread — until they have
all ended. Each child tells its parent when it ends; the parent's output counts them by
result. One record is broken: its plan pauses, the parent fails naming it, and once the record
is repaired ``world.resume(parent, sub_plans=True)`` resumes the paused child and the parent.

Run it: ``python examples/import_records.py [COUNT]`` (10,000 records by default).
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from dynaflow import Action, SubPlan, SubPlans, World


class Ledger:
    """Where the records go; it also notes how many imports ran at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows: dict[int, str] = {}
        self.running = self.most = 0
        self.broken = {7}

    def __enter__(self) -> Ledger:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.running -= 1


LEDGER = Ledger()


class ImportRecord(Action):
    def run(self) -> None:
        number = self.input["number"]
        with LEDGER:
            if number in LEDGER.broken:
                raise ValueError(f"record {number} has no name")
            LEDGER.rows[number] = f"record-{number}"


class ImportAll(SubPlans, Action):
    batch_size = 100
    concurrency = 5

    def plan(self, count: int) -> None:
        self.plan_self(count=count)

    def create_sub_plans(self) -> Any:
        for number in range(self.input["count"]):
            yield SubPlan(ImportRecord, number=number)


def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder, 'records.db')}"
        with World(url, workers=8) as world:
            plan = world.trigger(ImportAll, count).wait(timeout=600)
            print(f"plan: {plan.state} / {plan.result}")
            counts = plan.actions[0].output["sub_plans"]["counts"]
            print(f"sub-plans: {counts}")
            (paused,) = world.find_plans(parent=plan.id, state="paused")
            (step,) = [s for s in world.get_plan(paused.id).steps if s.error is not None]
            print(f"paused child: {step.error.message}")

            LEDGER.broken.clear()  # repair the record, then resume the child and the parent
            world.resume(plan.id, sub_plans=True).result(timeout=600)
            plan = world.follow(plan.id).result(timeout=600)
            print(f"after resume: {plan.state} / {plan.result}")
            print(f"sub-plans: {plan.actions[0].output['sub_plans']['counts']}")
            print(f"records imported: {len(LEDGER.rows)} of {count}")
            print(f"never more than 5 at once: {LEDGER.most <= 5}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
