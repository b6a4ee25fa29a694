"""OpenTelemetry spans (``TracingMiddleware``), collected with the SDK's in-memory exporter: what
spans a plan makes, how they nest (under the caller's span, across worlds), the ids they carry,
errors on them; and dynaflow without OpenTelemetry installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from dynaflow import Action, ConfigurationError, PlanningFailed, World
from dynaflow.middleware import TracingMiddleware

from .actions import WAIT, Shape, step_of
from .failing import Graph
from .waiting import Flow, run_step_id, suspended

pytestmark = pytest.mark.storages("memory", "sqlite")


class Spans:
    """A tracer provider that keeps every finished span in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("tests")

    def all(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.all() if span.name == name]

    def one(self, name: str, **attributes: Any) -> ReadableSpan:
        found = [
            span
            for span in self.named(name)
            if all((span.attributes or {}).get(f"dynaflow.{k}") == v for k, v in attributes.items())
        ]
        assert len(found) == 1, f"{len(found)} spans {name} {attributes}: {self.all()}"
        return found[0]


@pytest.fixture
def spans() -> Spans:
    return Spans()


@pytest.fixture
def traced(world_factory: Any, spans: Spans) -> World:
    world: World = world_factory(middleware=[TracingMiddleware(spans.provider)])
    return world


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


class Working(Action):
    """Starts a span of its own inside run; has a finalizer."""

    tracer: Any = None

    def run(self) -> None:
        with self.tracer.start_as_current_span("user work"):
            self.output["done"] = True

    def finalize(self) -> None:
        pass


class Two(Action):
    def plan(self) -> None:
        with self.sequence():
            self.plan_action(Working)
            self.plan_action(Working)


def test_a_plan_makes_nested_spans_under_the_callers(traced: World, spans: Spans) -> None:
    Working.tracer = spans.tracer
    with spans.tracer.start_as_current_span("request") as request:
        triggered = traced.trigger(Two)
    plan = triggered.wait(WAIT)
    assert plan.result == "success"

    planning = spans.one("dynaflow.planning", plan_id=plan.id)
    assert planning.attributes["dynaflow.action_class"] == Two.action_class_name
    assert parent_of(planning) == request.get_span_context().span_id
    execution = spans.one("dynaflow.execution", plan_id=plan.id)
    assert parent_of(execution) == span_id(planning)
    assert (execution.attributes["dynaflow.state"], execution.attributes["dynaflow.result"]) == (
        "stopped",
        "success",
    )
    runs = spans.named("dynaflow.run")
    run_steps = [s.id for s in plan.steps if s.kind == "run"]
    assert sorted(s.attributes["dynaflow.step_id"] for s in runs) == sorted(run_steps)
    for run in runs:
        assert parent_of(run) == span_id(execution)
        assert run.attributes["dynaflow.plan_id"] == plan.id
        assert run.attributes["dynaflow.action_class"] == Working.action_class_name
        assert run.attributes["dynaflow.queue"] == "default"
        assert run.status.status_code == StatusCode.UNSET
    # the run span is current inside run(): the action's own span is its child
    assert sorted(parent_of(s) for s in spans.named("user work")) == sorted(map(span_id, runs))
    phase = spans.one("dynaflow.finalize_phase", plan_id=plan.id)
    assert parent_of(phase) == span_id(execution)
    finalizers = spans.named("dynaflow.finalize")
    finalize_steps = [s.id for s in plan.steps if s.kind == "finalize"]
    assert sorted(s.attributes["dynaflow.step_id"] for s in finalizers) == sorted(finalize_steps)
    assert {parent_of(s) for s in finalizers} == {span_id(phase)}
    assert {trace_id(s) for s in spans.all()} == {request.get_span_context().trace_id}


def test_a_failing_step_is_an_error_on_its_span_and_on_the_execution(
    traced: World, spans: Spans
) -> None:
    plan = traced.trigger(Shape, ["seq", "a", "fail:f"]).wait(WAIT)
    assert (plan.state, plan.result) == ("paused", "error")

    failed = spans.one("dynaflow.run", step_id=step_of(plan, "f").id)
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.status.description == "RuntimeError: disk full on f"
    [exception] = [e for e in failed.events if e.name == "exception"]
    assert exception.attributes["exception.type"] == "RuntimeError"
    assert spans.one("dynaflow.run", step_id=step_of(plan, "a").id).status.status_code == (
        StatusCode.UNSET
    )
    execution = spans.one("dynaflow.execution", plan_id=plan.id)
    assert execution.status.status_code == StatusCode.ERROR
    assert execution.attributes["dynaflow.state"] == "paused"

    spans.exporter.clear()  # a resumed plan is a new execution, under the same planning
    assert traced.resume(plan.id).result(timeout=WAIT).result == "error"
    assert len(spans.named("dynaflow.execution")) == 1


