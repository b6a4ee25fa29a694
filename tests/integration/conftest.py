from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import actions


@pytest.fixture(autouse=True)
def probe() -> Iterator[actions.Probe]:
    """A fresh recorder for every test; whatever it gated is released at the end."""
    probe = actions.PROBE
    probe.reset()
    yield probe
    probe.event("release").set()
