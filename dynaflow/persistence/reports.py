"""The storage port's part for what run steps report while they run: their progress
(``dynaflow_steps.progress``) and their log lines (``dynaflow_step_logs``).
:class:`~dynaflow.persistence.base.Storage` includes it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class StepLogLine:
    """One line a run step logged (``self.log``): numbered from 1 per step, across its runs."""

    step_id: int
    seq: int
    at: datetime
    message: str


class StepReports(ABC):
    @abstractmethod
    def save_progress(
        self, plan_id: str, step_id: int, world_id: str, progress: dict[str, Any]
    ) -> bool:
        """Set the progress of a step that ``world_id`` runs; ``False`` (nothing written) if
        the step is not running there any more."""

    @abstractmethod
    def add_step_logs(self, plan_id: str, lines: Sequence[StepLogLine]) -> None:
        """Append log lines (their ``seq`` given by the caller; a line already stored under its
        ``(plan, step, seq)`` is left as it is)."""

    @abstractmethod
    def last_log_seq(self, plan_id: str, step_id: int) -> int:
        """The ``seq`` of the step's last log line (0 if none)."""

    @abstractmethod
    def step_logs(
        self, plan_id: str, step_id: int | None = None, *, after: int = 0, limit: int = 1000
    ) -> list[StepLogLine]:
        """The plan's log lines (one step's, with ``step_id``), by step then ``seq``, starting
        after ``seq`` ``after`` (of that step), at most ``limit``."""
