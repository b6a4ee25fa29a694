"""Shared aliases and small protocols."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

JSON: TypeAlias = None | bool | int | float | str | list["JSON"] | dict[str, "JSON"]
JSONDict: TypeAlias = dict[str, Any]
PlanId: TypeAlias = str
StepId: TypeAlias = int
ActionId: TypeAlias = int
WorldId: TypeAlias = str
CallNext: TypeAlias = Callable[..., Any]
