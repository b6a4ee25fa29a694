"""dynaflow's pytest plugin, registered through the ``pytest11`` entry point as ``dynaflow``
(``-p no:dynaflow`` turns it off). Its fixtures:

* ``dynaflow_world`` — a World with the inline executor on ``dynaflow_url``, closed after the
  test; with ``dynaflow_clock`` in the same test, opened on the frozen clock and attached to it.
* ``dynaflow_clock`` — a :class:`~dynaflow.testing.FrozenClock` frozen at
  :data:`~dynaflow.testing.T0` for the test.
* ``dynaflow_url`` — the storage of ``dynaflow_world``: ``memory://``; override it in a
  ``conftest.py`` to test on SQLite.
* ``dynaflow_probe`` — :data:`dynaflow.testing.probe`, emptied before the test; its gates are
  opened after it.

dynaflow is imported when a fixture is first used, not when pytest starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from dynaflow import World
    from dynaflow.testing import FrozenClock, Probe


@pytest.fixture
def dynaflow_url() -> str:
    """Where ``dynaflow_world`` keeps its plans: in memory. Override it to use a database::

    @pytest.fixture
    def dynaflow_url(tmp_path):
        return f"sqlite:///{tmp_path / 'dynaflow.db'}"
    """
    return "memory://"


@pytest.fixture
def dynaflow_clock() -> Iterator[FrozenClock]:
    """The time frozen at ``T0`` (2030-01-01 12:00 UTC) for the test; ``advance(seconds)``
    moves it and fires the timers of ``dynaflow_world`` as they fall due."""
    from dynaflow.testing import frozen_clock

    with frozen_clock() as clock:
        yield clock


@pytest.fixture
def dynaflow_world(request: pytest.FixtureRequest, dynaflow_url: str) -> Iterator[World]:
    """A World on ``dynaflow_url`` with the inline executor: ``trigger`` returns once the plan
    has run as far as it can. Closed after the test."""
    from dynaflow import World
    from dynaflow.testing import WAIT

    clock = None
    if "dynaflow_clock" in request.fixturenames:  # freeze first: the world starts frozen
        clock = request.getfixturevalue("dynaflow_clock")
    world = World(dynaflow_url, executor="inline")
    if clock is not None:
        clock.attach(world)
    yield world
    world.close(timeout=WAIT)


@pytest.fixture
def dynaflow_probe() -> Iterator[Probe]:
    """The shared :data:`dynaflow.testing.probe`, empty; every gate is opened at the end."""
    from dynaflow.testing import probe

    probe.reset()
    yield probe
    probe.release_all()
