"""The options of ``World.plan`` and ``World.trigger``, kept apart from the plan's arguments.

Every other keyword argument of those calls goes to the action's ``plan()``. A plan argument
that has the name of an option is refused rather than guessed at; :class:`Args` passes it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from dynaflow import idempotency, singletons
from dynaflow.action import Action, plan_signature
from dynaflow.exceptions import ConfigurationError

#: the options, with what each is for (for the error about a plan argument of that name)
OPTIONS = {
    "idempotency_key": "the key under which at most one plan is planned",
    "on_conflict": "what to do when a singleton action's plan is active",
    "connection": "the application's transaction to plan in",
}


class Args:
    """A plan's arguments, passed as they are whatever their names: ``world.trigger(Cls,
    Args(on_conflict="merge"), on_conflict="return")`` gives ``plan(on_conflict="merge")``."""

    __slots__ = ("args", "kwargs")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        shown = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"Args({', '.join(shown)})"


@dataclass(frozen=True, slots=True)
class PlanOptions:
    idempotency_key: str | None = None
    #: "raise" or "return"
    on_conflict: str = "raise"
    #: the call as JSON, stored with an idempotency key (see :mod:`dynaflow.idempotency`)
    arguments: dict[str, Any] | None = None

    @property
    def may_find(self) -> bool:
        """The call may give back a plan planned before (another caller may be running it)."""
        return self.idempotency_key is not None or self.on_conflict == "return"


#: no options: plan a new plan, raise if a singleton is held
NO_OPTIONS = PlanOptions()


def parse(
    action_class: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    idempotency_key: Any,
    on_conflict: Any,
    where: str,
    connection: Any = None,
) -> tuple[tuple[Any, ...], dict[str, Any], PlanOptions]:
    """Check the call of ``World.<where>`` (``"plan"`` or ``"trigger"``): the plan's arguments
    (unwrapped from :class:`Args`) and the options. Bad options raise before anything is
    planned."""
    if not (isinstance(action_class, type) and issubclass(action_class, Action)):
        raise ConfigurationError(
            f"{action_class!r} is not an Action class; pass a subclass of dynaflow.Action"
        )
    wrapped = any(isinstance(a, Args) for a in args)
    if wrapped:
        if len(args) != 1 or kwargs:
            raise ConfigurationError(
                f"{where}({action_class.__qualname__}, ...): pass the plan's arguments either "
                "all inside one Args(...) or all as they are, not both"
            )
        args, kwargs = args[0].args, dict(args[0].kwargs)
    else:
        given = {
            "idempotency_key": idempotency_key,
            "on_conflict": on_conflict,
            "connection": connection,
        }
        for option, value in given.items():
            if value is not None and _takes(action_class, option):
                raise ConfigurationError(
                    f"{action_class.__qualname__}.plan() takes an argument named {option!r}, "
                    f"and {where}() reads {option}= as its own option ({OPTIONS[option]}); to "
                    f"pass it to the plan, wrap the plan's arguments: world.{where}("
                    f"{action_class.__qualname__}, dynaflow.Args({option}=...), ...)"
                )
    key = idempotency.check_key(idempotency_key, where)
    conflict = singletons.check_on_conflict(on_conflict or "raise", where)
    call = idempotency.arguments(action_class, args, kwargs) if key is not None else None
    return args, kwargs, PlanOptions(key, conflict, call)


def _takes(cls: type[Action], name: str) -> bool:
    """Whether ``cls``'s planning names a parameter ``name`` (its ``plan()``, or with the
    default ``plan()`` a field of its ``Input``)."""
    parameter = plan_signature(cls).parameters.get(name)
    if parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    ):
        return True
    return cls.plan is Action.plan and cls.Input is not None and name in cls.Input.model_fields
