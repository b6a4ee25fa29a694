"""Singleton actions: at most one plan that has not stopped holds each singleton key.

An action class with ``singleton = True`` holds the key ``<module>.<Class>``; with
``singleton_key = lambda input: ...`` it holds ``<module>.<Class>:<what the function returns>``.
The planner computes the keys of every singleton action it plans; the storage takes them in the
transaction that inserts the plan (a unique key in the database, so two processes racing cannot
both win) and gives them back in the transaction that stops the plan.
"""

from __future__ import annotations

from typing import Any

from dynaflow.exceptions import ConfigurationError, InvalidArgument, PlanningError, describe

#: what ``trigger``/``plan`` do when a singleton key is held: raise ``SingletonActive``, or
#: return the plan holding it
ON_CONFLICT = ("raise", "return")


def check_class(cls: Any) -> None:
    """Raise :class:`ConfigurationError` for a badly declared ``singleton``/``singleton_key``
    (called when the class is defined)."""
    name = cls.__qualname__
    if not isinstance(cls.singleton, bool):
        raise ConfigurationError(
            f"{name}.singleton must be True or False, got {cls.singleton!r}; for one plan per "
            "key set singleton_key = lambda input: ... instead"
        )
    key = cls.singleton_key
    if key is not None and not callable(key):
        raise ConfigurationError(
            f"{name}.singleton_key must be a function of the action's input (singleton_key = "
            f"lambda input: input['repo']), got {key!r}"
        )


def is_singleton(cls: Any) -> bool:
    return bool(cls.singleton) or cls.singleton_key is not None


def key_of(action: Any) -> str:
    """The singleton key ``action`` (of a singleton class, planned) holds. A ``singleton_key``
    that raises, or returns anything but a non-empty string or an int, raises
    :class:`PlanningError`."""
    cls = type(action)
    name = cls.action_class_name
    function = cls.singleton_key
    if function is None:
        return str(name)
    try:
        value = function(action.input)
    except Exception as exc:
        raise PlanningError(
            f"{name}.singleton_key raised {type(exc).__name__}: {describe(exc)}; it gets the "
            "action's input and must return a non-empty string"
        ) from exc
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise PlanningError(
            f"{name}.singleton_key returned {value!r}; it must return a non-empty string "
            "(or an int) naming what only one plan at a time may work on"
        )
    return f"{name}:{value}"


def check_on_conflict(on_conflict: Any, where: str) -> str:
    if on_conflict not in ON_CONFLICT:
        raise InvalidArgument(
            f"{where}(on_conflict={on_conflict!r}): use 'raise' (SingletonActive when a "
            "singleton's plan is active) or 'return' (that plan instead)"
        )
    return str(on_conflict)
