"""Carries request context (a user, a request id) from the code that plans into run and
finalize, which happen later and elsewhere.

At plan time the values of the given ``contextvars`` are stored in the action's input (under
``"__context__"``, hidden from ``Input`` models); around ``run`` and ``finalize`` they are set
again, and reset afterwards.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any

from dynaflow.action import CONTEXT_KEY, Action
from dynaflow.exceptions import ConfigurationError
from dynaflow.middleware.base import Middleware
from dynaflow.types import CallNext
from dynaflow.values import to_json

_UNSET = object()


class ContextMiddleware(Middleware):
    def __init__(self, *variables: ContextVar[Any]) -> None:
        if not variables:
            raise ConfigurationError("ContextMiddleware needs at least one contextvars.ContextVar")
        self.variables = {var.name: var for var in variables}

    def plan(self, action: Action, call_next: CallNext, *args: Any, **kwargs: Any) -> Any:
        result = call_next(*args, **kwargs)
        captured = {}
        for name, var in self.variables.items():
            value = var.get(_UNSET)
            if value is not _UNSET:
                captured[name] = to_json(value, f"context variable {name!r}")
        if captured and action.has_planned_self:
            action.raw_input.setdefault(CONTEXT_KEY, {}).update(captured)
        return result

    def run(self, action: Action, call_next: CallNext, *args: Any) -> Any:
        tokens = self._restore(action)
        try:
            return call_next(*args)
        finally:
            self._reset(tokens)

    def finalize(self, action: Action, call_next: CallNext) -> Any:
        tokens = self._restore(action)
        try:
            return call_next()
        finally:
            self._reset(tokens)

    def _restore(self, action: Action) -> list[tuple[ContextVar[Any], Token[Any]]]:
        saved = action.context
        return [
            (var, var.set(saved[name])) for name, var in self.variables.items() if name in saved
        ]

    @staticmethod
    def _reset(tokens: list[tuple[ContextVar[Any], Token[Any]]]) -> None:
        for var, token in reversed(tokens):
            var.reset(token)

    def __repr__(self) -> str:
        return f"ContextMiddleware({', '.join(self.variables)})"
