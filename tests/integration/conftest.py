from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import actions


@pytest.fixture(autouse=True)
def probe() -> Iterator[actions.Probe]:
    """A fresh recorder for every test (a :class:`dynaflow.testing.Probe`); every gate is
    opened at the end."""
    probe = actions.PROBE
    probe.reset()
    yield probe
    probe.release_all()
