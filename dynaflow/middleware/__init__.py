"""Middleware: around-hooks for every phase, composed into chains once per action class."""

from dynaflow.middleware.base import HOOKS, Middleware
from dynaflow.middleware.stack import MiddlewareStack, compose
from dynaflow.middleware.transaction import TransactionMiddleware


def __getattr__(name: str) -> object:
    # ContextMiddleware imports dynaflow.action, which imports this package: load it lazily
    if name == "ContextMiddleware":
        from dynaflow.middleware.context import ContextMiddleware

        return ContextMiddleware
    if name == "TracingMiddleware":  # likewise (and its OpenTelemetry is optional)
        from dynaflow.middleware.tracing import TracingMiddleware

        return TracingMiddleware
    raise AttributeError(name)


__all__ = [
    "HOOKS",
    "ContextMiddleware",
    "Middleware",
    "MiddlewareStack",
    "TracingMiddleware",
    "TransactionMiddleware",
    "compose",
]
