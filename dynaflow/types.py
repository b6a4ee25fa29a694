"""Shared aliases and small protocols."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None
JSONDict: TypeAlias = dict[str, Any]
PlanId: TypeAlias = str
StepId: TypeAlias = int
ActionId: TypeAlias = int
WorldId: TypeAlias = str
CallNext: TypeAlias = Callable[..., Any]
