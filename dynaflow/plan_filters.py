"""The plan filter ``World.find_plans`` and ``World.count_plans`` build from their keyword
arguments, checked."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dynaflow import registry
from dynaflow.exceptions import ConfigurationError
from dynaflow.persistence.base import PlanFilter
from dynaflow.states import PlanResult, PlanState


def plan_filter(
    state: Any,
    result: Any,
    label: str | None,
    action: type | str | None,
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
