"""The middleware base class: one documented no-op around-hook per phase.

Each hook receives what it wraps and ``call_next``; it must call ``call_next`` (possibly with
changed arguments) to go on, and return what it returned. Hooks a subclass does not override are
left out of the chain entirely, so an unused hook costs nothing. :data:`HOOKS` lists them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dynaflow.types import CallNext

if TYPE_CHECKING:
    from dynaflow.phases import PhaseContext

#: the action a hook wraps: a :class:`dynaflow.Action` instance (typed loosely, so that a
#: subclass may annotate it as ``Action`` or its own class; this module sits below the actions)
Action = Any


class Middleware:
    """Subclass and override the hooks you need."""

    def plan(self, action: Action, call_next: CallNext, *args: Any, **kwargs: Any) -> Any:
        """Around one action's ``plan(*args, **kwargs)``, in the caller's thread."""
        return call_next(*args, **kwargs)

    def run(self, action: Action, call_next: CallNext, *args: Any) -> Any:
        """Around one call of ``run()`` (``args`` is ``(event,)`` when woken by an event)."""
        return call_next(*args)

    def finalize(self, action: Action, call_next: CallNext) -> Any:
        """Around one action's ``finalize()``, inside the finalize transaction."""
        return call_next()

    def plan_phase(self, plan: PhaseContext, call_next: CallNext) -> Any:
        """Around the whole planning of a plan, including persisting it."""
        return call_next()

    def finalize_phase(self, plan: PhaseContext, call_next: CallNext) -> Any:
        """Around the whole finalize phase of a plan."""
        return call_next()

    def hook(self, action: Action, call_next: CallNext, kind: str, plan: Any) -> Any:
        """Around one execution-plan hook of one action (``kind`` is ``"on_success"``,
        ``"on_failure"``, ``"on_stopped"`` or ``"on_paused"``; ``plan`` the plan's snapshot),
        in the world that changed the plan, after the change committed."""
        return call_next(kind, plan)

    def present(self, action: Action, call_next: CallNext, view: dict[str, Any]) -> Any:
        """Around presenting an action to an operator (the web console, its JSON API):
        ``action`` is the action's class (``dynaflow.Action`` when this process cannot import
        it), ``view`` holds its ``action_class`` name and copies of its stored ``input`` and
        ``output``. Return the view to show: replace what must never reach a page."""
        return call_next(view)

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}()"


#: the hooks that exist. A hook around delaying a plan comes with scheduled plans, which call
#: it; until then a middleware method of such a name is an ordinary method.
HOOKS = ("plan", "run", "finalize", "plan_phase", "finalize_phase", "hook", "present")
