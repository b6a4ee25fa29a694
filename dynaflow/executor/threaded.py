"""The thread-pool executor: ``workers`` worker threads and a scheduler thread.

Scheduler iterations (:meth:`Engine.process`) run under one lock, in whichever thread gets there
first: a worker that has just finished a step runs the iteration that records it, and if that
iteration makes exactly one more step ready, the same worker runs that step next. A sequence
of steps therefore runs without a single thread hand-off, while wide plans still spread over
the pool; outcomes that pile up while one thread writes are committed together (group commit).
The scheduler thread wakes on requests from outside (``execute``, shutdown) and on a tick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from dynaflow.clock import now
from dynaflow.executor.base import Task
from dynaflow.executor.engine import Engine
from dynaflow.services import Services

log = logging.getLogger("dynaflow.executor")

#: how often the scheduler thread looks at the inbox when nobody wakes it
TICK = 1.0
#: how often it looks at the rows of plans followed elsewhere
WATCH_TICK = 0.2


class ThreadedExecutor:
    """``pools``: worker threads per queue (a run step goes to the pool of its action's
    ``queue``; finalize runs on the first pool). ``maintain`` is the world's heartbeat and
    takeover call, made every ``lease`` / 6 seconds on a thread of its own; ``poll``, if given,
    is called on the scheduler thread whenever it wakes (the world's requests)."""

    def __init__(
        self,
        services: Services,
        pools: dict[str, int],
        maintain: Callable[[], None],
        lease: float,
        poll: Callable[[], None] | None = None,
    ) -> None:
        name = services.id
        self.pools = {
            queue: ThreadPoolExecutor(size, thread_name_prefix=f"dynaflow-{queue}-{name}")
            for queue, size in pools.items()
        }
        self.pool = next(iter(self.pools.values()))
        self._poll = poll
        self.engine = Engine(services, self._dispatch)
        self._maintain = maintain
        self._lease = lease
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._local = threading.local()
        self._stopping = False
        self._counts_lock = threading.Lock()
        #: threads of each pool running a task now, by id(pool)
        self._occupied: dict[int, int] = {}
        #: offered steps of other worlds running (or queued) here
        self.foreign = 0
        self._poll_interval = services.storage.poll_interval
        self._thread = threading.Thread(
            target=self._loop, name=f"dynaflow-scheduler-{name}", daemon=True
        )
        self._thread.start()
        # heartbeats on a thread of their own: a long scheduler iteration must not make a live
        # world look dead to the others
        self._beat_stop = threading.Event()
        self._beat = threading.Thread(
            target=self._heartbeat, name=f"dynaflow-heartbeat-{name}", daemon=True
        )
        self._beat.start()

    # -- dispatch and iterations -------------------------------------------------------------

    def _dispatch(self, task: Task) -> None:
        collected: list[Task] | None = getattr(self._local, "collected", None)
        if collected is not None:
            collected.append(task)
        else:
            self._submit(task)

    def _pool_of(self, task: Task) -> ThreadPoolExecutor:
        return self.pools.get(getattr(task, "queue", ""), self.pool)

    def _submit(self, task: Task) -> None:
        self._pool_of(task).submit(self._work, task)

    def free(self, queue: str) -> int:
        """Threads of the queue's pool with nothing queued for them (an estimate)."""
        pool = self.pools.get(queue)
        if pool is None:
            return 0
        return max(0, pool._max_workers - pool._work_queue.qsize() - self._busy_threads(pool))

    def _busy_threads(self, pool: ThreadPoolExecutor) -> int:
        with self._counts_lock:
            return self._occupied.get(id(pool), 0)

    def run_foreign(self, queue: str, fn: Callable[[], None]) -> None:
        """Run ``fn`` (a step another world offered) on the queue's pool; shutdown waits for
        it as for this world's own steps."""
        pool = self.pools[queue]
        with self._counts_lock:
            self.foreign += 1

        def run() -> None:
            self._enter(pool)
            try:
                fn()
            except BaseException:
                log.exception("running an offered step crashed")
            finally:
                self._leave(pool)
                with self._counts_lock:
                    self.foreign -= 1
                with self._idle:
                    self._idle.notify_all()

        pool.submit(run)

    def _enter(self, pool: ThreadPoolExecutor) -> None:
        with self._counts_lock:
            self._occupied[id(pool)] = self._occupied.get(id(pool), 0) + 1

    def _leave(self, pool: ThreadPoolExecutor) -> None:
        with self._counts_lock:
            self._occupied[id(pool)] -= 1

    def _pump(self, collected: list[Task] | None = None) -> None:
        """Run iterations until the inbox is empty, unless another thread is running them (it
        will see what we queued: it checks the inbox again after letting go of the lock)."""
        engine = self.engine
        while True:
            if not self._lock.acquire(blocking=False):
                return
            try:
                self._local.collected = collected
                messages = engine.drain()
                if messages or engine.has_work():
                    due = engine.next_due
                    engine.iterate(messages)
                    if engine.next_due is not None and (due is None or engine.next_due < due):
                        self._wake.set()  # an earlier timer: the scheduler thread re-times its nap
            finally:
                self._local.collected = None
                self._lock.release()
            with self._idle:
                self._idle.notify_all()
            if not engine.has_work():
                return

    def _work(self, task: Task | None) -> None:
        while task is not None:
            pool = self._pool_of(task)
            self._enter(pool)
            try:
                message = task()
            except BaseException:  # tasks report their own errors; this is a bug in dynaflow
                log.exception("executor task crashed")
                raise
            finally:
                self._leave(pool)
            self.engine.report(message)
            collected: list[Task] = []
            self._pump(collected)
            # go on with the next step of this pool's queue in this thread, if there is one
            task = next((t for t in collected if self._pool_of(t) is pool), None)
            for other in collected:
                if other is not task:
                    self._submit(other)

    def _loop(self) -> None:
        engine = self.engine
        tick = min(TICK, self._lease / 3)
        while not self._stopping:
            timeout = tick
            if engine.next_due is not None:
                timeout = min(TICK, max(0.0, (engine.next_due - now()).total_seconds()))
            if engine.watched:
                timeout = min(timeout, WATCH_TICK)
            if self._poll is not None:
                timeout = min(timeout, self._poll_interval)
            if not self._wake.wait(timeout):
                engine.tick()
            self._wake.clear()
            if self._poll is not None:
                try:
                    self._poll()
                except Exception:
                    log.exception("looking at requests failed; trying again on the next tick")
            self._pump()

    def _heartbeat(self) -> None:
        while not self._beat_stop.wait(self._lease / 6):
            try:
                self._maintain()
            except Exception:
                log.exception("heartbeat or takeover failed; trying again on the next beat")

    # -- the executor interface ----------------------------------------------------------------

    def run_pending(self) -> None:
        """Wake the scheduler thread to look at the inbox now."""
        self._wake.set()

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` inside a scheduler iteration."""
        self.engine.call(fn)
        self._wake.set()

    def shutdown(self, timeout: float) -> None:
        """Stop taking new steps, wait up to ``timeout`` for running ones, release the plans."""
        deadline = time.monotonic() + timeout
        self.call(self._stop_claiming)
        with self._idle:
            while (self.engine.busy > 0 or self.foreign > 0 or not self.engine.inbox.empty()) and (
                time.monotonic() < deadline
            ):
                self._wake.set()
                self._idle.wait(min(0.05, max(0.0, deadline - time.monotonic())))
        self._beat_stop.set()
        self._beat.join(timeout=5)
        if self.engine.busy:
            log.warning(
                "%d steps still running after %.1fs; they stay 'running' for recovery",
                self.engine.busy,
                timeout,
            )
        with self._lock:
            self.engine.iterate(self.engine.drain())
            self.engine.release_plans()
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=5)
        for pool in self.pools.values():
            pool.shutdown(wait=False, cancel_futures=True)

    def _stop_claiming(self) -> None:
        self.engine.stopping = True
