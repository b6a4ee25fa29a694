"""An executor world's side of the requests other processes leave in the database.

A client world (a web application, the CLI, the console) cannot run plans; it leaves a request
in ``dynaflow_requests`` — execute this plan; cancel, halt or retry that one — and an executor
world takes it: any world that can run the plan for an ``execute``, the world that runs the
plan for the others. Requests are taken in batches (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL) when a notification says there are some, and every ``poll_interval`` in case one
was missed.

A world takes only what it can run: a plan whose action classes it cannot import, or whose
steps go to a queue it does not serve, is declined with the reason (``dynaflow status`` shows
it) and left for a world that can.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future
from typing import Any

from dynaflow import registry
from dynaflow.exceptions import (
    ConcurrentModification,
    DynaflowError,
    InvalidState,
    UnknownActionClass,
    UnknownPlan,
)
from dynaflow.execution_plan import ExecutionPlan
from dynaflow.executor import Executor
from dynaflow.executor.messages import Execute, RemoteDone, error_json
from dynaflow.executor.offered import after_answer, run_offered
from dynaflow.executor.threaded import ThreadedExecutor
from dynaflow.membership import alive, cannot_run
from dynaflow.persistence.base import RequestRow
from dynaflow.services import Services
from dynaflow.states import PlanState

log = logging.getLogger("dynaflow.cluster")

#: requests taken at once
BATCH = 100
#: what a poll looks at
LOOKS = ("requests", "runs", "answers")
#: seconds before a world looks again at a request it declined
DECLINED_FOR = 30.0
#: errors of an execute request the engine answers itself
ANSWERED = (ConcurrentModification, InvalidState, UnknownPlan)


class Mailbox:
    def __init__(self, services: Services, executor: Executor, queues: Collection[str]) -> None:
        self.services = services
        self.executor = executor
        self.queues = frozenset(queues)
        #: requests taken at once: twice this world's threads
        self.batch = min(BATCH, 2 * sum(queues.values())) if isinstance(queues, dict) else BATCH
        #: what a notification asked to look at: "requests", "runs", "answers" (all of them on
        #: the first poll, then every poll interval)
        self._wanted: set[str] = set(LOOKS)
        self._next = 0.0
        #: requests declined here -> when to look at them again (monotonic)
        self._declined: dict[int, float] = {}
        #: execute requests whose claim failed here, to give back (id -> why)
        self._give_back: dict[int, str] = {}
        self._lock = threading.Lock()
        self.closed = False

    def wanted(self, look: str | None = None) -> None:
        """A notification: on the next poll, look at the ``look`` ("requests", "runs" offered
        here, "answers" to this world's offers), or at all of them."""
        with self._lock:
            self._wanted.update(LOOKS if look is None else (look,))

    def poll(self, force: bool = False) -> None:
        """Take and hand on the requests for this world: what a notification asked for, and
        everything every poll interval (in case a notification was lost), or with ``force``."""
        clock = time.monotonic()
        if self.closed:
            return
        storage = self.services.storage
        with self._lock:
            if force or clock >= self._next:
                self._wanted.update(LOOKS)
                self._next = clock + storage.poll_interval
            looks, self._wanted = self._wanted, set()
        if not looks:
            return
        if self._give_back:
            self._return_failed()
        # answers come to a world that offered steps, or took over a plan whose earlier owner
        # had offered them
        if "answers" in looks and (self.spreads or self.executor.engine.remote):
            self._answers()
        if self.executor.engine.stopping:  # answers only: no new work
            self.executor.run_pending()
            return
        if self.spreads and "runs" in looks:
            self._runs()
        if "requests" in looks:
            self._requests(clock)
        self.executor.run_pending()

    def _requests(self, clock: float) -> None:
        storage = self.services.storage
        self._declined = {i: t for i, t in self._declined.items() if t > clock}
        engine = self.executor.engine
        taken = 0
        while True:
            # a share, not everything: the other worlds take the rest (they look as often)
            rows = storage.take_requests(self.services.id, self.batch, skip=self._declined)
            taken += len(rows)
            plans = storage.load_plans([row.plan_id for row in rows]) if rows else {}
            for row in rows:
                try:
                    self._handle(row, plans.get(row.plan_id))
                except Exception as exc:  # answer it: the asker must not wait for good
                    log.exception("request %s for plan %s failed", row.id, row.plan_id)
                    self._answer(row, exc)
            if len(rows) < self.batch:
                break
            # busy enough (the plans taken now start after this look): look again once they
            # have, on the next wake
            if len(engine.plans) + taken >= self.batch:
                self.wanted("requests")
                self.executor.run_pending()
                break

    @property
    def spreads(self) -> bool:
        """Whether this world takes part in spreading steps over worlds (a threaded executor
        on a database that notifies)."""
        return self.services.storage.notifies and isinstance(self.executor, ThreadedExecutor)

    def _answers(self) -> None:
        """Answers to steps this world offered: each goes to the engine."""
        engine = self.executor.engine
        for row in self.services.storage.take_answers(self.services.id):
            engine.report(RemoteDone(row))

    def _runs(self) -> None:
        """Take as many offered steps as there are free threads for, and run them."""
        executor = self.executor
        assert isinstance(executor, ThreadedExecutor)
        room = {queue: executor.free(queue) for queue in self.queues}
        if not any(room.values()):
            return
        services = self.services
        for row in services.storage.take_runs(services.id, room, skip=self._declined):
            assert row.id is not None
            try:
                registry.resolve(str(row.args.get("action_class")))
            except UnknownActionClass:  # a world that can import it runs it
                why = f"cannot import action class {row.args.get('action_class')}"
                services.storage.decline_request(row.id, services.id, why)
                self._declined[row.id] = time.monotonic() + DECLINED_FOR
                continue
            executor.run_foreign(row.queue or "default", self._runner(row))

    def _runner(self, row: RequestRow) -> Callable[[], None]:
        services = self.services

        def run() -> None:
            assert row.id is not None
            try:
                outcome, answer = run_offered(services, row)
            except Exception as exc:  # dynaflow's own failure: the owner records an error
                log.exception("offered step %s of plan %s failed to run", row.args, row.plan_id)
                services.storage.answer_request(row.id, error_json(exc))
                return
            try:
                services.storage.answer_request(row.id, None, answer)
            except DynaflowError:
                log.exception("could not answer offered step of plan %s", row.plan_id)
                return
            after_answer(services, row, outcome)
            self.wanted("runs")  # a thread is free again: take the next offer now
            self.executor.run_pending()

        return run

    def _handle(self, row: RequestRow, plan: ExecutionPlan | None) -> None:
        assert row.id is not None
        storage, engine, me = self.services.storage, self.executor.engine, self.services.id
        if plan is None:
            self._answer(row, UnknownPlan(row.plan_id))
            return
        owner = plan.record.world_id
        running_elsewhere = plan.state == PlanState.RUNNING and owner not in (None, me)
        if running_elsewhere and row.kind != "execute" and alive(storage, owner) is not None:
            assert owner is not None
            log.info(
                "request %s for plan %s goes to world %s, which runs it", row.id, plan.id, owner
            )
            storage.decline_request(row.id, me, "the plan runs in another world", forward_to=owner)
            return
        if row.kind in ("execute", "retry"):
            why = cannot_run(plan, self.queues)
            if why is not None:
                log.info("request %s: world %s %s; left to another world", row.id, me, why)
                storage.decline_request(row.id, me, why)
                self._declined[row.id] = time.monotonic() + DECLINED_FOR
                return
        future: Future[Any] = Future()
        if row.kind == "execute":
            future.add_done_callback(lambda f: self._failed(row, f))
            engine.inbox.put(_execute(row, future, plan))
            return
        if running_elsewhere:  # its world is dead: take the plan over, then operate on it
            engine.take_over(plan.id, owner)
        elif plan.state == PlanState.RUNNING and owner is None:
            engine.take_over(plan.id, None)
        future.add_done_callback(lambda f: self._answer(row, f.exception()))
        if row.kind == "cancel":
            engine.cancel(plan.id, future, bool(row.args.get("abort")))
        elif row.kind == "halt":
            engine.halt(plan.id, future)
        elif row.kind == "retry":
            engine.retry(plan.id, int(row.args["step_id"]), future)
        else:
            raise DynaflowError(f"unknown request kind {row.kind!r} (request {row.id})")

    def _failed(self, row: RequestRow, future: Future[Any]) -> None:
        """An execute request whose claim failed here (the iteration claiming the plan failed,
        say on a lost connection): give it back, so that this world or another takes it again.
        Errors the engine answers itself (the plan ended, is unknown) are not given back."""
        error = None if future.cancelled() else future.exception()
        if error is None or isinstance(error, ANSWERED):
            return
        with self._lock:
            self._give_back[row.id or 0] = f"claiming the plan failed ({type(error).__name__})"
        self.wanted("requests")

    def _return_failed(self) -> None:
        """Give back the execute requests whose claim failed (again on the next poll if the
        database is still away)."""
        with self._lock:
            failed, self._give_back = self._give_back, {}
        for request_id, why in failed.items():
            try:
                self.services.storage.decline_request(request_id, self.services.id, why)
            except DynaflowError:
                with self._lock:
                    self._give_back.setdefault(request_id, why)

    def _answer(self, row: RequestRow, error: BaseException | None) -> None:
        assert row.id is not None
        try:
            self.services.storage.answer_request(row.id, error_json(error))
        except DynaflowError:
            log.exception("could not answer request %s", row.id)


def _execute(row: RequestRow, future: Future[Any], plan: ExecutionPlan) -> Execute:
    only = row.args.get("only")
    return Execute(
        row.plan_id,
        future,
        only=int(only) if only is not None else None,
        follow_if_taken=True,
        request=row.id,
        plan=plan,
    )
