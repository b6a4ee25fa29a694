"""A frozen clock for tests, on freezegun: time moves only when the test moves it, and moving it
fires the timers of the worlds attached to it as they fall due."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from dynaflow import clock
from dynaflow.exceptions import ConfigurationError, InvalidArgument
from dynaflow.world import World

#: where a frozen clock starts unless told otherwise
T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)

#: modules that keep the real time while the clock is frozen: a database driver connecting
#: while a test moves the clock would see its connect timeout expire, and the connection pool
#: times its waits
REAL_TIME_MODULES = ("psycopg", "sqlalchemy")

#: the frozen clocks started by :func:`frozen_clock`, innermost last
_active: list[FrozenClock] = []


class FrozenClock:
    """The frozen "now" of dynaflow (and of everything else that reads the time).

    ``tick`` and ``move_to`` only move the clock. ``advance`` and ``advance_to_next_timer`` move
    it and run the attached worlds: on an inline world every timer fires at its own due time,
    one after the other, with the clock showing that time, exactly as if the time had passed;
    a threaded world is woken and fires them in its own thread.
    """

    def __init__(self, factory: Any, worlds: Iterable[World] = ()) -> None:
        self._factory = factory
        self.worlds: list[World] = list(worlds)

    @property
    def now(self) -> datetime:
        """The frozen time (timezone-aware UTC)."""
        return clock.now()

    def attach(self, world: World) -> World:
        """Run ``world`` whenever this clock advances; returns it."""
        if world not in self.worlds:
            self.worlds.append(world)
        return world

    def tick(self, delta: timedelta | float = 1.0) -> datetime:
        """Move the clock on by ``delta`` (a ``timedelta`` or seconds); nothing runs."""
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else delta
        clock.seconds(seconds, "tick(delta): the delta")
        self._factory.tick(timedelta(seconds=seconds))
        return self.now

    def move_to(self, when: datetime) -> datetime:
        """Move the clock to ``when`` (timezone-aware, not earlier than now); nothing runs."""
        if not isinstance(when, datetime) or when.tzinfo is None:
            raise InvalidArgument(f"move_to({when!r}) needs a timezone-aware datetime")
        if when < self.now:
            raise InvalidArgument(
                f"move_to({when.isoformat()}) is before the clock's now ({self.now.isoformat()})"
                "; a frozen clock only moves forward"
            )
        self._factory.move_to(when.astimezone(UTC))
        return self.now

    def advance(self, seconds: float) -> datetime:
        """Move the clock on by ``seconds``, firing every timer due on the way at its own time
        (a timer that plans another within the span fires it too), then run the worlds at the
        new time. Returns the new now."""
        clock.seconds(seconds, f"advance({seconds!r}): the seconds")
        target = self.now + timedelta(seconds=seconds)
        self.run_worlds()
        while (due := self._next_due()) is not None and due <= target:
            self._factory.move_to(due)
            self.run_worlds()
        self._factory.move_to(target)
        self.run_worlds()
        return self.now

    def advance_to_next_timer(self) -> datetime | None:
        """Move the clock to the next timer of an attached world (a timer, a timeout or a retry)
        and fire it; ``None`` (the clock unmoved) when no timer is pending."""
        self.run_worlds()
        due = self._next_due()
        if due is None:
            return None
        self._factory.move_to(due)
        self.run_worlds()
        return self.now

    def run_worlds(self) -> None:
        """Have every attached, open world run what is ready or due now (``run_pending``)."""
        for world in self.worlds:
            if not world.closed and world.executor is not None:
                world.run_pending()

    def _next_due(self) -> datetime | None:
        """The earliest timer after now among the attached executor worlds' plans."""
        now = self.now
        found = [
            world.storage.next_due(world.id, after=now)
            for world in self.worlds
            if not world.closed and world.executor is not None
        ]
        due = [clock.as_utc(d) for d in found if d is not None]
        return min((d for d in due if d is not None), default=None)


def active_clock() -> FrozenClock | None:
    """The innermost clock :func:`frozen_clock` froze, if one is frozen now."""
    return _active[-1] if _active else None


@contextmanager
def frozen_clock(
    start: datetime | str = T0,
    *,
    worlds: Iterable[World] = (),
    ignore: Iterable[str] = REAL_TIME_MODULES,
) -> Iterator[FrozenClock]:
    """Freeze the time at ``start`` (a datetime, or a string freezegun parses) inside the block;
    ``worlds`` are attached to the clock (:meth:`FrozenClock.attach` adds more). ``ignore``:
    modules that keep the real time (freezegun's ``ignore``)."""
    try:
        from freezegun import freeze_time
    except ImportError:
        raise ConfigurationError(
            "dynaflow's frozen clock needs freezegun: pip install 'dynaflow[testing]' "
            "(or pip install freezegun)"
        ) from None
    if isinstance(start, datetime) and start.tzinfo is not None:
        start = start.astimezone(UTC).replace(tzinfo=None)
    with freeze_time(start, ignore=list(ignore)) as factory:
        frozen = FrozenClock(factory, worlds)
        _active.append(frozen)
        try:
            yield frozen
        finally:
            _active.remove(frozen)
