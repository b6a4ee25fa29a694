"""The inline executor: everything runs in the calling thread, in a fixed order.

``run_pending()`` runs steps, due timers and scheduler iterations until nothing more is ready at
the clock's now, so tests are deterministic: a triggered plan has finished (or paused, or
suspended) when ``trigger`` returns, and after freezegun moves time on, ``run_pending()`` fires
exactly the timers that are due.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from dynaflow.executor.base import Task
from dynaflow.executor.engine import Engine
from dynaflow.services import Services

#: failed iterations in a row after which ``run_pending`` returns with plans still to take up
#: again (the next call tries again)
RECOVERY_ATTEMPTS = 5


class InlineExecutor:
    """``maintain`` is the world's heartbeat and takeover call, made on every
    ``run_pending()``."""

    def __init__(self, services: Services, maintain: Callable[[], None]) -> None:
        self.tasks: deque[Task] = deque()
        self.engine = Engine(services, self.tasks.append)
        self._maintain = maintain
        self._lock = threading.RLock()
        self._running = False

    def run_pending(self) -> None:
        """Run until nothing is ready. A call from inside a running step returns at once: the
        outer call carries on with whatever the step started."""
        with self._lock:
            if self._running:
                return
            self._running = True
            try:
                self._maintain()
                engine = self.engine
                engine.check_watched = bool(engine.watched)
                engine.refresh_due = True  # (as a threaded executor's tick does)
                while True:
                    messages = engine.drain()
                    if messages:
                        engine.iterate(messages)
                    elif self.tasks:
                        engine.report(self.tasks.popleft()())
                    elif engine.has_work():
                        engine.iterate([])
                    elif engine.recovering and engine.failures <= RECOVERY_ATTEMPTS:
                        # a failed iteration: wait out its backoff, then take the plans up again
                        time.sleep(max(0.0, engine.recover_at - time.monotonic()))
                    else:
                        return
            finally:
                self._running = False

    def call(self, fn: Callable[[], None]) -> None:
        self.engine.call(fn)

    def shutdown(self, timeout: float) -> None:
        with self._lock:
            self.engine.release_plans()
