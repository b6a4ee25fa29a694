"""Prometheus metrics (``dynaflow.metrics``): step and plan counts, the running gauge, run-call
durations, event latency and takeovers, each in a registry of the test's own; a world without
metrics installed connects nothing."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from dynaflow import Action, ConfigurationError, World, metrics, signals
from dynaflow.testing import active_clock, frozen_clock

from .actions import WAIT, Fail, Gated, Noop, Probe, Shape, step_of, trigger
from .failing import Graph, force_running
from .test_takeover import DEAD, dead_world, take_over
from .waiting import Flow, advance, run_step_id, suspended

NOOP = Noop.action_class_name
FAIL = Fail.action_class_name
GATED = Gated.action_class_name


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def measured(world: World, registry: CollectorRegistry) -> Iterator[World]:
    """The test's world with metrics installed into the test's registry."""
    installed = metrics.install(world, registry=registry)
    yield world
    installed.uninstall()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) until ``condition()`` holds, looking every 10 ms."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {WAIT}s"
        threading.Event().wait(0.01)


def steps(registry: CollectorRegistry, action_class: str, state: str) -> float:
    labels = {"queue": "default", "action_class": action_class, "state": state}
    return value(registry, "dynaflow_steps_total", **labels)


def test_steps_and_plans_are_counted_by_state(measured: World, registry: CollectorRegistry) -> None:
    ok = trigger(measured, Shape, ["seq", "a", "b"])
    failed = trigger(measured, Shape, ["seq", "fail:f", "c"])
    assert ok.result == "success"
    assert (failed.state, failed.result) == ("paused", "error")

    assert steps(registry, NOOP, "running") == 2
    assert steps(registry, NOOP, "success") == 2
    assert steps(registry, FAIL, "running") == 1
    assert steps(registry, FAIL, "error") == 1
    assert steps(registry, NOOP, "error") == 0
    running = {"queue": "default", "action_class": NOOP}
    assert value(registry, "dynaflow_steps_running", **running) == 0
    assert value(registry, "dynaflow_plans_total", state="planned", result="pending") == 2
    assert value(registry, "dynaflow_plans_total", state="running", result="pending") == 2
    assert value(registry, "dynaflow_plans_total", state="stopped", result="success") == 1
    assert value(registry, "dynaflow_plans_total", state="paused", result="error") == 1


@pytest.mark.executors("threads")
def test_the_gauge_counts_the_steps_running_now(
    measured: World, registry: CollectorRegistry, probe: Probe
) -> None:
    triggered = measured.trigger(Shape, ["con", "a", "b", "c"], leaf="gated")
    probe.wait_running(3)
    labels = {"queue": "default", "action_class": GATED}
    # the gauge moves when the claims' signals go out, which may be just after the steps start
    eventually(lambda: value(registry, "dynaflow_steps_running", **labels) == 3, "gauge at 3")
    probe.event("release").set()
    assert triggered.wait(WAIT).result == "success"
    assert value(registry, "dynaflow_steps_running", **labels) == 0
    assert steps(registry, GATED, "success") == 3


class Timed(Action):
    """Its run takes two seconds of the frozen clock."""

    def run(self) -> None:
        clock = active_clock()
        assert clock is not None
        clock.tick(2)


class Knocking(Action):
    """Sends itself an event, lets three seconds pass and suspends; the event wakes it."""

    def run(self, event: Any = None) -> None:
        if event is None:
            self.world.event(self.plan_id, self.step_id, "knock")
            clock = active_clock()
            assert clock is not None
            clock.tick(3)
            self.suspend()


@pytest.mark.executors("inline")
def test_run_calls_are_timed_per_queue_and_class(
    measured: World, registry: CollectorRegistry
) -> None:
    with frozen_clock():
        assert measured.trigger(Timed).wait(WAIT).result == "success"
        assert measured.trigger(Knocking).wait(WAIT).result == "success"

    timed = {"queue": "default", "action_class": Timed.action_class_name}
    assert value(registry, "dynaflow_step_duration_seconds_count", **timed) == 1
    assert value(registry, "dynaflow_step_duration_seconds_sum", **timed) == 2.0
    assert value(registry, "dynaflow_step_duration_seconds_bucket", **timed, le="1.0") == 0
    assert value(registry, "dynaflow_step_duration_seconds_bucket", **timed, le="2.5") == 1
    knocking = {"queue": "default", "action_class": Knocking.action_class_name}
    # two calls: the first (3 s, it suspends), the one the event woke (0 s)
    assert value(registry, "dynaflow_step_duration_seconds_count", **knocking) == 2
    assert value(registry, "dynaflow_step_duration_seconds_sum", **knocking) == 3.0


@pytest.mark.executors("inline")
def test_event_latency_runs_from_sending_to_the_call_that_handles_it(
    measured: World, registry: CollectorRegistry
) -> None:
    with frozen_clock():
        assert measured.trigger(Knocking).wait(WAIT).result == "success"

    event = {"queue": "default", "kind": "event"}
    assert value(registry, "dynaflow_event_latency_seconds_count", **event) == 1
    assert value(registry, "dynaflow_event_latency_seconds_sum", **event) == 3.0  # sent, then 3 s


@pytest.mark.executors("inline")
def test_a_timer_late_by_two_seconds_shows_two_seconds_of_latency(
    measured: World, registry: CollectorRegistry
) -> None:
    with frozen_clock() as clock:
        triggered = measured.trigger(Flow, "t", inputs={"t": {"timer": 5}})  # due in 5 s
        suspended("t")
        advance(measured, clock, 7)
        assert measured.follow(triggered.plan_id).result(timeout=WAIT).result == "success"

    timer = {"queue": "default", "kind": "timer"}
    assert value(registry, "dynaflow_event_latency_seconds_count", **timer) == 1
    assert value(registry, "dynaflow_event_latency_seconds_sum", **timer) == 2.0
    assert (
        value(registry, "dynaflow_event_latency_seconds_count", queue="default", kind="event") == 0
    )


def test_a_sent_event_is_measured_once_on_every_executor(
    measured: World, registry: CollectorRegistry
) -> None:
    triggered = measured.trigger(Flow, "wait:w")
    suspended("w")
    measured.event(triggered.plan_id, run_step_id(measured, triggered.plan_id, "w"), "finish")
    assert measured.follow(triggered.plan_id).result(timeout=WAIT).result == "success"
    count = "dynaflow_event_latency_seconds_count"
    assert value(registry, count, queue="default", kind="event") == 1


@pytest.mark.storages("memory", "sqlite")
def test_takeovers_are_counted(
    world_factory: Any, registry: CollectorRegistry, probe: Probe
) -> None:
    world = world_factory(lease=30.0)
    metrics.install(world, registry=registry)
    planned = world.plan(Graph, ["seq", "idem:i"])
    dead_world(world, heartbeat_age=31)
    force_running(world, planned, ["i"], DEAD)

    assert take_over(world, planned.id).result == "success"
    assert value(registry, "dynaflow_takeovers_total", reason="lease_expired") == 1
    assert value(registry, "dynaflow_takeovers_total", reason="released") == 0


@pytest.mark.storages("sqlite")
def test_adopting_a_released_plan_counts_as_released(
    world_factory: Any, registry: CollectorRegistry
) -> None:
    first, second = world_factory(), world_factory()
    metrics.install(second, registry=registry)
    triggered = first.trigger(Flow, "w")
    suspended("w")
    first.close(timeout=WAIT)  # releases the plan

    second.maintain(force=True)  # adopts it
    second.event(triggered.plan_id, run_step_id(second, triggered.plan_id, "w"), "finish")
    assert second.follow(triggered.plan_id).result(timeout=WAIT).result == "success"
    assert value(registry, "dynaflow_takeovers_total", reason="released") == 1
    assert value(registry, "dynaflow_takeovers_total", reason="lease_expired") == 0


@pytest.mark.storages("memory")
def test_installing_twice_is_refused_and_uninstall_stops_counting(
    world: World, registry: CollectorRegistry
) -> None:
    installed = metrics.install(world, registry=registry)
    with pytest.raises(ConfigurationError, match="already installed on world"):
        metrics.install(world, registry=registry)
    trigger(world, Shape, ["seq", "a"])
    assert steps(registry, NOOP, "success") == 1

    installed.uninstall()
    trigger(world, Shape, ["seq", "a"])
    assert steps(registry, NOOP, "success") == 1  # not counted any more
    assert installed not in world.middleware.entries()
    metrics.install(world, registry=registry).uninstall()  # may be installed again


@pytest.mark.storages("memory")
def test_without_metrics_nothing_is_connected(world: World) -> None:
    """No receiver, no middleware layer: a world without metrics pays nothing for them (a
    step's state change builds no signal when ``step_state_changed`` has no receivers)."""
    gc.collect()  # the metrics of earlier tests' worlds go with those worlds
    assert not signals.step_state_changed.receivers
    assert not signals.plan_taken_over.receivers
    receivers = list(signals.plan_state_changed.receivers_for(world))
    assert not [r for r in receivers if isinstance(getattr(r, "__self__", None), metrics.Metrics)]
    assert not any(isinstance(m, metrics.Metrics) for m in world.middleware.entries())


@pytest.mark.storages("memory")
def test_worlds_sharing_a_registry_add_up(world_factory: Any, registry: CollectorRegistry) -> None:
    first, second = world_factory(), world_factory()
    metrics.install(first, registry=registry)
    metrics.install(second, registry=registry)
    trigger(first, Shape, ["seq", "a"])
    trigger(second, Shape, ["seq", "a", "b"])
    assert steps(registry, NOOP, "success") == 3


@pytest.mark.storages("memory")
@pytest.mark.executors("inline")
def test_the_endpoint_serves_the_registry(measured: World, registry: CollectorRegistry) -> None:
    trigger(measured, Shape, ["seq", "a"])
    endpoint = metrics.serve(0, "127.0.0.1", registry=registry)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{endpoint.port}/metrics", timeout=WAIT) as r:
            body = r.read().decode()
        assert r.status == 200
        expected = f'dynaflow_steps_total{{action_class="{NOOP}",queue="default",state="success"}}'
        assert f"{expected} 1.0" in body
        with pytest.raises(
            ConfigurationError, match=f"cannot serve metrics on 127.0.0.1:{endpoint.port}"
        ):
            metrics.serve(endpoint.port, "127.0.0.1", registry=registry)
    finally:
        endpoint.close()


def test_a_bad_port_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="an int from 0 to 65535, got 70000"):
        metrics.serve(70000)


@pytest.mark.storages("memory")
@pytest.mark.executors("inline")
def test_the_asgi_app_answers_in_the_prometheus_format(
    measured: World, registry: CollectorRegistry
) -> None:
    trigger(measured, Shape, ["seq", "a"])
    status, headers, body = asyncio.run(_get(metrics.asgi_app(registry), "/metrics"))
    assert status == 200
    assert headers[b"Content-Type"].startswith(b"text/plain")
    assert f'dynaflow_steps_total{{action_class="{NOOP}"' in body.decode()


async def _get(app: Any, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    """One GET through an ASGI app, without a server."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"test")], "server": ("test", 80),
        "client": ("127.0.0.1", 1),
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def test_a_plan_step_of_another_kind_is_not_counted(
    measured: World, registry: CollectorRegistry
) -> None:
    """Finalize steps run in the finalize phase: the step metrics are about run steps."""
    plan = trigger(measured, Shape, ["seq", "a"], leaf="tracked")
    assert plan.result == "success"
    tracked = step_of(plan, "a").action_class
    assert steps(registry, tracked, "success") == 1  # its run step; not its finalize step too
