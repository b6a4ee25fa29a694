"""Finding plans: ``World.find_plans`` and ``World.count_plans``, and the checked plan filter
they build from their keyword arguments. A part of :class:`~dynaflow.World`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from dynaflow import registry
from dynaflow.exceptions import ConfigurationError
from dynaflow.execution_plan import PlanRecord
from dynaflow.persistence import Storage
from dynaflow.persistence.base import PlanFilter
from dynaflow.states import PlanResult, PlanState

States = PlanState | str | Sequence[PlanState | str] | None
Results = PlanResult | str | Sequence[PlanResult | str] | None


class PlanQueries:
    """See the module's docstring; :class:`~dynaflow.World` provides the state."""

    storage: Storage

    def _check_open(self) -> None:
        raise NotImplementedError

    def find_plans(
        self,
        *,
        state: States = None,
        result: Results = None,
        label: str | None = None,
        action: type | str | None = None,
        text: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page: int = 1,
        per_page: int = 50,
        order_by: str = "-created_at",
    ) -> list[PlanRecord]:
        """Plan rows matching every given filter, newest first by default. ``page`` counts from
        1; ``action`` is the root action class (or its qualified name); ``text`` a part of the
        label or the id, in any case; ``created_after`` (inclusive) and ``created_before``
        bound the creation time (aware datetimes)."""
        self._check_open()
        if not isinstance(page, int) or page < 1:
            raise ConfigurationError(f"page must be an int >= 1, got {page!r}")
        if not isinstance(per_page, int) or per_page < 1:
            raise ConfigurationError(f"per_page must be an int >= 1, got {per_page!r}")
        return self.storage.find_plans(
            plan_filter(state, result, label, action, text, created_after, created_before),
            offset=(page - 1) * per_page,
            limit=per_page,
            order_by=order_by,
        )

    def count_plans(
        self,
        *,
        state: States = None,
        result: Results = None,
        label: str | None = None,
        action: type | str | None = None,
        text: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> int:
        """How many plans :meth:`find_plans` finds with the same filters, without paging."""
        self._check_open()
        return self.storage.count_plans(
            plan_filter(state, result, label, action, text, created_after, created_before)
        )


def plan_filter(
    state: Any,
    result: Any,
    label: str | None,
    action: type | str | None,
    text: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> PlanFilter:
    def states(value: Any, enum: Any, what: str) -> tuple[Any, ...] | None:
        if value is None:
            return None
        values = [value] if isinstance(value, str) else list(value)
        try:
            return tuple(enum(v) for v in values)
        except ValueError:
            allowed = ", ".join(e.value for e in enum)
            raise ConfigurationError(
                f"unknown plan {what} in {value!r}; use one of {allowed}"
            ) from None

    for name, value in (("label", label), ("text", text)):
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(f"{name} must be a str, got {value!r}")
    for name, when in (("created_after", created_after), ("created_before", created_before)):
        if when is not None and (not isinstance(when, datetime) or when.tzinfo is None):
            raise ConfigurationError(
                f"{name} must be an aware datetime (with a time zone, like "
                f"datetime.now(timezone.utc)), got {when!r}"
            )
    if isinstance(action, type):
        action = registry.class_name(action)
    return PlanFilter(
        state=states(state, PlanState, "state"),
        result=states(result, PlanResult, "result"),
        label=label,
        action=action,
        text=text or None,
        created_after=created_after,
        created_before=created_before,
    )
