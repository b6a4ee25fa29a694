"""Ordered middleware registrations, and :func:`compose`, which builds a chain from them."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

from dynaflow.exceptions import ConfigurationError
from dynaflow.middleware.base import HOOKS, Middleware

MiddlewareSpec = type[Middleware] | Middleware

_versions = itertools.count(1)
#: bumped by every registration anywhere, so cached chains know when to rebuild
version = 0


def _bump() -> None:
    global version
    version = next(_versions)


def _instance(spec: MiddlewareSpec) -> Middleware:
    if isinstance(spec, Middleware):
        return spec
    if isinstance(spec, type) and issubclass(spec, Middleware):
        return spec()
    raise ConfigurationError(
        f"{spec!r} is not a Middleware subclass or instance; derive it from "
        "dynaflow.middleware.Middleware"
    )


def _index(entries: list[Middleware], ref: MiddlewareSpec, what: str) -> int:
    for i, entry in enumerate(entries):
        if entry is ref or (isinstance(ref, type) and type(entry) is ref):
            return i
    names = [type(e).__qualname__ for e in entries] or ["(none)"]
    raise ConfigurationError(
        f"cannot place middleware {what} {getattr(ref, '__qualname__', ref)!r}: it is not in "
        f"the stack ({', '.join(names)})"
    )


class MiddlewareStack:
    """Middleware in order, first outermost. A stack may extend a parent's (action classes
    inherit their base's middleware); its entries are the parent's with its own registrations
    applied on top."""

    def __init__(
        self, initial: Iterable[MiddlewareSpec] = (), *, parent: MiddlewareStack | None = None
    ) -> None:
        self._parent = parent
        self._ops: list[tuple[Middleware, Any, Any, Any]] = []
        for spec in initial:
            self.use(spec)

    def use(
        self,
        middleware: MiddlewareSpec,
        *,
        before: MiddlewareSpec | None = None,
        after: MiddlewareSpec | None = None,
        replace: MiddlewareSpec | None = None,
    ) -> Middleware:
        """Add ``middleware`` (a class or an instance) at the end, or before/after/in place of
        one already present. A reference to a middleware that is not there raises."""
        if sum(x is not None for x in (before, after, replace)) > 1:
            raise ConfigurationError("give at most one of before=, after=, replace=")
        op = (_instance(middleware), before, after, replace)
        self._apply(list(self.entries()), op)  # validate now, so a bad reference fails here
        self._ops.append(op)
        _bump()
        return op[0]

    def remove(self, middleware: MiddlewareSpec) -> None:
        """Drop a middleware registered on this stack (or inherited)."""
        _index(list(self.entries()), middleware, "to remove")
        self._ops.append((_Removal(), None, None, middleware))
        _bump()

    def entries(self) -> tuple[Middleware, ...]:
        entries = list(self._parent.entries()) if self._parent else []
        for op in self._ops:
            entries = self._apply(entries, op)
        return tuple(entries)

    @staticmethod
    def _apply(entries: list[Middleware], op: tuple[Middleware, Any, Any, Any]) -> list[Middleware]:
        middleware, before, after, replace = op
        entries = list(entries)
        if isinstance(middleware, _Removal):
            del entries[_index(entries, replace, "to remove")]
            return entries
        if replace is not None:
            entries[_index(entries, replace, "to replace")] = middleware
        elif before is not None:
            entries.insert(_index(entries, before, "before"), middleware)
        elif after is not None:
            entries.insert(_index(entries, after, "after") + 1, middleware)
        else:
            if any(type(e) is type(middleware) for e in entries):
                raise ConfigurationError(
                    f"{type(middleware).__qualname__} is already in the stack; "
                    "use replace= to swap it"
                )
            entries.append(middleware)
        return entries

    def __iter__(self) -> Any:
        return iter(self.entries())

    def __len__(self) -> int:
        return len(self.entries())

    def __repr__(self) -> str:
        return f"MiddlewareStack({list(self.entries())!r})"


class _Removal(Middleware):
    pass


def compose(
    middlewares: Iterable[Middleware], hook: str, core: Callable[..., Any]
) -> Callable[..., Any]:
    """Build the ``hook`` chain around ``core``, the first middleware outermost.

    The result is called as ``chain(target, *args, **kwargs)``; each layer calls the
    middleware's hook as ``hook(target, call_next, *args, **kwargs)``. Pure: builds, never runs.
    """
    if hook not in HOOKS:
        raise ConfigurationError(f"unknown middleware hook {hook!r}; hooks are {HOOKS}")
    default = getattr(Middleware, hook)
    chain = core
    for middleware in reversed(list(middlewares)):
        if getattr(type(middleware), hook) is default:
            continue
        chain = _layer(getattr(middleware, hook), chain)
    return chain


def _layer(method: Callable[..., Any], inner: Callable[..., Any]) -> Callable[..., Any]:
    def layer(target: Any, *args: Any, **kwargs: Any) -> Any:
        return method(target, lambda *a, **kw: inner(target, *a, **kw), *args, **kwargs)

    return layer
