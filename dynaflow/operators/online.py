"""What ``World`` calls to operate on a plan, whatever process runs it: checks the request,
then takes the path for a plan this world runs (its engine), for a plan a live world elsewhere
runs (a request through the database, answered by that world), or for a plan no live world
runs (:mod:`.offline`, or a request any executor world takes when code has to run)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dynaflow.clock import now
from dynaflow.exceptions import ConfigurationError, InvalidState, UnknownPlan, UnknownStep
from dynaflow.execution_plan import PlanRecord
from dynaflow.executor import Executor, PlanFuture
from dynaflow.following import Follower
from dynaflow.membership import alive
from dynaflow.operators.offline import check_stoppable, skip_offline, stop_offline
from dynaflow.persistence.base import Batch, HistoryRow, RequestRow
from dynaflow.services import Services
from dynaflow.states import PlanState, StepState


class Operators:
    """Resume, skip, retry, cancel and halt, for one world (``executor`` is ``None`` in a
    client world: it leaves what needs running to executor worlds, through the database)."""

    def __init__(
        self,
        services: Services,
        executor: Executor | None,
        follower: Follower,
        listen: Callable[[], None],
    ) -> None:
        self.services = services
        self.executor = executor
        self.follower = follower
        self._listen = listen

    def execute(
        self, plan_id: str, only: int | None = None, *, follow_if_taken: bool = False
    ) -> PlanFuture:
        """Run a planned or paused plan; ``follow_if_taken``: if another world starts it
        first, follow that execution instead of failing. Without an executor here, any
        executor world that can run it does."""
        if self.executor is None:
            args = {} if only is None else {"only": only}
            return self.request(plan_id, "execute", args, None)
        future = PlanFuture(self.services.world, plan_id)
        self.executor.engine.execute(plan_id, future, only, follow_if_taken=follow_if_taken)
        self.executor.run_pending()
        return future

    def follow(self, plan_id: str) -> PlanFuture:
        future = PlanFuture(self.services.world, plan_id)
        if self.executor is None:
            self._listen()
            self.follower.follow(future)
            return future
        self.executor.engine.follow_plan(plan_id, future)
        self.executor.run_pending()
        return future

    def request(
        self, plan_id: str, kind: str, args: dict[str, Any], world_id: str | None
    ) -> PlanFuture:
        """Leave a request for the executor world ``world_id`` (``None``: any that can run
        the plan); the future resolves once it is answered and the execution has ended."""
        storage = self.services.storage
        row = RequestRow(plan_id, kind, args, storage.now(), world_id, self.services.id)
        self._listen()
        storage.add_request(row)
        future = PlanFuture(self.services.world, plan_id)
        self.follower.follow(future, row.id, kind)
        return future

    def handed_off(self, plan_id: str, request_id: int, *, uncommitted: bool = False) -> PlanFuture:
        """The future of a plan handed to executor worlds by an execute request (which an
        application's transaction may not have committed yet: ``uncommitted``)."""
        self._listen()
        future = PlanFuture(self.services.world, plan_id)
        self.follower.follow(future, request_id, "execute", uncommitted=uncommitted)
        return future

    def _owner(self, record: PlanRecord) -> str | None:
        """The live world other than this one that runs the plan, if there is one."""
        owner = record.world_id
        if record.state != PlanState.RUNNING or owner is None:
            return None
        if owner == self.services.id and self.executor is not None:
            return None
        return owner if alive(self.services.storage, owner) is not None else None

    def note(
        self, plan_id: str, operation: str, by: str | None, step_id: int | None = None, **flags: Any
    ) -> HistoryRow:
        """The history row that records an operator's action: ``"operator <operation>"``, with
        who asked (``by``) and the options given in its detail."""
        if by is not None and not isinstance(by, str):
            raise ConfigurationError(f"by= names who asks, as a str; got {by!r}")
        detail = {**({"by": by} if by is not None else {}), **{k: v for k, v in flags.items() if v}}
        return HistoryRow(
            plan_id, now(), f"operator {operation}", step_id, self.services.id, detail or None
        )

    def record(self, row: HistoryRow) -> None:
        self.services.storage.write(Batch(history=[row]))

    def resume(self, plan_id: str, by: str | None = None) -> PlanFuture:
        self.paused(plan_id, "resumed")
        self.record(self.note(plan_id, "resume", by))
        return self.execute(plan_id)

    def skip(self, plan_id: str, step_id: int, resume: bool, by: str | None = None) -> PlanFuture:
        check_ids(plan_id, step_id)
        self.paused(plan_id, "changed by skip")
        note = self.note(plan_id, "skip", by, step_id, resume=resume)
        skip_offline(self.services, plan_id, step_id, note)
        if resume:
            return self.execute(plan_id)
        future = PlanFuture(self.services.world, plan_id)
        future.set_result(plan_id)
        return future

    def retry(self, plan_id: str, step_id: int, by: str | None = None) -> PlanFuture:
        check_ids(plan_id, step_id)
        record = self.services.storage.get_plan_record(plan_id)
        step = self.services.storage.get_step(plan_id, step_id)
        if step.state != StepState.ERROR:
            raise InvalidState(
                f"step {step_id} of plan {plan_id} is {step.state}; only a failed step can be "
                "retried"
            )
        if record.state not in (PlanState.PAUSED, PlanState.RUNNING):
            raise InvalidState(f"plan {plan_id} is {record.state}; it cannot be retried")
        self.record(self.note(plan_id, "retry", by, step_id))
        if record.state == PlanState.PAUSED:
            return self.execute(plan_id, only=step_id)
        owner = self._owner(record)
        if owner is not None or self.executor is None:
            return self.request(plan_id, "retry", {"step_id": step_id}, owner)
        future = PlanFuture(self.services.world, plan_id)
        self.executor.engine.retry(plan_id, step_id, future)
        self.executor.run_pending()
        return future

    def stop(
        self, plan_id: str, operation: str, abort: bool = False, by: str | None = None
    ) -> PlanFuture:
        """Cancel (``operation="cancel"``) or halt a plan."""
        _check_id(plan_id)
        record = self.services.storage.get_plan_record(plan_id)
        check_stoppable(plan_id, record.state, record.result, operation)
        note = self.note(plan_id, operation, by, abort=abort)
        owner = self._owner(record)
        if owner is not None:  # a live world runs it: it does it
            self.record(note)
            return self.request(plan_id, operation, {"abort": abort}, owner)
        future = PlanFuture(self.services.world, plan_id)
        if self.executor is None:
            stop_offline(self.services, plan_id, operation, note)
            future.set_result(plan_id)
            return future
        self.record(note)
        engine = self.executor.engine
        if record.state == PlanState.RUNNING and record.world_id != self.services.id:
            # released, or its world is dead: take it over, then stop it
            engine.take_over(plan_id, record.world_id)
        if operation == "cancel":
            engine.cancel(plan_id, future, abort)
        else:
            engine.halt(plan_id, future)
        self.executor.run_pending()
        return future

    def paused(self, plan_id: str, what: str) -> PlanRecord:
        """The plan's record; :class:`InvalidState` unless it is paused."""
        _check_id(plan_id)
        record = self.services.storage.get_plan_record(plan_id)
        if record.state != PlanState.PAUSED:
            raise InvalidState(
                f"plan {plan_id} is {record.state}; only a paused plan can be {what}"
                + (" (it is still executing; wait for it)" if record.state == "running" else "")
            )
        return record


#: step ids are positive 64-bit integers
MAX_STEP_ID = 2**63 - 1


def _check_id(plan_id: object) -> None:
    if not isinstance(plan_id, str):
        raise UnknownPlan(plan_id)


def check_ids(plan_id: object, step_id: object) -> None:
    """:class:`UnknownPlan` / :class:`UnknownStep` for ids no plan or step can have: a plan id
    is a str, a step id an int (not a bool, a float or a numeric string) from 1 to 2**63 - 1."""
    _check_id(plan_id)
    if type(step_id) is not int or not 1 <= step_id <= MAX_STEP_ID:
        raise UnknownStep(plan_id, step_id)
