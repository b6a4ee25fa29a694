"""What happens when a step fails: rescue strategies and retry policies."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from dynaflow.clock import seconds
from dynaflow.exceptions import InvalidArgument


class Rescue(StrEnum):
    """Per action: what the executor does when its run step fails (with ``auto_rescue``).

    PAUSE waits for an operator; SKIP skips the step (and its consumers) and goes on; FAIL
    stops the plan with result ``error``. Over the failed steps of a plan: all SKIP -> skip,
    all FAIL -> fail, anything else -> pause.
    """

    PAUSE = "pause"
    SKIP = "skip"
    FAIL = "fail"


def combine(strategies: Iterable[Rescue]) -> Rescue:
    found = set(strategies)
    if found == {Rescue.SKIP}:
        return Rescue.SKIP
    if found == {Rescue.FAIL}:
        return Rescue.FAIL
    return Rescue.PAUSE


@dataclass(frozen=True)
class Retry:
    """Run a failed step again, up to ``attempts`` runs in all, waiting ``initial`` seconds,
    then ``backoff`` times longer each time (at most ``max_delay``), with up to ``jitter`` (a
    fraction) of random spread. Only errors that are instances of ``on`` are retried. Between
    attempts the step waits on a persisted timer and holds no thread."""

    attempts: int = 3
    initial: float = 1.0
    backoff: float = 2.0
    max_delay: float = 60.0
    jitter: float = 0.0
    on: tuple[type[BaseException], ...] = field(default=(Exception,))

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise InvalidArgument(f"Retry(attempts={self.attempts!r}) takes an int >= 1")
        if self.attempts < 1:
            raise InvalidArgument(
                f"Retry(attempts={self.attempts}) must allow at least 1 attempt (the first run)"
            )
        for name in ("initial", "max_delay"):
            value = getattr(self, name)
            seconds(value, f"Retry({name}={value!r})")
        for name in ("backoff", "jitter"):
            value = getattr(self, name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or not math.isfinite(value) or value < 0:
                raise InvalidArgument(f"Retry({name}={value!r}) must be a number >= 0 (finite)")
        if self.jitter > 1:
            raise InvalidArgument(f"Retry(jitter={self.jitter}) is a fraction between 0 and 1")
        on = self.on if isinstance(self.on, tuple) else (self.on,)
        if not on or not all(isinstance(e, type) and issubclass(e, BaseException) for e in on):
            raise InvalidArgument(f"Retry(on={self.on!r}) takes exception classes")
        object.__setattr__(self, "on", on)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 for the first run)."""
        try:
            grown = self.initial * self.backoff ** (attempt - 1)
        except OverflowError:
            grown = math.inf
        delay = min(self.max_delay, grown)
        if self.jitter:
            delay *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, delay)

    def applies(self, exc: BaseException | None) -> bool:
        """Whether the error ``exc`` is retried."""
        return exc is not None and isinstance(exc, self.on)
