"""Probes and gates: what actions did, recorded from any thread, and named events that hold a
step until the test lets it go. Every wait is bounded: a test fails, it never hangs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: how long a helper waits for anything (a gate, a plan's end) unless told otherwise, in seconds
WAIT = 10.0


class Probe:
    """A thread-safe record of calls, a concurrency counter and named gates.

    Actions report to a probe (``probe.record("run", name)``); a test reads the record
    (``probe.calls``, ``probe.names("run")``), waits for named events (``probe.wait("armed")``)
    and holds steps on them (a step calls ``probe.wait("release")``; the test sets
    ``probe.event("release")``). ``running_step(name)`` counts the steps inside it, so
    ``max_running`` says how many ran at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self.reset()

    def reset(self) -> None:
        """Forget everything: calls, counts and events (a new test starts)."""
        with self._lock:
            self.calls: list[tuple[Any, ...]] = []
            self.running = 0
            self.max_running = 0
            self._events: dict[str, threading.Event] = {}

    def record(self, *call: Any) -> None:
        """Append ``call`` (any tuple, by convention ``(kind, name, ...)``) to :attr:`calls`."""
        with self._lock:
            self.calls.append(call)
            self._lock.notify_all()

    def names(self, kind: str) -> list[Any]:
        """The second item of every call recorded with ``kind`` first, in order."""
        with self._lock:
            return [call[1] for call in self.calls if call[0] == kind]

    def event(self, name: str) -> threading.Event:
        """The event called ``name`` (made on first use, by whoever asks first)."""
        with self._lock:
            return self._events.setdefault(name, threading.Event())

    def wait(self, name: str, timeout: float = WAIT) -> None:
        """Wait for event ``name``; raises :class:`TimeoutError` after ``timeout`` seconds."""
        if not self.event(name).wait(timeout):
            raise TimeoutError(f"event {name!r} was not set within {timeout}s")

    def release_all(self) -> None:
        """Set every event made so far: gated steps go on (what a test does when it ends, so
        that closing its world never waits for a gate nobody opens)."""
        with self._lock:
            events = list(self._events.values())
        for event in events:
            event.set()

    @contextmanager
    def running_step(self, name: str) -> Iterator[None]:
        """Count ``name`` as running while inside (``running``, ``max_running``), record
        ``("enter", name)`` and ``("leave", name)``, and set the event ``arrived:<name>``."""
        with self._lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            self.calls.append(("enter", name))
            self._lock.notify_all()
        self.event(f"arrived:{name}").set()
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1
                self.calls.append(("leave", name))
                self._lock.notify_all()

    def wait_running(self, count: int, timeout: float = WAIT) -> None:
        """Wait until exactly ``count`` steps are inside :meth:`running_step` at once."""
        self.wait_until(lambda: self.running == count, timeout, f"{count} steps running")

    def wait_until(
        self, condition: Callable[[], bool], timeout: float = WAIT, what: str = "the condition"
    ) -> None:
        """Wait until ``condition()`` holds; it is checked whenever a call is recorded or a step
        enters or leaves :meth:`running_step`. Raises :class:`TimeoutError`."""
        with self._lock:
            if not self._lock.wait_for(condition, timeout):
                raise TimeoutError(f"{what} did not happen within {timeout}s")


#: the probe the ``dynaflow_probe`` fixture resets before each test (actions defined at module
#: level report to it: ``from dynaflow.testing import probe``)
probe = Probe()


@contextmanager
def receiving(signal: Any, receiver: Callable[..., Any]) -> Iterator[None]:
    """Connect ``receiver`` to a blinker ``signal`` (see :mod:`dynaflow.signals`) inside the
    block only."""
    signal.connect(receiver, weak=False)
    try:
        yield
    finally:
        signal.disconnect(receiver)
