"""The run graph, from :mod:`dynaflow.console.graph` when it is there: a console without it
still works, and says the graph is unavailable."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from types import ModuleType

from dynaflow.execution_plan import ExecutionPlan

log = logging.getLogger("dynaflow.console")

#: plans with more run steps than this show their steps table first, the graph on demand
DEFAULT_STEP_LIMIT = 300


def _module() -> ModuleType | None:
    try:
        return importlib.import_module("dynaflow.console.graph")
    except ModuleNotFoundError as exc:
        if exc.name != "dynaflow.console.graph":
            raise  # the module is there, something it imports is not: a real error
        return None


def step_limit() -> int:
    module = _module()
    limit = getattr(module, "GRAPH_STEP_LIMIT", None) if module is not None else None
    return limit if isinstance(limit, int) else DEFAULT_STEP_LIMIT


def draw(plan: ExecutionPlan, step_href: Callable[[int], str]) -> tuple[str | None, str | None]:
    """``(svg, None)``, or ``(None, why it cannot be drawn)``."""
    module = _module()
    if module is None:
        return None, "graph unavailable: this installation has no run graph renderer"
    try:
        svg = module.render_run_graph(plan, step_href=step_href)
    except Exception as exc:
        log.exception("drawing the run graph of plan %s failed", plan.id)
        return None, f"graph unavailable: drawing it failed ({type(exc).__name__}: {exc})"
    return str(svg), None
