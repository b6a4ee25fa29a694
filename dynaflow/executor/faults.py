"""A scheduler iteration that fails — the database went away, or a bug — never strands plans.

Nothing of the failed iteration was committed, so the database still holds the plans as they
were. The engine drops its in-memory runtimes (keeping their futures), waits until the tasks in
flight have reported, backs off, and takes its plans up again from the database as if another
world had stopped: steps whose outcome could not be recorded are interrupted steps (idempotent
ones run again, others error with "abnormal termination" and their rescue strategy applies).
While the database does not answer this repeats with a growing backoff; the world's heartbeat
fails meanwhile, so after its lease other worlds take its plans over.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future

from dynaflow.exceptions import ExecutorError, StorageError
from dynaflow.executor.base import EngineBase, Iteration
from dynaflow.executor.messages import Execute, Message, Takeover

log = logging.getLogger("dynaflow.executor")

#: the longest wait between attempts to take plans up again
MAX_BACKOFF = 10.0


class Faults(EngineBase):
    def iteration_failed(self, exc: BaseException, messages: list[Message]) -> None:
        """Drop what the failed iteration held; queue what it had not handled yet."""
        error = _library_error(exc)
        if isinstance(exc, StorageError):
            log.error(
                "scheduler iteration failed: %s; plans are taken up again when it is back", exc
            )
        else:
            log.error("scheduler iteration failed; plans are taken up again", exc_info=exc)
        self.claimed.clear()  # claims the messages requeued below make again
        failing: list[Message] = []
        rest = messages if self.handled < 0 else messages[self.handled + 1 :]
        if 0 <= self.handled < len(messages):
            failing = [messages[self.handled]]
        for message in failing:
            future = getattr(message, "future", None)
            if isinstance(future, Future) and not future.done():
                future.set_exception(error)
        for message in rest:
            self.inbox.put(message)
        if self.current is not None:  # tasks it counted but never handed to a worker
            self.busy -= self.current.undispatched
            self.current.undispatched = 0
            # plans whose end was in the iteration are no longer in self.plans; their end did
            # not land (or, if the failure came after the commit, taking them up finds them
            # ended and resolves their futures)
            for plan_id, futures in self.current.ended:
                self.recovering.setdefault(plan_id, []).extend(futures)
            self.current.ended.clear()
        for plan_id, runtime in self.plans.items():
            self.recovering.setdefault(plan_id, []).extend(runtime.futures)
        self.plans.clear()
        self.stale.clear()
        self.failures += 1
        self.recover_at = time.monotonic() + min(MAX_BACKOFF, 0.1 * 2**self.failures)

    def recovery_due(self) -> bool:
        return bool(self.recovering) and self.busy == 0 and time.monotonic() >= self.recover_at

    def take_up_again(self, it: Iteration) -> None:
        """Take the dropped plans up again (from this world, as from one that stopped)."""
        recovering, self.recovering = self.recovering, {}
        for index, (plan_id, futures) in enumerate(recovering.items()):
            first = futures[0] if futures else Future()
            again = Execute(plan_id, first, takeover=Takeover(self.world_id), follow_if_taken=True)
            try:
                self.start(again, it)
            except BaseException:
                for other, waiting in list(recovering.items())[index:]:
                    self.recovering.setdefault(other, []).extend(waiting)
                raise
            runtime = self.plans.get(plan_id)
            for future in futures[1:]:
                if runtime is not None:
                    runtime.futures.append(future)
                else:
                    self.follow(plan_id, future)


def _library_error(exc: BaseException) -> BaseException:
    if isinstance(exc, StorageError | ExecutorError):
        return exc
    return ExecutorError(
        f"the executor failed while handling this request ({type(exc).__name__}); its plans "
        "are taken up again from the database: look at them with world.get_plan()"
    )
