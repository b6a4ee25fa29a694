"""The one clock. Everything that needs "now" calls :func:`now`, so freezegun controls it."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from dynaflow.exceptions import InvalidArgument

#: the longest delay dynaflow schedules (100 years): beyond it, times stop being representable
MAX_DELAY = 100 * 365 * 24 * 3600.0


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """Databases may hand back naive datetimes; dynaflow stores UTC, so attach it."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def seconds(value: object, what: str, *, positive: bool = False) -> float:
    """``value`` as a number of seconds for a delay, timeout or interval; raises
    :class:`InvalidArgument` (naming ``what``) unless it is a finite number >= 0 (> 0 with
    ``positive``) of at most :data:`MAX_DELAY`."""
    ok = not isinstance(value, bool) and isinstance(value, int | float)
    if ok:
        number = float(value)  # type: ignore[arg-type]
        ok = math.isfinite(number) and (number > 0 if positive else number >= 0)
        ok = ok and number <= MAX_DELAY
    if not ok:
        bound = "> 0" if positive else ">= 0"
        raise InvalidArgument(
            f"{what} must be a number {bound}: a finite number of seconds, at most "
            f"{MAX_DELAY:.0f} (100 years)"
        )
    return number
