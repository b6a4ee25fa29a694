"""The pytest plugin, as a project that installs dynaflow gets it: registered by its entry
point, fixtures named ``dynaflow_*`` (none of them clashes with this suite's own fixtures,
which run with the plugin active), worlds closed after each test, gates opened."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

pytest_plugins = ["pytester"]


def test_the_entry_point_is_installed() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("dynaflow") == "dynaflow.testing.plugin", (
        "reinstall dynaflow (pip install -e .) to register its pytest plugin"
    )


def test_the_plugin_is_active_here(request: pytest.FixtureRequest) -> None:
    assert request.config.pluginmanager.has_plugin("dynaflow")


INNER = """
from dynaflow import World
from dynaflow.executor import InlineExecutor
from dynaflow.persistence import MemoryStorage
from dynaflow.testing import T0

SEEN = {}


def test_an_inline_world_in_memory(dynaflow_world):
    assert isinstance(dynaflow_world, World)
    assert isinstance(dynaflow_world.executor, InlineExecutor)
    assert isinstance(dynaflow_world.storage, MemoryStorage)
    SEEN["world"] = dynaflow_world


def test_it_was_closed_after_the_test():
    assert SEEN["world"].closed


def test_a_gate_left_closed(dynaflow_probe):
    dynaflow_probe.record("run", "x")
    SEEN["gate"] = dynaflow_probe.event("release")


def test_is_opened_and_the_probe_emptied(dynaflow_probe):
    assert SEEN["gate"].is_set()
    assert dynaflow_probe.calls == []


def test_the_world_opens_on_the_frozen_clock(dynaflow_world, dynaflow_clock):
    from dynaflow import Action

    class Nothing(Action):
        def run(self):
            pass

    plan = dynaflow_world.trigger(Nothing).wait(1)
    assert plan.created_at == T0
    assert dynaflow_clock.worlds == [dynaflow_world]
"""


def test_the_fixtures_in_a_project(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)


def test_dynaflow_url_is_overridden_in_a_conftest(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def dynaflow_url(tmp_path):
            return f"sqlite:///{tmp_path / 'app.db'}"
        """
    )
    pytester.makepyfile(
        test_sqlite="""
        def test_on_sqlite(dynaflow_world):
            assert dynaflow_world.url.startswith("sqlite:///")
            with dynaflow_world.transaction() as connection:
                assert connection is not None
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_the_plugin_can_be_turned_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_off="def test_off(dynaflow_world):\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:dynaflow", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'dynaflow_world' not found*"])
