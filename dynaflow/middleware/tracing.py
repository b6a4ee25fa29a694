"""OpenTelemetry spans for planning, each plan's execution, each ``run`` call and the finalize
phase (needs ``opentelemetry-api``: ``pip install 'dynaflow[otel]'``).

The trace context of the code that plans (a web request's span, say) is stored with each
action at plan time, so the execution, which runs later and maybe in another process, joins the
same trace. A ``run`` call's span is the current span while ``run`` executes: spans the action
starts are its children.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from dynaflow import signals
from dynaflow.action import CONTEXT_KEY, Action
from dynaflow.events import Suspend, current_context
from dynaflow.exceptions import ConfigurationError
from dynaflow.middleware.base import Middleware
from dynaflow.states import PlanResult, PlanState
from dynaflow.types import CallNext

if TYPE_CHECKING:
    from dynaflow.phases import PhaseContext

#: the key, in an action's captured context, of the planning caller's trace context
CARRIER = "otel"
#: execution spans kept open at most (a plan another world took over never ends here)
MAX_OPEN_PLANS = 10_000
ENDED = (PlanState.STOPPED, PlanState.PAUSED)

#: the planning span of this thread's plan phase, until the root action has named it
_planning: ContextVar[list[Any] | None] = ContextVar("dynaflow_planning_span", default=None)


class TracingMiddleware(Middleware):
    """Spans (attributes ``dynaflow.plan_id``, ``dynaflow.step_id``, ``dynaflow.action_class``):

    - ``dynaflow.planning``: the plan phase, in the caller's thread;
    - ``dynaflow.execution``: a plan's execution in this world, from its first step here
      until it stops or pauses (status error when it ends with result ``error``);
    - ``dynaflow.run``: one call of a step's ``run`` (the exception recorded if it raises);
    - ``dynaflow.finalize_phase`` and, inside it, ``dynaflow.finalize`` for each action.

    ``tracer_provider``: where spans go (default: the global one OpenTelemetry's SDK set up).
    """

    def __init__(self, tracer_provider: Any = None) -> None:
        try:
            from opentelemetry import propagate, trace
        except ImportError:
            raise ConfigurationError(
                "TracingMiddleware needs OpenTelemetry, which is not installed: "
                "pip install 'dynaflow[otel]' (and an OpenTelemetry SDK to export the spans)"
            ) from None
        self._trace = trace
        self._propagate = propagate
        self._tracer = trace.get_tracer("dynaflow", tracer_provider=tracer_provider)
        self._lock = threading.Lock()
        #: plan id -> its open execution span
        self._plans: OrderedDict[str, Any] = OrderedDict()
        # weak: connected as long as this middleware lives
        signals.plan_state_changed.connect(self._on_plan)

    # -- planning (the caller's thread) ------------------------------------------------------

    def plan_phase(self, plan: PhaseContext, call_next: CallNext) -> Any:
        attributes = {"dynaflow.plan_id": plan.plan_id}
        with self._span("dynaflow.planning", None, attributes) as span:
            token = _planning.set([span])
            try:
                return self._call(span, call_next)
            finally:
                _planning.reset(token)

    def plan(self, action: Action, call_next: CallNext, *args: Any, **kwargs: Any) -> Any:
        unnamed = _planning.get()
        if unnamed:  # the first action planned is the plan's root
            unnamed.pop().set_attribute("dynaflow.action_class", action.action_class_name)
        result = call_next(*args, **kwargs)
        if action.has_planned_self:
            carrier: dict[str, str] = {}
            self._propagate.inject(carrier)
            if carrier:
                action.raw_input.setdefault(CONTEXT_KEY, {})[CARRIER] = carrier
        return result

    # -- execution (the worker's thread) -----------------------------------------------------

    def run(self, action: Action, call_next: CallNext, *args: Any) -> Any:
        context = current_context()
        if context is not None and context.offered:
            # a step of a plan another world runs: no execution span here, the planner's
            # trace context is the parent
            parent = self._propagate.extract(action.context.get(CARRIER) or {})
        else:
            parent = self._trace.set_span_in_context(self._execution(action.plan_id, action))
        attributes: dict[str, Any] = {
            "dynaflow.plan_id": action.plan_id,
            "dynaflow.step_id": action.step_id,
            "dynaflow.action_class": action.action_class_name,
            "dynaflow.queue": type(action).queue,
        }
        if context is not None and context.woken_by is not None:
            attributes["dynaflow.event_kind"] = context.woken_by[0]
        with self._span("dynaflow.run", parent, attributes) as span:
            try:
                return call_next(*args)
            except Suspend:
                span.set_attribute("dynaflow.suspended", True)
                raise
            except BaseException as exc:
                self._failed(span, exc)
                raise

    def finalize_phase(self, plan: PhaseContext, call_next: CallNext) -> Any:
        parent = self._trace.set_span_in_context(self._execution(plan.plan_id, None))
        attributes = {"dynaflow.plan_id": plan.plan_id}
        with self._span("dynaflow.finalize_phase", parent, attributes) as span:
            return self._call(span, call_next)

    def finalize(self, action: Action, call_next: CallNext) -> Any:
        attributes = {
            "dynaflow.plan_id": action.plan_id,
            "dynaflow.step_id": action.step_id,
            "dynaflow.action_class": action.action_class_name,
        }
        with self._span("dynaflow.finalize", None, attributes) as span:
            return self._call(span, call_next)

    # -- execution spans -----------------------------------------------------------------------

    def _execution(self, plan_id: str, action: Action | None) -> Any:
        """The plan's open execution span, started now if it has none (a child of the
        planner's trace context, stored with ``action``)."""
        with self._lock:
            span = self._plans.get(plan_id)
            if span is not None:
                return span
            carrier = action.context.get(CARRIER) if action is not None else None
            parent = self._propagate.extract(carrier) if carrier else None
            span = self._tracer.start_span(
                "dynaflow.execution", context=parent, attributes={"dynaflow.plan_id": plan_id}
            )
            self._plans[plan_id] = span
            if len(self._plans) > MAX_OPEN_PLANS:
                _, oldest = self._plans.popitem(last=False)
                oldest.set_attribute("dynaflow.unfinished", True)
                oldest.end()
            return span

    def _on_plan(self, sender: Any, *, plan_id: str, state: Any, result: Any, **_: Any) -> None:
        if state not in ENDED:
            return
        with self._lock:
            span = self._plans.pop(plan_id, None)
        if span is None:
            return
        span.set_attribute("dynaflow.state", str(state))
        span.set_attribute("dynaflow.result", str(result))
        if result == PlanResult.ERROR:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, f"plan {state}"))
        span.end()

    # -- helpers -----------------------------------------------------------------------------

    def _span(self, name: str, parent: Any, attributes: dict[str, Any]) -> Any:
        return self._tracer.start_as_current_span(
            name,
            context=parent,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )

    def _call(self, span: Any, call_next: CallNext) -> Any:
        try:
            return call_next()
        except BaseException as exc:
            self._failed(span, exc)
            raise

    def _failed(self, span: Any, exc: BaseException) -> None:
        span.record_exception(exc)
        span.set_status(
            self._trace.Status(self._trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
        )

    def __repr__(self) -> str:
        return "TracingMiddleware()"
