"""The registry of known Action classes.

Class names read from the database are resolved here and nowhere else: dynaflow never imports a
name it read from a row. Classes register themselves when defined; installed plugin packages
register theirs through the ``dynaflow.actions`` entry-point group, loaded once per process.
"""

from __future__ import annotations

import logging
import threading
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from dynaflow.exceptions import ConfigurationError, UnknownActionClass

if TYPE_CHECKING:
    from dynaflow.action import Action

log = logging.getLogger("dynaflow.registry")

ENTRY_POINT_GROUP = "dynaflow.actions"

_lock = threading.Lock()
_by_name: dict[str, type[Action]] = {}
_subscribers: dict[type[Action], list[type[Action]]] = {}
_entry_points_loaded = False


def class_name(cls: type) -> str:
    """The name an action class is stored under: ``module.QualName``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def register(cls: type[Action]) -> None:
    """Record ``cls`` by name and its subscriptions (called by ``Action.__init_subclass__``)."""
    subscribe = cls.__dict__.get("subscribe")
    targets: tuple[type, ...] = ()
    if subscribe is not None:
        targets = subscribe if isinstance(subscribe, tuple) else (subscribe,)
        from dynaflow.action import Action

        for target in targets:
            if not (isinstance(target, type) and issubclass(target, Action)):
                raise ConfigurationError(
                    f"{class_name(cls)}.subscribe must be an Action class or a tuple of them, "
                    f"got {target!r}"
                )
    with _lock:
        _by_name[class_name(cls)] = cls
        for target in targets:
            _subscribers.setdefault(target, []).append(cls)


def resolve(name: str) -> type[Action]:
    """The class registered as ``name``; loads entry points first if it is not known yet."""
    cls = _by_name.get(name)
    if cls is None:
        load_entry_points()
        cls = _by_name.get(name)
    if cls is None:
        raise UnknownActionClass(name)
    return cls


def subscribers(cls: type[Action]) -> list[type[Action]]:
    """Action classes that subscribe to ``cls``, in registration order."""
    return _subscribers.get(cls, [])


def load_entry_points() -> None:
    """Import every module registered in the ``dynaflow.actions`` group (once per process).

    A plugin that fails to import is logged and skipped: one broken plugin must not stop the
    others or the core workflows.
    """
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()
        except Exception:
            log.exception(
                "could not load dynaflow plugin %r (%s)", entry_point.name, entry_point.value
            )


def known() -> dict[str, type[Action]]:
    """A copy of the name -> class map."""
    with _lock:
        return dict(_by_name)
