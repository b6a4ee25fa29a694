"""What a run step reports while it runs: ``self.progress(done, total)`` and
``self.log("...")``.

Each call is checked, emitted at once as a signal (:data:`~dynaflow.signals.step_progress`,
:data:`~dynaflow.signals.step_logged`), and stored — not on every call: a step that reports in
a tight loop must not turn into a database write per iteration. What was reported is written
when :data:`FLUSH_EVERY` seconds have passed since the last write, and when the call ends
(whatever way it ends). Progress is written only while the step runs in this world (a world
that lost the plan writes nothing); log lines are numbered per step across its runs, and at most
:data:`MAX_LINES` are kept per step (then one line saying how many more there were).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from dynaflow import signals
from dynaflow.clock import now
from dynaflow.exceptions import DynaflowError, InvalidArgument
from dynaflow.persistence.reports import StepLogLine
from dynaflow.services import Services

log = logging.getLogger("dynaflow.executor")

#: seconds between writes of what a running step reports
FLUSH_EVERY = 0.5
#: log lines kept per step
MAX_LINES = 1000
#: characters kept of one log line
MAX_LINE = 4000


class Reporter:
    """What one ``run`` call of a step reports; see the module's docstring."""

    __slots__ = (
        "_dropped",
        "_flushed",
        "_lines",
        "_progress",
        "_seq",
        "action_class",
        "plan_id",
        "services",
        "step_id",
        "weight",
    )

    def __init__(
        self, services: Services, plan_id: str, step_id: int, action_class: str, weight: float
    ) -> None:
        self.services, self.plan_id, self.step_id = services, plan_id, step_id
        self.action_class, self.weight = action_class, weight
        self._progress: dict[str, Any] | None = None
        self._lines: list[StepLogLine] = []
        self._seq: int | None = None  # the last seq stored or queued (read on the first line)
        self._dropped = 0
        self._flushed = time.monotonic()

    def progress(self, done: Any, total: Any = None) -> None:
        if isinstance(done, bool) or not isinstance(done, int | float) or done < 0:
            raise InvalidArgument(f"progress(done={done!r}): done must be a number >= 0")
        if total is not None and (
            isinstance(total, bool) or not isinstance(total, int | float) or total <= 0
        ):
            raise InvalidArgument(f"progress(total={total!r}): total must be a number > 0")
        self._progress = {"done": done, "total": total}
        if self.weight != 1:
            self._progress["weight"] = self.weight
        signals.emit(
            signals.step_progress,
            self.services.world,
            plan_id=self.plan_id,
            step_id=self.step_id,
            action_class=self.action_class,
            done=done,
            total=total,
        )
        self._maybe_flush()

    def log(self, message: Any) -> None:
        if not isinstance(message, str):
            raise InvalidArgument(f"log() takes a str, got {type(message).__name__}")
        if len(message) > MAX_LINE:
            message = message[:MAX_LINE] + f"… ({len(message) - MAX_LINE} more characters)"
        at = now()
        signals.emit(
            signals.step_logged,
            self.services.world,
            plan_id=self.plan_id,
            step_id=self.step_id,
            action_class=self.action_class,
            message=message,
            at=at,
        )
        if self._seq is None:
            self._seq = self.services.storage.last_log_seq(self.plan_id, self.step_id)
        if self._seq >= MAX_LINES:
            self._dropped += 1
            return
        self._seq += 1
        self._lines.append(StepLogLine(self.step_id, self._seq, at, message))
        self._maybe_flush()

    def take_progress(self) -> dict[str, Any] | None:
        """The progress reported last and not stored yet (the caller stores it)."""
        progress, self._progress = self._progress, None
        return progress

    def close(self) -> None:
        """The call ended: write what is left (never raising: a report is not worth a
        step)."""
        if self._dropped:
            assert self._seq is not None
            self._seq += 1
            note = f"… {self._dropped} more lines not kept (at most {MAX_LINES} per step)"
            self._lines.append(StepLogLine(self.step_id, self._seq, now(), note))
            self._dropped = 0
        self.flush()

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._flushed >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        self._flushed = time.monotonic()
        storage, progress, lines = self.services.storage, self._progress, self._lines
        self._progress, self._lines = None, []
        try:
            if progress is not None:
                storage.save_progress(self.plan_id, self.step_id, self.services.id, progress)
            if lines:
                storage.add_step_logs(self.plan_id, lines)
        except DynaflowError as exc:
            log.warning(
                "could not store what step %s of plan %s reported: %s",
                self.step_id,
                self.plan_id,
                exc,
            )
