"""Execution-plan hooks: ``on_success``, ``on_failure``, ``on_stopped`` and ``on_paused``
methods on action classes, called when their plan stops or pauses. This module checks the
classes that define them; :mod:`dynaflow.hook_calls` calls them.

A world calls them for each change of a plan to ``stopped`` or ``paused`` that it made itself,
right after the change has committed (receiving its own ``plan_state_changed`` signal): the
hooks of every action of the plan whose class defines them, in planning order (the root
first), each through the ``hook`` middleware chain. A stop calls ``on_success`` (result
``success`` or ``warning``) or ``on_failure`` (``error`` or ``cancelled``), then
``on_stopped``. Each call is recorded in the plan's history; a hook that raises is logged and
recorded with its error, and nothing else changes. A process that dies between the commit and
the call does not call it, and no other world calls it for it: at most once per change.
"""

from __future__ import annotations

import inspect
from typing import Any

from dynaflow import registry
from dynaflow.exceptions import ConfigurationError
from dynaflow.states import PlanResult, PlanState

#: the hook methods, in the order a stop calls them
HOOKS = ("on_paused", "on_success", "on_failure", "on_stopped")
#: results that call ``on_success`` (the others call ``on_failure``)
SUCCEEDED = frozenset({PlanResult.SUCCESS, PlanResult.WARNING})

#: the names of the action classes defined in this process that have a hook
_hooked: set[str] = set()


def methods(cls: Any) -> frozenset[str]:
    """The hooks ``cls`` defines or inherits; :class:`ConfigurationError` for one that does
    not take the plan (called when the class is defined)."""
    found = set()
    for name in HOOKS:
        method = getattr(cls, name, None)
        if method is None:
            continue
        if not callable(method):
            raise ConfigurationError(
                f"{cls.__qualname__}.{name} must be a method: def {name}(self, plan)"
            )
        try:
            inspect.signature(method).bind(cls, None)
        except TypeError:
            raise ConfigurationError(
                f"{cls.__qualname__}.{name} must take the plan: def {name}(self, plan)"
            ) from None
        except ValueError:  # no signature to check (a builtin): it is called as it is
            pass
        found.add(name)
    if found:
        _hooked.add(registry.class_name(cls))
    return frozenset(found)


def kinds(state: PlanState, result: PlanResult) -> tuple[str, ...]:
    """The hooks a change to ``state`` with ``result`` calls, in order."""
    if state == PlanState.PAUSED:
        return ("on_paused",)
    if state == PlanState.STOPPED:
        return ("on_success" if result in SUCCEEDED else "on_failure", "on_stopped")
    return ()


def hooked(name: str) -> bool:
    """Whether the action class registered as ``name`` has a hook (``name=""``: whether any
    class of this process has one)."""
    return name in _hooked if name else bool(_hooked)
