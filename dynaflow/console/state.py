"""What the console's pages and API share, kept on the application's state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection, Request

from dynaflow.console.auth import Security, operator_name
from dynaflow.console.presenting import Presenter
from dynaflow.console.serialize import Links
from dynaflow.world import World


@dataclass
class Console:
    world: World
    security: Security
    read_only: bool
    title: str
    presenter: Presenter
    #: who acts, for the plan's history; ``None``: the name given at sign-in
    operator: Callable[[Request], str | None] | None


def console_of(request: HTTPConnection) -> Console:
    found: Any = request.app.state.console
    return found


def links_of(request: HTTPConnection) -> Links:
    return Links(request.scope.get("root_path", ""))


def actor(request: Request, fallback: str) -> str:
    """Who is acting, as the plan's history records it."""
    console = console_of(request)
    if console.operator is not None:
        name = console.operator(request)
        if name:
            return str(name)
    return operator_name(request, fallback)
