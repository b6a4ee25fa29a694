"""Shared aliases and small protocols."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeAlias

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None
JSONDict: TypeAlias = dict[str, Any]
PlanId: TypeAlias = str
StepId: TypeAlias = int
ActionId: TypeAlias = int
WorldId: TypeAlias = str
CallNext: TypeAlias = Callable[..., Any]


class WorldHandle(Protocol):
    """The world as user code sees it (``Action.world``, suspend handles, signal senders).

    :class:`dynaflow.World` satisfies it; the layers below the world are typed against this
    protocol, so none of them depends on ``World`` itself.
    """

    @property
    def id(self) -> str: ...

    def event(
        self, plan_id: str, step_id: int, event: Any, optional: bool = False
    ) -> Future[Any]: ...

    def trigger(self, action_class: Any, /, *args: Any, **kwargs: Any) -> Any: ...

    def plan(self, action_class: Any, /, *args: Any, **kwargs: Any) -> Any: ...

    def execute(self, plan_id: str) -> Any: ...

    def get_plan(self, plan_id: str) -> Any: ...
