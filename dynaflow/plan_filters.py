"""The plan filter ``World.find_plans`` and ``World.count_plans`` build from their keyword
arguments, checked."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypedDict

from dynaflow import registry
from dynaflow.exceptions import ConfigurationError
from dynaflow.persistence.base import PlanFilter
from dynaflow.states import PlanResult, PlanState


class PlanFilters(TypedDict, total=False):
    """The filters of ``World.find_plans``, ``count_plans`` and ``plan_counts``; a plan must
    match every one given."""

    #: one state or several (any of them)
    state: PlanState | str | Sequence[PlanState | str] | None
    #: one result or several
    result: PlanResult | str | Sequence[PlanResult | str] | None
    #: the label, exactly
    label: str | None
    #: the root action class (or its qualified name)
    action: type | str | None
    #: the plan whose sub-plans these are
    parent: str | None
    #: a part of the label or the id, in any case
    text: str | None
    #: created at or after (an aware datetime)
    created_after: datetime | None
    #: created before
    created_before: datetime | None


def plan_filter(
    state: Any = None,
    result: Any = None,
    label: str | None = None,
    action: type | str | None = None,
    parent: str | None = None,
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
        parent=parent,
        text=text or None,
        created_after=created_after,
        created_before=created_before,
    )
