"""The registry of known Action classes.

Class names read from the database are resolved here and nowhere else: dynaflow never imports a
name it read from a row. Classes register themselves when defined; installed plugin packages
register theirs through the ``dynaflow.actions`` entry-point group, loaded once per process.
"""

from __future__ import annotations

import logging
import threading
from importlib.metadata import entry_points
from typing import Any

from dynaflow.exceptions import UnknownActionClass

log = logging.getLogger("dynaflow.registry")

ENTRY_POINT_GROUP = "dynaflow.actions"

#: an Action subclass (typed loosely: this module sits below ``dynaflow.action``)
ActionClass = type[Any]

_lock = threading.Lock()
_by_name: dict[str, ActionClass] = {}
_subscribers: dict[ActionClass, list[ActionClass]] = {}
_entry_points_loaded = False


def class_name(cls: type) -> str:
    """The name an action class is stored under: ``module.QualName``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def register(cls: ActionClass, subscribes_to: tuple[ActionClass, ...] = ()) -> None:
    """Record ``cls`` by name and the classes it subscribes to (called, checked, by
    ``Action.__init_subclass__``)."""
    with _lock:
        _by_name[class_name(cls)] = cls
        for target in subscribes_to:
            _subscribers.setdefault(target, []).append(cls)


def resolve(name: str) -> ActionClass:
    """The class registered as ``name``; loads entry points first if it is not known yet."""
    cls = _by_name.get(name)
    if cls is None:
        load_entry_points()
        cls = _by_name.get(name)
    if cls is None:
        raise UnknownActionClass(name)
    return cls


def find(name: str, fallback: str) -> ActionClass | None:
    """The class registered as ``name``; if no such class is known in this process, log a
    warning saying what happens instead (``fallback``) and return ``None``."""
    try:
        return resolve(name)
    except UnknownActionClass as exc:
        log.warning("%s; %s", exc, fallback)
        return None


def attribute(name: str, attr: str, default: Any, fallback: str) -> Any:
    """``attr`` of the class registered as ``name`` (``default`` if it is unknown: see
    :func:`find`)."""
    cls = find(name, fallback)
    return default if cls is None else getattr(cls, attr, default)


def subscribers(cls: ActionClass) -> list[ActionClass]:
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
        except Exception as exc:  # one line; the traceback for whoever debugs it
            log.warning(
                "could not load dynaflow plugin %r (%s): %s: %s; its actions are unknown here "
                "(the traceback is logged at DEBUG)",
                entry_point.name,
                entry_point.value,
                type(exc).__name__,
                exc,
            )
            log.debug("loading dynaflow plugin %r failed", entry_point.name, exc_info=True)


def known() -> dict[str, ActionClass]:
    """A copy of the name -> class map."""
    with _lock:
        return dict(_by_name)
