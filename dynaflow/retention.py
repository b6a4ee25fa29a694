"""Retention: removing finished plans, with every row kept for them, once they are old enough.

:func:`prune` removes the plans in batches, each batch its own short transaction
(:meth:`~dynaflow.persistence.retention.RetentionStore.prune_plans`), and says what went in a
:class:`PruneReport`. :class:`Retention` is a world's setting (``World(retention=...)``), and a
:class:`Pruner` applies it on an executor world: on a thread of its own every
:attr:`Retention.every` seconds, or, on the inline executor, from ``run_pending()``.

Only plans that nothing uses any more are removed: see
:mod:`dynaflow.persistence.retention` for which those are.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dynaflow import signals
from dynaflow.clock import MAX_DELAY, now
from dynaflow.exceptions import ConfigurationError, DynaflowError
from dynaflow.persistence.base import Storage
from dynaflow.persistence.retention import PRUNED_TABLES, no_rows
from dynaflow.states import PlanResult

log = logging.getLogger("dynaflow.retention")

#: plans removed per transaction, unless told otherwise
BATCH = 500
#: the most plans one transaction removes (a bound on how long it holds its locks)
MAX_BATCH = 5000
#: seconds between two prunes of an executor world, unless told otherwise
EVERY = 300.0
#: the results a finished plan can have (``pending`` is not one)
RESULTS = tuple(r.value for r in PlanResult if r is not PlanResult.PENDING)

_PART = re.compile(r"(\d+)([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: the durations :func:`parse_duration` reads, for error messages
DURATIONS = "a duration like 30d, 12h, 90m, 45s, 2w or 1d12h"
_FORMS = f"{DURATIONS}, or a datetime.timedelta"


def parse_duration(value: object, what: str, forms: str = _FORMS) -> timedelta:
    """``value`` (``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"``, ``"1d12h"``, or a
    :class:`~datetime.timedelta`) as a timedelta >= 0 of at most 100 years; anything else
    raises :class:`ConfigurationError` naming ``what`` and saying what ``forms`` it takes."""
    if isinstance(value, timedelta):
        delta = value
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        parts = _PART.findall(text)
        if text.startswith("-") and text != "-":
            raise ConfigurationError(f"{what}: {value!r} is negative; give {forms}")
        if not text or "".join(n + unit for n, unit in parts) != text:
            raise ConfigurationError(f"{what}: cannot read {value!r} as a duration; give {forms}")
        delta = timedelta(seconds=sum(int(n) * _SECONDS[unit] for n, unit in parts))
    else:
        raise ConfigurationError(f"{what} takes {forms}, got {type(value).__name__} {value!r}")
    if delta < timedelta(0):
        raise ConfigurationError(f"{what}: {value!r} is negative; give {forms}")
    if delta.total_seconds() > MAX_DELAY:
        raise ConfigurationError(f"{what}: {value!r} is more than 100 years; give {forms}")
    return delta


def parse_result(value: object, what: str) -> PlanResult | None:
    """``None`` (any result) or one of :data:`RESULTS`, as a :class:`PlanResult`."""
    if value is None:
        return None
    if isinstance(value, str) and value in RESULTS:
        return PlanResult(value)
    raise ConfigurationError(
        f"{what}: {value!r} is not the result of a finished plan; give one of "
        f"{', '.join(RESULTS)} (or None for any)"
    )


@dataclass(frozen=True, slots=True, init=False)
class Retention:
    """How long a world keeps finished plans: ``Retention("30d")``, ``Retention(timedelta(
    days=30), result="success")``.

    ``older_than``: a stopped plan that ended longer ago than this is removed. ``result``: only
    plans that ended with this result (``None``: any). ``every``: seconds between two prunes
    of an executor world. ``batch``: plans removed per transaction (at most 5,000)."""

    older_than: timedelta
    result: PlanResult | None
    every: float
    batch: int

    def __init__(
        self,
        older_than: str | timedelta,
        result: str | PlanResult | None = None,
        *,
        every: float = EVERY,
        batch: int = BATCH,
    ) -> None:
        self._set(older_than, result, every, batch, "Retention(...)")

    def _set(
        self, older_than: object, result: object, every: object, batch: object, what: str
    ) -> None:
        if (
            isinstance(every, bool)
            or not isinstance(every, int | float)
            or not 0 < every <= MAX_DELAY
        ):
            raise ConfigurationError(f"{what}: every= must be seconds > 0, got {every!r}")
        if isinstance(batch, bool) or not isinstance(batch, int) or not 0 < batch <= MAX_BATCH:
            raise ConfigurationError(
                f"{what}: batch= must be an int from 1 to {MAX_BATCH} (plans per transaction), "
                f"got {batch!r}"
            )
        object.__setattr__(self, "older_than", parse_duration(older_than, f"{what} older_than"))
        object.__setattr__(self, "result", parse_result(result, f"{what} result"))
        object.__setattr__(self, "every", float(every))
        object.__setattr__(self, "batch", batch)

    @classmethod
    def checked(
        cls,
        older_than: object,
        result: object = None,
        *,
        every: object = EVERY,
        batch: object = BATCH,
        what: str,
    ) -> Retention:
        """As the constructor, its errors naming ``what`` (the call that was given them)."""
        retention = cls.__new__(cls)
        retention._set(older_than, result, every, batch, what)
        return retention

    @classmethod
    def of(cls, value: object, what: str = "World(retention=...)") -> Retention | None:
        """A world's ``retention=``: ``None`` (keep every plan), a :class:`Retention`, or a
        duration as :func:`parse_duration` reads it."""
        if value is None or isinstance(value, Retention):
            return value
        if isinstance(value, str | timedelta):
            return cls.checked(value, what=what)
        raise ConfigurationError(
            f"{what} takes {_FORMS}, or a dynaflow.Retention; got {type(value).__name__} {value!r}"
        )


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What :func:`prune` removed (or, with ``dry_run``, would remove): the rows per table
    (``plans``, ``steps``, ``history``, ...; see :data:`PRUNED_TABLES`), in ``batches``
    transactions, of the plans that ended before ``cutoff``."""

    cutoff: datetime
    result: PlanResult | None
    dry_run: bool
    rows: dict[str, int]
    batches: int = 0

    @property
    def plans(self) -> int:
        return self.rows["plans"]

    @property
    def total_rows(self) -> int:
        """Every row, the plans' own included."""
        return sum(self.rows.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "cutoff": self.cutoff.isoformat(),
            "result": None if self.result is None else self.result.value,
            "plans": self.plans,
            "rows": self.total_rows,
            "tables": dict(self.rows),
            "batches": self.batches,
        }

    def __str__(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        which = "plans" if self.result is None else f"{self.result.value} plans"
        text = f"{verb} {self.plans} {which} ({self.total_rows} rows)"
        text += f" that ended before {self.cutoff.isoformat(timespec='seconds')}"
        if self.dry_run or not self.batches:
            return text
        return f"{text} in {self.batches} transaction{'s' if self.batches > 1 else ''}"


def prune(
    storage: Storage,
    older_than: object,
    result: object = None,
    *,
    dry_run: bool = False,
    batch: int = BATCH,
    stop: threading.Event | None = None,
    what: str = "prune",
) -> PruneReport:
    """Remove the finished plans that ended more than ``older_than`` ago (with ``result``, only
    those that ended so), ``batch`` plans per transaction, until none is left or ``stop`` is
    set; with ``dry_run`` only count them. Bad arguments raise :class:`ConfigurationError`
    before anything is removed."""
    retention = Retention.checked(older_than, result, batch=batch, what=what)
    if storage.current_connection() is not None:
        raise ConfigurationError(
            f"{what} removes plans in short transactions of its own, one per batch; call it "
            "outside world.transaction() (or an application's transaction)"
        )
    cutoff = now() - retention.older_than
    if dry_run:
        rows = storage.count_prunable(cutoff, retention.result)
        return PruneReport(cutoff, retention.result, True, rows)
    rows, batches = no_rows(), 0
    while stop is None or not stop.is_set():
        removed = storage.prune_plans(cutoff, retention.result, retention.batch)
        if not removed["plans"]:
            break
        batches += 1
        for name in PRUNED_TABLES:
            rows[name] += removed[name]
        log.debug("pruned a batch of %d plans", removed["plans"])
    return PruneReport(cutoff, retention.result, False, rows, batches)


class Pruner:
    """An executor world's retention: :func:`prune` with the world's :class:`Retention`, at
    once and then every :attr:`Retention.every` seconds — on a thread of its own (``thread``),
    or when :meth:`poll` finds it is time (the inline executor's ``run_pending()``, on
    dynaflow's clock). Counts are logged at INFO; a failure is logged and tried again next
    time; :meth:`stop` ends it between two batches."""

    def __init__(self, sender: Any, storage: Storage, retention: Retention, *, thread: bool):
        self.sender = sender
        self.storage = storage
        self.retention = retention
        self._stop = threading.Event()
        self._next: datetime | None = None
        self._thread: threading.Thread | None = None
        if thread:
            self._thread = threading.Thread(target=self._loop, name="dynaflow-pruner", daemon=True)
            self._thread.start()

    def poll(self) -> PruneReport | None:
        """Prune if it is time (the first call always is); nothing when a thread prunes."""
        at = now()
        if self._thread is not None:
            return None
        if self._next is not None and at < self._next:
            return None
        self._next = at + timedelta(seconds=self.retention.every)
        return self.run()

    def run(self) -> PruneReport | None:
        """Prune now; ``None`` if it failed (logged)."""
        retention = self.retention
        try:
            report = prune(
                self.storage,
                retention.older_than,
                retention.result,
                batch=retention.batch,
                stop=self._stop,
                what="World(retention=...)",
            )
        except DynaflowError as exc:
            log.warning(
                "pruning finished plans failed (%s); trying again in %gs", exc, retention.every
            )
            return None
        if report.plans:
            log.info("retention: %s", report)
        else:
            log.debug("retention: %s", report)
        signals.emit(signals.plans_pruned, self.sender, report=report)
        return report

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run()
            except Exception:  # a bug: keep the thread, and the world, going
                log.exception(
                    "pruning finished plans crashed; trying again in %gs", self.retention.every
                )
            if self._stop.wait(self.retention.every):
                return

    def stop(self, timeout: float = 10.0) -> None:
        """Stop pruning (between two batches) and wait up to ``timeout`` for the thread."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
