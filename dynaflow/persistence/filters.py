"""Which plans :meth:`Storage.find_plans` returns, and in which order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dynaflow.exceptions import ConfigurationError
from dynaflow.execution_plan import PlanRecord
from dynaflow.states import PlanResult, PlanState


@dataclass(frozen=True, slots=True)
class PlanFilter:
    """Which plans :meth:`Storage.find_plans` and :meth:`Storage.count_plans` return: those
    matching every field that is set. ``state`` and ``result`` match any value given (an empty
    tuple: no plan); ``label``, ``action`` (the root action class name) and ``parent`` (the plan
    that spawned it) match exactly; ``text`` is a substring of the label or the id, in any case;
    ``created_after`` and ``created_before`` bound ``created_at`` (the first inclusive)."""

    state: tuple[PlanState, ...] | None = None
    result: tuple[PlanResult, ...] | None = None
    label: str | None = None
    action: str | None = None
    text: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    #: sub-plans of this plan
    parent: str | None = None

    def matches(self, record: PlanRecord) -> bool:
        """Whether ``record`` passes the filter (the SQL storage builds its WHERE from the
        same fields)."""
        created = record.created_at
        return (
            (self.state is None or record.state in self.state)
            and (self.result is None or record.result in self.result)
            and (self.label is None or record.label == self.label)
            and (self.action is None or record.root_action_class == self.action)
            and (
                self.text is None
                or self.text.lower() in record.label.lower()
                or self.text.lower() in record.id.lower()
            )
            and (
                self.created_after is None
                or (created is not None and created >= self.created_after)
            )
            and (
                self.created_before is None
                or (created is not None and created < self.created_before)
            )
            and (self.parent is None or record.parent_id == self.parent)
        )


#: every plan
ALL_PLANS = PlanFilter()
#: the plan columns :meth:`Storage.find_plans` can order by
ORDERABLE = ("created_at", "started_at", "ended_at", "label", "state", "result", "id")


def plan_order(order_by: str) -> tuple[str, bool]:
    """The column and direction (descending?) of ``order_by``, a column of :data:`ORDERABLE`
    with ``-`` in front for descending."""
    column = order_by.lstrip("-")
    if column not in ORDERABLE:
        raise ConfigurationError(f"cannot order plans by {order_by!r}; use one of {ORDERABLE}")
    return column, order_by.startswith("-")
