"""The world's reads: one plan (by its id, or a prefix of it), and plans found by what they
are."""

from __future__ import annotations

from typing import TYPE_CHECKING, Unpack

from dynaflow.exceptions import AmbiguousPlanId, ConfigurationError, UnknownPlan
from dynaflow.execution_plan import ExecutionPlan, PlanRecord
from dynaflow.persistence import Storage
from dynaflow.persistence.reports import StepLogLine
from dynaflow.plan_filters import PlanFilters, plan_filter
from dynaflow.states import PlanResult, PlanState

if TYPE_CHECKING:
    pass

#: how many candidates an ambiguous plan id prefix names
AMBIGUOUS_SHOWN = 10


class PlanReads:
    """See the module's docstring; :class:`~dynaflow.World` provides the storage."""

    storage: Storage

    if TYPE_CHECKING:

        def _check_open(self) -> None: ...

    def get_plan(self, plan_id: str) -> ExecutionPlan:
        """A read-only snapshot of the plan; :class:`UnknownPlan` if there is none."""
        self._check_open()
        if not isinstance(plan_id, str):
            raise UnknownPlan(plan_id)
        return self.storage.load_plan(plan_id)

    def resolve_plan_id(self, plan_id: str) -> str:
        """The whole id of the plan whose id is ``plan_id`` or starts with it (case-sensitive):
        :class:`UnknownPlan` if there is none, :class:`AmbiguousPlanId` (naming some of them)
        if several plans' ids start with it."""
        self._check_open()
        if not isinstance(plan_id, str) or not plan_id:
            raise UnknownPlan(plan_id)
        found = self.storage.plan_ids_starting_with(plan_id, limit=AMBIGUOUS_SHOWN + 1)
        if found and found[0] == plan_id:  # a whole id sorts before the longer ones
            return plan_id
        if not found:
            raise UnknownPlan(plan_id)
        if len(found) > 1:
            raise AmbiguousPlanId(plan_id, found[:AMBIGUOUS_SHOWN], len(found) > AMBIGUOUS_SHOWN)
        return found[0]

    def find_plans(
        self,
        *,
        page: int = 1,
        per_page: int = 50,
        order_by: str = "-created_at",
        **filters: Unpack[PlanFilters],
    ) -> list[PlanRecord]:
        """Plan rows matching every given filter (:class:`~dynaflow.plan_filters.PlanFilters`),
        newest first by default. ``page`` counts from 1."""
        self._check_open()
        if not isinstance(page, int) or page < 1:
            raise ConfigurationError(f"page must be an int >= 1, got {page!r}")
        if not isinstance(per_page, int) or per_page < 1:
            raise ConfigurationError(f"per_page must be an int >= 1, got {per_page!r}")
        return self.storage.find_plans(
            plan_filter(**filters),
            offset=(page - 1) * per_page,
            limit=per_page,
            order_by=order_by,
        )

    def count_plans(self, **filters: Unpack[PlanFilters]) -> int:
        """How many plans :meth:`find_plans` finds with the same filters, without paging."""
        self._check_open()
        return self.storage.count_plans(plan_filter(**filters))

    def plan_counts(
        self, **filters: Unpack[PlanFilters]
    ) -> dict[tuple[PlanState, PlanResult], int]:
        """How many plans matching the filters there are in each (state, result), in one
        grouped count (the sub-plans of a plan: ``parent=``)."""
        self._check_open()
        return self.storage.plan_counts(plan_filter(**filters))

    def step_logs(
        self, plan_id: str, step_id: int | None = None, *, after: int = 0, limit: int = 1000
    ) -> list[StepLogLine]:
        """What the plan's run steps logged (``self.log``), by step then line number; one
        step's lines with ``step_id``, those numbered after ``after``, at most ``limit``."""
        self._check_open()
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ConfigurationError(f"limit must be an int >= 1, got {limit!r}")
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise ConfigurationError(f"after must be an int >= 0, got {after!r}")
        self.storage.get_plan_record(plan_id)  # UnknownPlan
        return self.storage.step_logs(plan_id, step_id, after=after, limit=limit)
