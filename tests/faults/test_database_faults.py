"""Database faults injected for real under a live world (issue 12, items 3, 4 and 9).

* item 3: PostgreSQL backends of the world terminated (``pg_terminate_backend``) mid-run;
* item 4: SQLite disk full: the world's process gets a file-size limit
  (``RLIMIT_FSIZE``, SIGXFSZ ignored, so writes fail with EFBIG) mid-run, later lifted;
* item 9: SQLite: a long finalize holds the write lock; another process's trigger waits the busy
  timeout, then fails with ``DatabaseBusy`` saying what holds the lock and how to avoid it.

Every world is a child process (:mod:`.child`) with a threaded executor. Seeds are printed and
repeat with ``DYNAFLOW_FAULT_SEED=<base seed>``.

Run them with ``python -m pytest tests/faults/test_database_faults.py -rA``.
"""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dynaflow import World

from .harness import (
    Reader,
    base_seed,
    child_worlds,
    is_raw_database_error,
    postgres_database,
    rounds,
    sqlite_database,
    wait_for,
    with_application_name,
)

pytestmark = pytest.mark.slow


def caller_problem(who: str, status: str, value: Any) -> str | None:
    """What is wrong with what a caller saw: a raw database error, or a future that did not
    resolve in time. A dynaflow error is acceptable."""
    if status == "ok":
        return None
    if value["timeout"]:
        return f"{who}: its future did not resolve in time"
    if is_raw_database_error(value) or not value["dynaflow"]:
        return f"{who} raised {value['type']}: {value['message'][:300]}"
    return None


# -- item 3: PostgreSQL connections terminated --------------------------------------------------


def terminate(admin: sa.Engine, application_name: str) -> int:
    """Terminate every backend of the sessions named ``application_name``; how many."""
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


@pytest.mark.postgres
@pytest.mark.timeout(180)
def test_postgres_connections_terminated_mid_run(pg_admin: sa.Engine, tmp_path: Path) -> None:
    """A world in a child process runs a sequence of 6 steps of 0.2 s; three times during the
    run (seeded moments), every PostgreSQL backend of that world (found by its
    ``application_name``) is terminated; the server itself stays up. A few rounds, one world.

    Demanded: the caller (``trigger`` and the future's ``result`` in the child) never sees a raw
    ``sqlalchemy.exc.OperationalError`` (a ``DynaflowError`` at most), and within 20 s the plan
    ends ``stopped``/``success`` in that same world, which is still alive.

    Run: ``python -m pytest tests/faults -rA -k connections_terminated``"""
    seed = base_seed("terminated backends")
    problems: list[str] = []
    with postgres_database(pg_admin) as url:
        app = f"dynaflow-fault-{uuid.uuid4().hex[:12]}"
        reader = Reader(url)
        with child_worlds(with_application_name(url, app), tmp_path, {"W": {}}) as [w]:
            for n in range(rounds(3)):
                rng = random.Random(seed + n)
                status, value, _ = w.answer(
                    w.send("trigger", action="Chain", steps=["nap"] * 6, seconds=0.2)
                )
                if status != "ok":
                    problems.append(f"round {n}: {caller_problem('trigger', status, value)}")
                    break
                plan_id = value
                waiting = w.send("wait", plan_id=plan_id, timeout=20)
                start = time.monotonic()
                killed = []
                for at in sorted(rng.uniform(0.05, 1.2) for _ in range(3)):
                    time.sleep(max(0.0, start + at - time.monotonic()))
                    killed.append(terminate(pg_admin, app))
                status, value, _ = w.answer(waiting, 40)
                found = [caller_problem("the plan's future", status, value)]
                row = wait_for(
                    lambda plan_id=plan_id: reader.plan(plan_id),
                    lambda row: (row.state, row.result) == ("stopped", "success"),
                    20,
                )
                if (row.state, row.result) != ("stopped", "success"):
                    found.append(f"20 s later the plan is {row}")
                if not w.process.is_alive():
                    found.append("the world's process died")
                found = [f for f in found if f]
                print(f"round {n} (seed {seed + n}): backends terminated {killed}; {row}")
                if found:
                    problems.append(f"round {n} (seed {seed + n}): " + "; ".join(found))
                    break  # each bad round costs 20 s; one tells enough
        reader.close()
    assert not problems, "\n".join(problems)


# -- item 4: SQLite disk full ----------------------------------------------------------------------

#: the file-size limit: far below the size of the database and its WAL, so that every write of
#: a page fails with EFBIG, which SQLite reports as "disk I/O error" (SQLITE_IOERR_WRITE; a
#: full disk, ENOSPC, would be "database or disk is full": the same fault to the engine)
FSIZE = 1024


