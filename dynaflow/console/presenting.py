"""What of an action's stored input and output may reach a page: the ``present`` middleware
chain (world middleware, then the action class's) around a core that masks the keys the class
declares secret (``secret_inputs``, ``secret_outputs``)."""

from __future__ import annotations

import copy
from typing import Any

from dynaflow import registry
from dynaflow.action import Action
from dynaflow.execution_plan import ActionRecord
from dynaflow.middleware import stack as middleware_stack
from dynaflow.middleware.stack import MiddlewareStack, compose

#: what a masked value is shown as
MASK = "••••"


def mask(data: Any, keys: tuple[str, ...]) -> Any:
    """``data`` with each of ``keys`` (a key, or a dotted path into nested objects) replaced
    by :data:`MASK` where it is present."""
    if not keys or not isinstance(data, dict):
        return data
    for key in keys:
        _mask_path(data, key.split("."))
    return data


def _mask_path(data: Any, path: list[str]) -> None:
    if isinstance(data, list):
        for item in data:
            _mask_path(item, path)
        return
    if not isinstance(data, dict) or path[0] not in data:
        return
    if len(path) == 1:
        data[path[0]] = MASK
    else:
        _mask_path(data[path[0]], path[1:])


def _core(cls: Any, view: dict[str, Any]) -> dict[str, Any]:
    """The innermost layer: mask what the class declares secret."""
    view["input"] = mask(view.get("input"), tuple(getattr(cls, "secret_inputs", ())))
    view["output"] = mask(view.get("output"), tuple(getattr(cls, "secret_outputs", ())))
    return view


class Presenter:
    """Presents actions through a world's middleware; the chain of each class is built once
    (again if a middleware stack changes)."""

    def __init__(self, world_middleware: MiddlewareStack) -> None:
        self.stack = world_middleware
        self._chains: dict[str, tuple[int, type, Any]] = {}

    def chain(self, class_name: str) -> tuple[type, Any]:
        cached = self._chains.get(class_name)
        if cached is not None and cached[0] == middleware_stack.version:
            return cached[1], cached[2]
        known = registry.known().get(class_name)
        cls = known if known is not None else Action
        entries = [*self.stack.entries(), *cls.middleware.entries()]
        chain = compose(entries, "present", _core)
        self._chains[class_name] = (middleware_stack.version, cls, chain)
        return cls, chain

    def present(self, action: ActionRecord) -> dict[str, Any]:
        """``{"action_class", "input", "output"}`` of ``action``, as its middleware lets it be
        shown (the record itself is never changed)."""
        cls, chain = self.chain(action.action_class)
        view = {
            "action_class": action.action_class,
            "input": copy.deepcopy(action.input),
            "output": copy.deepcopy(action.output),
        }
        shown = chain(cls, view)
        if not isinstance(shown, dict):
            raise TypeError(
                f"a present() middleware returned {type(shown).__name__} for "
                f"{action.action_class}; it must return the view dict it was given (changed)"
            )
        return shown
