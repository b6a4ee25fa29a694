"""All of dynaflow's blinker signals, one per line. Sender is always the :class:`~dynaflow.World`.

Receivers of state changes run in the executor's scheduler thread after the change is committed;
those of a step's progress and log lines in the thread running the step, as it reports. A
receiver that raises is logged and never breaks execution (see :func:`emit`).
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import Namespace, Signal

log = logging.getLogger("dynaflow.signals")
_signals = Namespace()

#: plan_id: str, state: PlanState, result: PlanResult
plan_state_changed = _signals.signal("plan-state-changed")
#: plan_id: str, step_id: int, kind: StepKind, action_class: str, state: StepState
step_state_changed = _signals.signal("step-state-changed")
#: plan_id: str, from_world: str | None (None: released by a world that shut down)
plan_taken_over = _signals.signal("plan-taken-over")
#: plan_id: str, step_id: int, action_class: str, done: float, total: float | None (sent from
#: the worker thread running the step, as ``self.progress`` is called)
step_progress = _signals.signal("step-progress")
#: plan_id: str, step_id: int, action_class: str, message: str, at: datetime (as ``step_progress``)
step_logged = _signals.signal("step-logged")
#: report: PruneReport (finished plans an executor world's retention removed, after each prune)
plans_pruned = _signals.signal("plans-pruned")


def emit(signal: Signal, sender: Any, **kwargs: Any) -> None:
    """Send ``signal``; log and swallow any receiver's exception."""
    if not signal.receivers:
        return
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender, **kwargs)
        except BaseException:  # a receiver must never stop execution, not even by sys.exit
            log.exception(
                "receiver %r of signal %r failed; execution goes on",
                receiver,
                getattr(signal, "name", signal),
            )