@pytest.mark.timeout(180)
def test_sqlite_disk_full_mid_run(sqlite_template: Path, tmp_path: Path) -> None:
    """A world in a child process runs two plans of 10 steps of 0.1 s; at a seeded moment the
    process gets a file-size limit of 1 KiB (``RLIMIT_FSIZE``; SIGXFSZ ignored, so every write
    to the database or its WAL fails with EFBIG), held for a seeded 0.5-1.5 s, then lifted.

    Demanded: no raw ``sqlite3.OperationalError`` (or SQLAlchemy's) reaches a caller (a
    ``DynaflowError`` at most), both futures resolve, and within 20 s of the lift both plans
    end ``stopped``; a plan the world released instead (``running``, no owner) is finished by
    a new world.

    Run: ``python -m pytest tests/faults -rA -k disk_full``"""
    rng = random.Random(base_seed("disk full"))
    with (
        sqlite_database(sqlite_template, tmp_path, "full") as url,
        child_worlds(url, tmp_path, {"W": {"ignore_sigxfsz": True}}) as [w],
    ):
        reader = Reader(url)
        plans = [
            w.call("trigger", action="Chain", steps=["nap"] * 10, seconds=0.1) for _ in range(2)
        ]
        hold = rng.uniform(0.5, 1.5)
        waits = [w.send("wait", plan_id=plan_id, timeout=hold + 22) for plan_id in plans]
        time.sleep(rng.uniform(0.2, 0.5))
        w.call("fsize", limit=FSIZE)
        time.sleep(hold)
        w.call("fsize", limit=None)
        lifted = time.monotonic()
        print(f"limit held {hold:.2f}s")
        problems = []
        for plan_id, tag in zip(plans, waits, strict=True):
            status, value, _ = w.answer(tag, hold + 40)
            problems.append(caller_problem(f"plan {plan_id[:8]}'s future", status, value))
            row = wait_for(
                lambda plan_id=plan_id: reader.plan(plan_id),
                lambda row: (
                    row.state == "stopped" or (row.state, row.world_id) == ("running", None)
                ),
                max(0.5, lifted + 20 - time.monotonic()),
            )
            if (row.state, row.world_id) == ("running", None):  # released: a new world adopts it
                with World(url, lease=5):
                    row = wait_for(
                        lambda plan_id=plan_id: reader.plan(plan_id),
                        lambda row: row.state == "stopped",
                        20,
                    )
            if row.state != "stopped":
                problems.append(f"plan {plan_id[:8]} still {row} 20 s after the lift")
            print(f"plan {plan_id[:8]}: {status} {value if status == 'ok' else value['type']}; "
                  f"{row}")  # fmt: skip
        reader.close()
    problems = [p for p in problems if p]
    assert not problems, "; ".join(problems)


# -- item 9: a long finalize and another writer ---------------------------------------------------

FINALIZE = 6.0
#: the busy timeout both worlds are given in the URL (``?timeout=``): well under the finalize
BUSY = 1.0


@pytest.mark.timeout(120)
def test_a_writer_blocked_by_a_long_finalize_fails_with_database_busy(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """SQLite has one writer, and a finalize holds its write lock for its whole run (the
    finalize phase is one transaction, by design: what a finalizer writes commits with the
    steps' states). Letting other writers in meanwhile would take a deferred transaction, which
    fails at once (SQLITE_BUSY_SNAPSHOT, no waiting) when another writer committed since it
    read: spurious failures for a wait. So the wait stays, and its end is made clear.

    World F (a child process) runs a plan whose finalize takes 6 s; once it started, world G
    (another process) triggers an unrelated plan. Both open the database with ``?timeout=1``.

    Demanded: G's ``trigger`` fails within a few seconds, while the finalize still runs, with
    ``DatabaseBusy`` (not ``PlanningFailed``, not a raw ``OperationalError``) whose message says
    what holds the lock and how to avoid it; nothing of G's plan is written; F's plan ends
    ``stopped``/``success``; and once the finalize is over G triggers and runs a plan.

    Run: ``python -m pytest tests/faults -rA -k long_finalize``"""
    started, ended = tmp_path / "finalize.started", tmp_path / "finalize.ended"
    with sqlite_database(sqlite_template, tmp_path, "finalize") as url:
        reader = Reader(url)
        with child_worlds(f"{url}?timeout={BUSY:g}", tmp_path, {"F": {}, "G": {}}) as [f, g]:
            slow = f.call(
                "trigger",
                action="SlowFinalize",
                seconds=FINALIZE,
                started=str(started),
                ended=str(ended),
            )
            wait_for(started.exists, bool, 10)
            assert started.exists(), "the finalize did not start"
            status, value, seconds = g.answer(g.send("trigger", action="Quick", wait=40), 60)
            finalize_over = ended.exists()
            plans_meanwhile = reader.plan_ids()
            slow_status, slow_value, _ = f.answer(f.send("wait", plan_id=slow, timeout=30), 40)
            after = g.answer(g.send("trigger", action="Quick", wait=20), 30)
        plans_after = reader.plan_ids()
        reader.close()
    assert status == "error", f"G's trigger returned {value} while the finalize held the lock"
    assert value["type"] == "dynaflow.exceptions.DatabaseBusy", value["traceback"]
    for words in ("finalize", "write lock", f"{BUSY:g} s", "?timeout=", "run()", "PostgreSQL"):
        assert words in value["message"], f"{words!r} not in: {value['message']}"
    assert seconds < BUSY + 3 and not finalize_over, f"G's trigger failed after {seconds:.1f}s" + (
        ", after the finalize ended" if finalize_over else ""
    )
    assert plans_meanwhile == [slow], "G's failed trigger wrote a plan"
    assert slow_status == "ok", slow_value
    assert (slow_value["state"], slow_value["result"]) == ("stopped", "success"), slow_value
    assert after[0] == "ok" and after[1]["state"] == "stopped", after
    assert len(plans_after) == 2