def test_a_failing_finalizer_is_an_error_on_its_spans(traced: World, spans: Spans) -> None:
    plan = traced.trigger(Graph, ["seq", "badfin:x"]).wait(WAIT)
    assert (plan.state, plan.result) == ("paused", "error")
    finalizer = spans.one("dynaflow.finalize", step_id=step_of(plan, "x", "finalize").id)
    assert finalizer.status.status_code == StatusCode.ERROR
    phase = spans.one("dynaflow.finalize_phase", plan_id=plan.id)
    assert phase.status.status_code == StatusCode.ERROR
    assert parent_of(finalizer) == span_id(phase)


def test_each_call_of_a_suspending_step_is_a_span(traced: World, spans: Spans) -> None:
    triggered = traced.trigger(Flow, "w")
    suspended("w")
    traced.event(triggered.plan_id, run_step_id(traced, triggered.plan_id, "w"), "finish")
    assert traced.follow(triggered.plan_id).result(timeout=WAIT).result == "success"

    first, second = sorted(spans.named("dynaflow.run"), key=lambda s: s.start_time or 0)
    assert first.attributes["dynaflow.suspended"] is True
    assert "dynaflow.event_kind" not in first.attributes
    assert second.attributes["dynaflow.event_kind"] == "event"
    assert "dynaflow.suspended" not in second.attributes
    assert parent_of(first) == parent_of(second)  # one execution


def test_a_planning_failure_is_an_error_on_the_planning_span(traced: World, spans: Spans) -> None:
    with pytest.raises(PlanningFailed) as failed:
        traced.trigger(Shape, ["seq", "a"], leaf="missing-kind")
    planning = spans.one("dynaflow.planning", plan_id=failed.value.plan_id)
    assert planning.status.status_code == StatusCode.ERROR
    assert "KeyError" in (planning.status.description or "")
    assert spans.named("dynaflow.execution") == []


@pytest.mark.storages("sqlite")
@pytest.mark.executors("threads")
def test_the_trace_goes_with_the_plan_to_the_world_that_runs_it(
    world_factory: Any, spans: Spans
) -> None:
    """A client world plans inside a request's span; an executor world on the same database
    runs the plan: its spans are in the request's trace, under the planning span."""
    Working.tracer = spans.tracer
    world_factory(middleware=[TracingMiddleware(spans.provider)])
    client = world_factory(executor=None, middleware=[TracingMiddleware(spans.provider)])
    with spans.tracer.start_as_current_span("request") as request:
        triggered = client.trigger(Working)
    assert triggered.wait(WAIT).result == "success"

    planning = spans.one("dynaflow.planning", plan_id=triggered.plan_id)
    execution = spans.one("dynaflow.execution", plan_id=triggered.plan_id)
    run = spans.one("dynaflow.run", plan_id=triggered.plan_id)
    assert parent_of(execution) == span_id(planning)
    assert parent_of(run) == span_id(execution)
    assert {trace_id(planning), trace_id(execution), trace_id(run)} == {
        request.get_span_context().trace_id
    }


@pytest.mark.storages("memory")
def test_without_opentelemetry_the_middleware_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # import opentelemetry fails
    with pytest.raises(ConfigurationError, match=r"pip install 'dynaflow\[otel\]'"):
        TracingMiddleware()


BLOCKED = textwrap.dedent(
    """
    import sys

    class NoOpenTelemetry:
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ImportError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, NoOpenTelemetry())
    import dynaflow
    from dynaflow import metrics
    from dynaflow.middleware import TracingMiddleware
    class Step(dynaflow.Action):
        def run(self):
            pass

    with dynaflow.World("memory://", executor="inline") as world:
        metrics.install(world)
        assert world.trigger(Step).wait(10).result == "success"
    try:
        TracingMiddleware()
    except dynaflow.ConfigurationError as exc:
        print(exc)
    """
)


@pytest.mark.storages("memory")
def test_dynaflow_works_without_opentelemetry() -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED], capture_output=True, text=True, timeout=WAIT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "TracingMiddleware needs OpenTelemetry, which is not installed: pip install "
        "'dynaflow[otel]' (and an OpenTelemetry SDK to export the spans)"
    )


def test_spans_are_not_made_without_the_middleware(world: World, spans: Spans) -> None:
    Working.tracer = spans.tracer
    with spans.tracer.start_as_current_span("request"):
        assert world.trigger(Working).wait(WAIT).result == "success"
    assert {span.name for span in spans.all()} == {"request", "user work"}
