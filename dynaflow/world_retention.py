"""The World's side of retention: ``world.prune(...)``, and the :class:`~dynaflow.retention.Pruner`
with which an executor world applies ``World(retention=...)``. A part of
:class:`~dynaflow.World`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from dynaflow.exceptions import ConfigurationError
from dynaflow.executor import Executor, ThreadedExecutor
from dynaflow.persistence import Storage
from dynaflow.retention import BATCH, Pruner, PruneReport, Retention, prune
from dynaflow.states import PlanResult


class RetentionSide:
    """See the module's docstring; :class:`~dynaflow.World` provides the state."""

    storage: Storage
    executor: Executor | None
    #: the world's ``retention=`` (``None``: it keeps every plan)
    retention: Retention | None = None
    pruner: Pruner | None = None

    def _check_open(self) -> None:
        raise NotImplementedError

    def prune(
        self,
        older_than: str | timedelta | None = None,
        *,
        result: str | PlanResult | None = None,
        dry_run: bool = False,
        batch: int = BATCH,
    ) -> PruneReport:
        """Remove the finished plans that ended more than ``older_than`` ago (``"30d"``,
        ``"12h"``, ``"90m"``, a ``timedelta``) — with ``result``, only those that ended so —
        with every row kept for them, ``batch`` plans per transaction; with ``dry_run`` only
        count them. Plans in use are never removed (docs/retention.md says which). Without
        ``older_than``, as this world's ``retention=`` says. Returns the rows removed per
        table. Bad arguments raise :class:`ConfigurationError`, and nothing is removed."""
        self._check_open()
        if older_than is None:
            if self.retention is None:
                raise ConfigurationError(
                    "world.prune() needs older_than= (e.g. '30d'), or a World(retention=...)"
                )
            older_than, result = self.retention.older_than, self.retention.result
        return prune(
            self.storage, older_than, result, dry_run=dry_run, batch=batch, what="world.prune()"
        )

    def _start_pruning(self) -> None:
        """An executor world with a retention prunes from now on: on a thread of its own, or
        (inline) from ``run_pending()``."""
        if self.retention is not None and self.executor is not None:
            threaded = isinstance(self.executor, ThreadedExecutor)
            self.pruner = Pruner(self, self.storage, self.retention, thread=threaded)

    def _prune_if_due(self) -> None:
        if self.pruner is not None:
            self.pruner.poll()

    def _stop_pruning(self, timeout: float | None = None) -> None:
        if self.pruner is not None:
            self.pruner.stop(10.0 if timeout is None else timeout)


def retention_of(value: Any) -> Retention | None:
    """``World(retention=...)`` checked (before the world opens anything)."""
    return Retention.of(value, "World(retention=...)")
