"""The middleware chains a world runs each phase through, built once and cached."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dynaflow.middleware import stack as middleware_stack
from dynaflow.middleware.stack import MiddlewareStack, compose


class Chains:
    """World middleware (outermost) around an action class's own middleware around a phase's
    core. ``cores`` maps the per-action hooks (``plan``, ``run``, ``finalize``) to their core."""

    def __init__(self, stack: MiddlewareStack, cores: Mapping[str, Callable[..., Any]]) -> None:
        self.stack = stack
        self._cores = dict(cores)
        self._cache: dict[tuple[type, str], tuple[int, Callable[..., Any]]] = {}

    def action(self, cls: Any, hook: str) -> Callable[..., Any]:
        """The ``hook`` chain for action class ``cls``, rebuilt only if a stack changed."""
        key = (cls, hook)
        cached = self._cache.get(key)
        if cached is not None and cached[0] == middleware_stack.version:
            return cached[1]
        entries = [*self.stack.entries(), *cls.middleware.entries()]
        chain = compose(entries, hook, self._cores[hook])
        self._cache[key] = (middleware_stack.version, chain)
        return chain

    def phase(self, hook: str, core: Callable[..., Any]) -> Callable[..., Any]:
        """The ``plan_phase`` / ``finalize_phase`` chain of world middleware around ``core``."""
        return compose(self.stack.entries(), hook, core)
