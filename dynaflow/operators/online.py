"""What ``World`` calls to operate on a plan: checks the request, then takes the path for a
plan this world runs (its engine) or for a plan no world runs (:mod:`.offline`)."""

from __future__ import annotations

from dynaflow.exceptions import ConfigurationError, InvalidState, UnknownPlan, UnknownStep
from dynaflow.execution_plan import PlanRecord
from dynaflow.executor import Executor, PlanFuture
from dynaflow.operators.offline import check_stoppable, skip_offline, stop_offline
from dynaflow.services import Services
from dynaflow.states import PlanState, StepState


class Operators:
    """Resume, skip, retry, cancel and halt, for one world (``executor`` is ``None`` in a
    client world: it plans and operates on plans no world runs, but cannot execute)."""

    def __init__(self, services: Services, executor: Executor | None) -> None:
        self.services = services
        self.executor = executor

    def execute(self, plan_id: str, only: int | None = None) -> PlanFuture:
        executor = self._executor()
        future = PlanFuture(self.services.world, plan_id)
        executor.engine.execute(plan_id, future, only)
        executor.run_pending()
        return future

    def follow(self, plan_id: str) -> PlanFuture:
        future = PlanFuture(self.services.world, plan_id)
        if self.executor is None:
            future.set_result(plan_id)
            return future
        self.executor.engine.follow_plan(plan_id, future)
        self.executor.run_pending()
        return future

    def resume(self, plan_id: str) -> PlanFuture:
        self.paused(plan_id, "resumed")
        return self.execute(plan_id)

    def skip(self, plan_id: str, step_id: int, resume: bool) -> PlanFuture:
        check_ids(plan_id, step_id)
        self.paused(plan_id, "changed by skip")
        skip_offline(self.services, plan_id, step_id)
        if resume:
            return self.execute(plan_id)
        future = PlanFuture(self.services.world, plan_id)
        future.set_result(plan_id)
        return future

    def retry(self, plan_id: str, step_id: int) -> PlanFuture:
        executor = self._executor()
        check_ids(plan_id, step_id)
        record = self.services.storage.get_plan_record(plan_id)
        step = self.services.storage.get_step(plan_id, step_id)
        if step.state != StepState.ERROR:
            raise InvalidState(
                f"step {step_id} of plan {plan_id} is {step.state}; only a failed step can be "
                "retried"
            )
        if record.state == PlanState.PAUSED:
            return self.execute(plan_id, only=step_id)
        if record.state != PlanState.RUNNING:
            raise InvalidState(f"plan {plan_id} is {record.state}; it cannot be retried")
        future = PlanFuture(self.services.world, plan_id)
        executor.engine.retry(plan_id, step_id, future)
        executor.run_pending()
        return future

    def stop(self, plan_id: str, operation: str, abort: bool = False) -> PlanFuture:
        """Cancel (``operation="cancel"``) or halt a plan."""
        _check_id(plan_id)
        record = self.services.storage.get_plan_record(plan_id)
        check_stoppable(plan_id, record.state, record.result, operation)
        future = PlanFuture(self.services.world, plan_id)
        if self.executor is None:
            stop_offline(self.services, plan_id, operation)
            future.set_result(plan_id)
            return future
        engine = self.executor.engine
        if record.state == PlanState.RUNNING and record.world_id is None:
            engine.take_over(plan_id, None)  # released: take it over, then stop it
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

    def _executor(self) -> Executor:
        if self.executor is None:
            raise ConfigurationError(
                "this World has no executor (executor=None): it can plan but not run; open a "
                "World with executor='threads' or 'inline' to execute plans"
            )
        return self.executor


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
