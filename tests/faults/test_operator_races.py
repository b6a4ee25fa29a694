"""Operators and triggers racing from two processes (issue 12, items 2 and 8).

Two child processes each open a threaded World on the same database (a SQLite file or a
PostgreSQL schema of their own) and are asked to act on one plan at the same wall-clock moment,
with a seeded offset of a few milliseconds either way. Seeds are printed and repeat with
``DYNAFLOW_FAULT_SEED=<base seed>``; ``DYNAFLOW_FAULT_ROUNDS`` changes the number of rounds.

Run them with ``python -m pytest tests/faults/test_operator_races.py -rA``.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import Databases
from .harness import STORAGES, Reader, base_seed, child_worlds, rounds, wait_for

pytestmark = pytest.mark.slow

#: the bound of a caller's wait on a future that should resolve within a fraction of a second
FUTURE = 10.0
#: a loop stops after this many bad rounds (each costs seconds of waiting; three tell enough)
ENOUGH = 3


def caller_problem(who: str, status: str, value: Any) -> str | None:
    """What is wrong with what a caller saw, if anything: a future that never resolved, or an
    error that is not one of dynaflow's."""
    if status == "ok":
        return None
    if value["timeout"]:
        return f"{who}: its future did not resolve within {FUTURE}s"
    if not value["dynaflow"]:
        return f"{who}: raised {value['type']}: {value['message']}"
    return None


@pytest.mark.timeout(300)
@pytest.mark.parametrize("storage", STORAGES)
def test_skip_and_resume_at_the_same_moment(
    storage: str, databases: Databases, tmp_path: Path
) -> None:
    """A plan paused on a failed step (``s1`` done, ``s2`` failed, ``s3`` to run); at one moment
    world P calls ``resume(plan)`` and world Q ``skip(plan, s2)`` (who does which, and who is a
    few milliseconds ahead, is seeded). Demanded, every round: each call returns or raises a
    dynaflow error (``InvalidState``, ``ConcurrentModification``), the resume's future resolves
    and the plan ends ``stopped`` or ``paused`` within a few seconds, never ``running`` with
    nothing left to run; a skip that returned left ``s2`` skipped.

    Run: ``python -m pytest tests/faults -rA -k skip_and_resume``"""
    seed = base_seed(f"skip/resume race on {storage}")
    problems: list[str] = []
    outcomes: dict[str, int] = {}
    with databases("race") as url, child_worlds(url, tmp_path, {"P": {}, "Q": {}}) as (p, q):
        reader = Reader(url)
        for n in range(rounds(24)):
            rng = random.Random(seed + n)
            plan = p.call("trigger", action="Chain", wait=10, steps=["nap", "fails", "nap"])
            assert plan["state"] == "paused", plan
            plan_id = plan["plan_id"]
            s2 = reader.run_steps(plan_id)[1]
            resumer, skipper = (p, q) if rng.random() < 0.5 else (q, p)
            offset = rng.uniform(-0.002, 0.004)
            at = time.time() + 0.05
            resumed = resumer.send("resume", at=at + max(offset, 0), plan_id=plan_id, wait=FUTURE)
            skipped = skipper.send(
                "skip", at=at + max(-offset, 0), plan_id=plan_id, step_id=s2, wait=FUTURE
            )
            r_status, r_value, _ = resumer.answer(resumed)
            s_status, s_value, _ = skipper.answer(skipped)
            row = wait_for(
                lambda plan_id=plan_id: reader.plan(plan_id),
                lambda row: row.state in ("stopped", "paused"),
                max(0.5, at + FUTURE - time.time()),
            )
            what = (
                f"resume {r_status if r_status == 'ok' else r_value['type'].rpartition('.')[2]}"
                f", skip {s_status if s_status == 'ok' else s_value['type'].rpartition('.')[2]}"
                f" -> {row.state}/{row.result}"
            )
            outcomes[what] = outcomes.get(what, 0) + 1
            found = [
                caller_problem("the resume", r_status, r_value),
                caller_problem("the skip", s_status, s_value),
            ]
            if row.state not in ("stopped", "paused"):
                finished = all(s in ("success", "skipped", "error") for s in row.run_states())
                found.append(
                    f"plan still {row.state} {FUTURE}s later"
                    + (" with every step finished" if finished else "")
                )
            if s_status == "ok" and row.steps[s2][1] != "skipped":
                found.append(f"the skip returned but s2 is {row.steps[s2][1]}")
            found = [f for f in found if f]
            if found:
                problems.append(f"round {n} (seed {seed + n}, offset {offset * 1000:+.1f} ms, "
                                f"{what}; {row}): " + "; ".join(found))  # fmt: skip
                if len(problems) == ENOUGH:
                    break
        reader.close()
    print("outcomes:", outcomes)
    assert not problems, f"{len(problems)} bad rounds:\n" + "\n".join(problems)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("storage", STORAGES)
def test_the_same_key_triggered_from_two_processes_at_once(
    storage: str, databases: Databases, tmp_path: Path
) -> None:
    """Worlds P and Q call ``trigger(Quick, idempotency_key=k).wait()`` at the same moment (a
    new key each round, seeded offset of a few milliseconds). Demanded, every round: exactly
    one plan has the key; both callers' ``wait()`` return a snapshot of that plan (neither
    raises); it ends ``stopped``/``success``.

    Run: ``python -m pytest tests/faults -rA -k same_key_triggered``"""
    seed = base_seed(f"keyed trigger race on {storage}")
    problems: list[str] = []
    outcomes: dict[str, int] = {}
    with databases("keys") as url, child_worlds(url, tmp_path, {"P": {}, "Q": {}}) as (p, q):
        reader = Reader(url)
        for n in range(rounds(24)):
            rng = random.Random(seed + n)
            key = f"order-{seed + n}"
            offset = rng.uniform(-0.003, 0.003)
            at = time.time() + 0.05
            tags = [
                child.send(
                    "trigger", at=at + delay, action="Quick", idempotency_key=key, wait=FUTURE
                )
                for child, delay in ((p, max(offset, 0)), (q, max(-offset, 0)))
            ]
            answers = [child.answer(tag) for child, tag in zip((p, q), tags, strict=True)]
            plans = reader.plans_with_key(key)
            found: list[str] = []
            if len(plans) != 1:
                found.append(f"{len(plans)} plans with the key")
            for name, (status, value, _) in zip("PQ", answers, strict=True):
                if status != "ok":
                    found.append(f"{name}'s trigger/wait raised {value['type']}: "
                                 f"{value['message'][:200]}")  # fmt: skip
                elif plans and value["plan_id"] != plans[0]:
                    found.append(f"{name} got plan {value['plan_id']}, not {plans[0]}")
            what = ", ".join(
                value["state"] if status == "ok" else value["type"].rpartition(".")[2]
                for status, value, _ in answers
            )
            outcomes[what] = outcomes.get(what, 0) + 1
            if len(plans) == 1:
                row = wait_for(
                    lambda plan_id=plans[0]: reader.plan(plan_id),
                    lambda row: row.state == "stopped",
                    FUTURE,
                )
                if (row.state, row.result) != ("stopped", "success"):
                    found.append(f"the plan ended {row}")
            if found:
                problems.append(
                    f"round {n} (seed {seed + n}, offset {offset * 1000:+.1f} ms): "
                    + "; ".join(found)
                )
        reader.close()
    print("outcomes (P, Q):", outcomes)
    assert not problems, f"{len(problems)} bad rounds:\n" + "\n".join(problems)
