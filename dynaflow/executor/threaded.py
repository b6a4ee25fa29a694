"""The thread-pool executor: a scheduler thread plus ``workers`` worker threads."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from dynaflow.executor.engine import Engine, Task

if TYPE_CHECKING:
    from dynaflow.world import World

log = logging.getLogger("dynaflow.executor")


class ThreadedExecutor:
    def __init__(self, world: World, workers: int) -> None:
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix=f"dynaflow-worker-{world.id}")
        self.engine = Engine(world, self._submit)
        self._idle = threading.Condition()
        self._thread = threading.Thread(
            target=self._loop, name=f"dynaflow-scheduler-{world.id}", daemon=True
        )
        self._thread.start()

    def _submit(self, task: Task) -> None:
        self.pool.submit(self._work, task)

    def _work(self, task: Task) -> None:
        try:
            message = task()
        except BaseException:  # tasks report their own errors; this is a bug in dynaflow
            log.exception("executor task crashed")
            raise
        self.engine.inbox.put(message)

    def _loop(self) -> None:
        engine = self.engine
        while True:
            messages = [engine.inbox.get()]
            messages.extend(engine.drain())
            stop = any(m[0] == "stop" for m in messages)
            try:
                engine.process([m for m in messages if m[0] != "stop"])
            except Exception as exc:
                log.exception("scheduler iteration failed; failing the plans it was running")
                engine.fail_all(exc)
            with self._idle:
                self._idle.notify_all()
            if stop:
                return

    def run_pending(self) -> None:
        """Nothing to do: the scheduler thread runs whatever is ready on its own."""

    def call(self, fn: Any) -> None:
        """Run ``fn`` in the scheduler thread (between iterations)."""
        self.engine.inbox.put(("call", fn))

    def shutdown(self, timeout: float) -> None:
        """Stop taking new steps, wait up to ``timeout`` for running ones, then stop."""
        deadline = time.monotonic() + timeout
        self.engine.inbox.put(("call", self._stop_claiming))
        with self._idle:
            while self.engine.busy > 0 and time.monotonic() < deadline:
                self._idle.wait(min(0.1, max(0.0, deadline - time.monotonic())))
        if self.engine.busy:
            log.warning(
                "%d steps still running after %.1fs; they stay 'running' for recovery",
                self.engine.busy,
                timeout,
            )
        self.engine.inbox.put(("call", self.engine.pause_idle_plans))
        self.engine.inbox.put(("stop",))
        self._thread.join(timeout=max(1.0, deadline - time.monotonic()))
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _stop_claiming(self) -> None:
        self.engine.stopping = True
