"""Prometheus metrics of a world: step and plan counts from the state-change signals, the time
each ``run`` call takes and how long events wait for it, from a middleware around ``run``.

``install(world)`` turns them on (nothing is measured before: a world without metrics has no
signal receiver and no middleware layer, so it pays nothing); ``serve(port)`` and
:func:`asgi_app` expose a registry at ``/metrics``. docs/observability.md lists every metric.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from time import perf_counter
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    make_asgi_app,
    start_http_server,
)

from dynaflow import registry as action_registry
from dynaflow import signals
from dynaflow.clock import now
from dynaflow.events import current_context
from dynaflow.exceptions import ConfigurationError
from dynaflow.middleware.base import Middleware
from dynaflow.states import PlanState, StepKind, StepState
from dynaflow.types import CallNext

#: seconds: steps take from milliseconds (a database write) to an hour (a slow service)
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
)  # fmt: skip
#: seconds: an event is usually handled within milliseconds; a busy worker makes it wait
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
)  # fmt: skip
ENDED = (PlanState.STOPPED, PlanState.PAUSED)


class Families:
    """dynaflow's metric families in one registry (registered once per registry: every world
    of a process installed on the same registry adds to the same series)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.steps = Counter(
            "dynaflow_steps",
            "Run steps that entered a state in this process, by the state entered.",
            ["queue", "action_class", "state"],
            registry=registry,
        )
        self.running = Gauge(
            "dynaflow_steps_running",
            "Run steps running now in plans this process runs.",
            ["queue", "action_class"],
            registry=registry,
        )
        self.duration = Histogram(
            "dynaflow_step_duration_seconds",
            "Seconds each call of a step's run() took (a step that suspends makes one "
            "observation per call).",
            ["queue", "action_class"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.event_latency = Histogram(
            "dynaflow_event_latency_seconds",
            "Seconds from an event's sending (a timer's due time) to the start of the "
            "run(event) call that handles it.",
            ["queue", "kind"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.plans = Counter(
            "dynaflow_plans",
            "Plans that entered a state in this process, by the state entered and the result.",
            ["state", "result"],
            registry=registry,
        )
        self.takeovers = Counter(
            "dynaflow_takeovers",
            "Plans this process took over from another world: 'lease_expired' (the world "
            "died or stalled) or 'released' (the world shut down and released them).",
            ["reason"],
            registry=registry,
        )


_families: weakref.WeakKeyDictionary[CollectorRegistry, Families] = weakref.WeakKeyDictionary()
_families_lock = threading.Lock()


def families(registry: CollectorRegistry | None = None) -> Families:
    """The metric families in ``registry`` (the default registry when ``None``), created on
    first use."""
    registry = REGISTRY if registry is None else registry
    with _families_lock:
        found = _families.get(registry)
        if found is None:
            found = _families[registry] = Families(registry)
        return found


class Series:
    """The series of one action class (its queue's and its own labels), looked up once:
    ``labels()`` takes a lock and checks its arguments on every call."""

    __slots__ = ("_families", "action_class", "duration", "queue", "running", "states")

    def __init__(self, families: Families, queue: str, action_class: str) -> None:
        self._families = families
        self.queue, self.action_class = queue, action_class
        self.running = families.running.labels(queue, action_class)
        self.duration = families.duration.labels(queue, action_class)
        #: state -> its ``dynaflow_steps_total`` child
        self.states: dict[Any, Any] = {}

    def entered(self, state: StepState) -> Any:
        child = self.states.get(state)
        if child is None:
            labels = (self.queue, self.action_class, str(state))
            child = self.states[state] = self._families.steps.labels(*labels)
        return child


class Metrics(Middleware):
    """The metrics of one world, as :func:`install` set them up. It is a middleware in the
    world's stack (timing ``run``) and receives the world's state-change signals."""

    def __init__(self, world: Any, registry: CollectorRegistry | None = None) -> None:
        self.families = families(registry)
        self._world = weakref.ref(world)
        self._lock = threading.Lock()
        #: run steps this world saw enter ``running`` and not leave it yet: plan -> step -> series
        self._running: dict[str, dict[int, Series]] = {}
        self._by_name: dict[str, Series] = {}
        self._by_class: dict[type, Series] = {}
        self._latency: dict[tuple[str, str], Any] = {}
        self._plans: dict[tuple[Any, Any], Any] = {}

    # -- the run hook: durations and event latency (in the thread that runs the step) --------

    def run(self, action: Any, call_next: CallNext, *args: Any) -> Any:
        cls = type(action)
        series = self._by_class.get(cls)
        if series is None:
            series = self._by_class[cls] = self._series(cls.action_class_name, cls.queue)
        context = current_context()
        if context is not None and context.woken_by is not None:
            kind, sent_at = context.woken_by
            latency = self._latency.get((series.queue, kind))
            if latency is None:
                latency = self.families.event_latency.labels(series.queue, kind)
                self._latency[(series.queue, kind)] = latency
            latency.observe(max(0.0, (now() - sent_at).total_seconds()))
        start = perf_counter()
        try:
            return call_next(*args)
        finally:
            series.duration.observe(perf_counter() - start)

    # -- signal receivers (after each commit) ------------------------------------------------

    def on_step(
        self, sender: Any, *, plan_id: str, step_id: int, kind: Any, action_class: str,
        state: StepState, **_: Any,
    ) -> None:  # fmt: skip
        if kind != StepKind.RUN:
            return
        series = self._by_name.get(action_class)
        if series is None:
            series = self._series(action_class)
        series.entered(state).inc()
        with self._lock:
            steps = self._running.get(plan_id)
            if state == StepState.RUNNING:
                if steps is None:
                    steps = self._running[plan_id] = {}
                if step_id in steps:
                    return
                steps[step_id] = series
                change = 1
            elif steps is not None and step_id in steps:
                del steps[step_id]
                if not steps:
                    del self._running[plan_id]
                change = -1
            else:
                return
        series.running.inc(change)

    def on_plan(self, sender: Any, *, plan_id: str, state: Any, result: Any, **_: Any) -> None:
        child = self._plans.get((state, result))
        if child is None:
            child = self._plans[(state, result)] = self.families.plans.labels(
                str(state), str(result)
            )
        child.inc()
        if state in ENDED:  # steps it still had running (a halted plan's) count no more
            with self._lock:
                left = self._running.pop(plan_id, {})
            for series in left.values():
                series.running.dec()

    def on_taken_over(self, sender: Any, *, plan_id: str, from_world: Any, **_: Any) -> None:
        reason = "released" if from_world is None else "lease_expired"
        self.families.takeovers.labels(reason).inc()

    # -- internals ---------------------------------------------------------------------------

    def _series(self, action_class: str, queue: str | None = None) -> Series:
        series = self._by_name.get(action_class)
        if series is None:
            if queue is None:
                queue = str(
                    action_registry.attribute(
                        action_class, "queue", "default", "its steps are counted in queue 'default'"
                    )
                )
            series = self._by_name[action_class] = Series(self.families, queue, action_class)
        return series

    def _receivers(self) -> list[tuple[Any, Callable[..., None]]]:
        return [
            (signals.step_state_changed, self.on_step),
            (signals.plan_state_changed, self.on_plan),
            (signals.plan_taken_over, self.on_taken_over),
        ]

    def uninstall(self) -> None:
        """Stop measuring this world (the series measured so far stay in the registry)."""
        world = self._world()
        for signal, receiver in self._receivers():
            signal.disconnect(receiver)
        if world is not None and self in world.middleware.entries():
            world.middleware.remove(self)

    def __repr__(self) -> str:
        return "Metrics()"


def install(world: Any, registry: CollectorRegistry | None = None) -> Metrics:
    """Measure ``world`` into ``registry`` (``None``: prometheus_client's default registry,
    the one :func:`serve` and :func:`asgi_app` expose by default). Returns the
    :class:`Metrics`; ``uninstall()`` on it stops measuring. Several worlds of one process may
    share a registry: their figures add up."""
    if any(isinstance(entry, Metrics) for entry in world.middleware.entries()):
        raise ConfigurationError(
            f"metrics are already installed on world {world.id}; call uninstall() on the "
            "Metrics that install() returned before installing them again"
        )
    metrics = Metrics(world, registry)
    world.middleware.use(metrics)
    for signal, receiver in metrics._receivers():
        # weak: the world's middleware stack keeps ``metrics`` alive, as long as the world
        signal.connect(receiver, sender=world)
    return metrics


class Endpoint:
    """An HTTP server answering ``GET /metrics`` in a thread of its own (see :func:`serve`)."""

    def __init__(self, server: Any, thread: threading.Thread) -> None:
        self._server, self._thread = server, thread

    @property
    def port(self) -> int:
        """The port it listens on (the one chosen by the system when asked for port 0)."""
        return int(self._server.server_port)

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(port: int, addr: str = "0.0.0.0", registry: CollectorRegistry | None = None) -> Endpoint:
    """Serve ``registry`` (the default one when ``None``) at ``http://addr:port/metrics`` from
    a daemon thread, with prometheus_client's own HTTP server."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigurationError(f"metrics port must be an int from 0 to 65535, got {port!r}")
    try:
        server, thread = start_http_server(
            port, addr, registry=REGISTRY if registry is None else registry
        )
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve metrics on {addr}:{port}: {exc.strerror or exc}; choose another port"
        ) from None
    return Endpoint(server, thread)


def asgi_app(registry: CollectorRegistry | None = None) -> Callable[..., Any]:
    """An ASGI application answering with ``registry`` (the default one when ``None``) in the
    Prometheus text format: mount it at ``/metrics`` in a Starlette or FastAPI app."""
    app: Callable[..., Any] = make_asgi_app(REGISTRY if registry is None else registry)
    return app
