"""Worlds judged dead while they live (issue 12, items 6 and 7), with real processes.

* item 6: a world stalled by SIGSTOP past its lease loses its plan to another world; when it is
  continued (SIGCONT), none of its writes may land: it was fenced off;
* item 7: a healthy world is taken over neither by a world with a shorter lease nor by one
  whose clock runs ahead: expiry is judged by the owner's lease and one clock.

Every world is a child process (:mod:`.child`) with a threaded executor; steps mark their start
and end in ``fault_marks`` (:mod:`.actions`). Seeds are printed and repeat with
``DYNAFLOW_FAULT_SEED=<base seed>``; ``DYNAFLOW_FAULT_ROUNDS`` changes the number of rounds.

Run them with ``python -m pytest tests/faults/test_stale_worlds.py -rA``.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from . import actions
from .conftest import Databases
from .harness import STORAGES, ChildWorld, Reader, Row, base_seed, child_worlds, rounds, wait_for

pytestmark = pytest.mark.slow

#: the lease of the worlds of item 6 (heartbeats every lease / 3)
LEASE = 1.5
#: a loop stops after this many bad rounds (three tell enough)
ENOUGH = 3


def of_world(world_id: str | None, base: str) -> bool:
    """Whether ``world_id`` is the world ``base`` (or ``base`` going on under a new id after it
    was declared dead: ``base~1``, ...)."""
    return world_id is not None and (world_id == base or world_id.startswith(f"{base}~"))


def holds_write_lock(url: str) -> bool:
    """Whether another connection holds the write lock of a SQLite database now (always
    ``False`` on PostgreSQL, where a stopped world's open transaction locks only its rows)."""
    if not url.startswith("sqlite"):
        return False
    conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0.05, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


def takeover_of(row: Row, owner: str) -> int | None:
    """The history id of the row that records the plan taken over from ``owner``, if any."""
    for hid, event, _, _, detail in row.history:
        if event == "plan running" and of_world((detail or {}).get("from"), owner):
            return hid
    return None


@pytest.mark.timeout(420)
@pytest.mark.parametrize("storage", STORAGES)
def test_a_stalled_world_cannot_write_after_its_plan_was_taken_over(
    storage: str, databases: Databases, tmp_path: Path
) -> None:
    """World A (lease 1.5 s) runs a sequence ``s1``..``s4``; it is SIGSTOPped during ``s2`` (a
    seeded moment of its 0.6 s). World B (lease 1.5 s, another process) takes the plan over:
    ``s2`` is re-run if it is idempotent or errors "abnormal termination" and the plan pauses
    if not (seeded, per round). Then A is SIGCONTed, and the test waits until A's run of ``s2``
    has ended and A no longer executes the plan.

    Demanded, every round: no history row of the plan is written by A (under any id) after
    B's takeover row, so no "step success" of A for ``s2`` and no claim of ``s3``; A never
    starts ``s3`` or ``s4``; and the plan ends consistently: stopped/success, or paused with
    ``s2`` in error and then finished by a resume (stopped/success).

    Run: ``python -m pytest tests/faults -rA -k stalled_world``"""
    seed = base_seed(f"stalled world on {storage}")
    problems: list[str] = []
    outcomes: dict[str, int] = {}
    with databases("stall") as url:
        reader = Reader(url)
        with child_worlds(url, tmp_path, {"B": {"lease": LEASE, "world_id": "B"}}) as [b]:
            for n in range(rounds(20)):
                found, what = stall_round(url, reader, b, n, seed + n, tmp_path)
                outcomes[what] = outcomes.get(what, 0) + 1
                if found:
                    problems.append(f"round {n} (seed {seed + n}, {what}): " + "; ".join(found))
                    if len(problems) == ENOUGH:
                        break
        reader.close()
    print("outcomes:", outcomes)
    assert not problems, f"{len(problems)} bad rounds:\n" + "\n".join(problems)


def stall_round(
    url: str, reader: Reader, b: ChildWorld, n: int, seed: int, directory: Path
) -> tuple[list[str], str]:
    """One round of the test above: its problems, and a summary of what happened."""
    rng = random.Random(seed)
    strict = rng.random() < 0.6
    a_id = f"A{n}"
    a = ChildWorld(url, directory / f"{a_id}.log", lease=LEASE, world_id=a_id)
    found: list[str] = []
    try:
        plan_id = a.call(
            "trigger",
            action="Chain",
            steps=["nap", "strict" if strict else "nap", "nap", "nap"],
            seconds=[0.02, 0.6, 0.05, 0.05],
            mark=url,
        )
        started = wait_for(
            lambda: actions.marks(url, plan_id),
            lambda marks: any(m[1] == "s2" and m[2] == "start" for m in marks),
            10,
        )
        assert any(m[1] == "s2" for m in started), f"s2 never started: {started}"
        time.sleep(rng.uniform(0.0, 0.3))
        a.signal(signal.SIGSTOP)
        for _ in range(5):  # stopped inside a write transaction, A would lock B out (SQLite)
            if not holds_write_lock(url):
                break
            a.signal(signal.SIGCONT)
            time.sleep(0.01)
            a.signal(signal.SIGSTOP)
        row = wait_for(
            lambda: reader.plan(plan_id), lambda row: takeover_of(row, a_id) is not None, 15
        )
        taken = takeover_of(row, a_id)
        a.signal(signal.SIGCONT)
        if taken is None:
            return [f"B did not take the plan over within 15 s: {row}"], "no takeover"
        a_now = a.call("settle", plan_id=plan_id, step="s2", timeout=15)
        row = wait_for(
            lambda: reader.plan(plan_id), lambda row: row.state in ("paused", "stopped"), 10
        )
        what = f"{'strict' if strict else 'idempotent'} s2, B -> {row.state}/{row.result}"
        late = [
            f"{event}{'' if step is None else f' (step {step})'} by {world}"
            for hid, event, step, world, _ in row.history
            if hid > taken and of_world(world, a_id)
        ]
        if late:
            found.append(f"A (now {a_now}) wrote after B's takeover: {late}")
        s3_s4 = [m for m in actions.marks(url, plan_id) if m[1] in ("s3", "s4")]
        if any(of_world(m[3], a_id) for m in s3_s4):
            found.append(f"A ran later steps: {[m for m in s3_s4 if of_world(m[3], a_id)]}")
        if row.state == "paused":
            status, value, _ = b.answer(b.send("resume", plan_id=plan_id, wait=5), 15)
            after = reader.plan(plan_id)
            what += f", resumed -> {after.state}/{after.result}"
            if status != "ok" or (after.state, after.result) != ("stopped", "success"):
                found.append(
                    f"the resume did not finish the plan: "
                    f"{value if status == 'ok' else value['type'] + ': ' + value['message']}; "
                    f"{after}"
                )
        elif (row.state, row.result) != ("stopped", "success"):
            found.append(f"the plan ended {row}")
        if late:
            what += ", A wrote late"
        return found, what
    finally:
        a.close()


def healthy_world_round(
    url: str, directory: Path, a_options: dict[str, Any], b_options: dict[str, Any]
) -> list[str]:
    """World A runs a plan of one non-idempotent step of 5 s while world B (another process)
    runs beside it; the problems seen: A's wait must return, its plan end stopped/success, its
    step run once, never be marked "abnormal termination", and the plan never be taken over
    (by B, or by A itself after B declared it dead)."""
    worlds = {"A": {**a_options, "world_id": "A"}, "B": {**b_options, "world_id": "B"}}
    with child_worlds(url, directory, worlds) as (a, _b):
        reader = Reader(url)
        plan_id = a.call("trigger", action="Chain", steps=["strict"], seconds=5.0, mark=url)
        status, value, seconds = a.answer(a.send("wait", plan_id=plan_id, timeout=15), 30)
        found = []
        if status != "ok":
            found.append(f"A's wait raised {value['type']}: {value['message']}")
        row = wait_for(lambda: reader.plan(plan_id), lambda row: row.state != "running", 10)
        marks = actions.marks(url, plan_id)
        if (row.state, row.result) != ("stopped", "success"):
            found.append(f"A's plan ended {row} after {seconds:.1f}s")
        if takeover_of(row, "A") is not None:
            found.append(
                "the plan was taken over from A: "
                + str([h[1:4] for h in row.history if h[3] is not None and h[3] != "A"])
            )
        abnormal = [h for h in row.history if "abnormal termination" in str(h[4])]
        if abnormal:
            found.append(f"the step was marked abnormal termination by {abnormal[0][3]}")
        starts = [m[3] for m in marks if m[2] == "start"]
        if starts != ["A"]:
            found.append(f"the step was started by {starts}, expected once by A")
        reader.close()
    return found


@pytest.mark.timeout(120)
@pytest.mark.parametrize("storage", STORAGES)
def test_a_healthy_world_is_not_taken_over_by_one_with_a_shorter_lease(
    storage: str, databases: Databases, tmp_path: Path
) -> None:
    """World A (lease 60 s: it beats every 20 s) runs a step of 5 s; world B (lease 2 s) runs
    beside it the whole time. Demanded: A's lease is judged by A's own setting, so B never
    takes the plan over; the step succeeds, once, in A, never marked "abnormal
    termination".

    Run: ``python -m pytest tests/faults -rA -k shorter_lease``"""
    with databases("lease") as url:
        found = healthy_world_round(url, tmp_path, {"lease": 60.0}, {"lease": 2.0})
    assert not found, "; ".join(found)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("storage", STORAGES)
def test_a_healthy_world_is_not_taken_over_by_one_whose_clock_runs_ahead(
    storage: str, databases: Databases, tmp_path: Path
) -> None:
    """World A (lease 3 s) runs a step of 5 s; world B (lease 3 s, another process whose
    dynaflow clock runs 120 s ahead of the wall clock) runs beside it the whole time.
    Demanded: expiry is judged by one clock (the database's), so B never takes the plan over;
    the step succeeds, once, in A, never marked "abnormal termination".

    Run: ``python -m pytest tests/faults -rA -k clock_runs_ahead``"""
    with databases("clock") as url:
        found = healthy_world_round(
            url, tmp_path, {"lease": 3.0}, {"lease": 3.0, "clock_offset": 120.0}
        )
    assert not found, "; ".join(found)
