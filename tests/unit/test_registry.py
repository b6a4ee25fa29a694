"""The registry of action classes: names, resolution, subscriptions and plugin entry points."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from dynaflow import Action, ConfigurationError, DynaflowError, UnknownActionClass, registry


class Core(Action):
    def run(self) -> None:
        pass


class OtherCore(Action):
    pass


class Plugin(Action):
    subscribe = Core


class TwoWayPlugin(Action):
    subscribe = (Core, OtherCore)


class Plain(Action):
    pass


def test_classes_register_under_their_qualified_name() -> None:
    name = f"{__name__}.Core"
    assert Core.action_class_name == name
    assert registry.class_name(Core) == name
    assert registry.resolve(name) is Core
    assert registry.known()[name] is Core


def test_nested_classes_keep_their_qualname() -> None:
    class Outer:
        class Inner(Action):
            pass

    name = registry.class_name(Outer.Inner)
    assert name.endswith("test_nested_classes_keep_their_qualname.<locals>.Outer.Inner")
    assert registry.resolve(name) is Outer.Inner


def test_an_unknown_name_raises_a_clear_error() -> None:
    with pytest.raises(UnknownActionClass) as info:
        registry.resolve("nowhere.Missing")
    assert info.value.name == "nowhere.Missing"
    assert "'nowhere.Missing'" in str(info.value)
    assert "dynaflow.actions" in str(info.value)
    assert isinstance(info.value, DynaflowError)


def test_subscribers_are_listed_in_registration_order() -> None:
    assert registry.subscribers(Core) == [Plugin, TwoWayPlugin]
    assert registry.subscribers(OtherCore) == [TwoWayPlugin]
    assert registry.subscribers(Plain) == []


@pytest.mark.parametrize("target", [object, "Core", (Core, 3)])
def test_subscribing_to_something_that_is_not_an_action_class_raises(target: Any) -> None:
    with pytest.raises(ConfigurationError, match="subscribe must be an Action class"):

        class Bad(Action):
            subscribe = target


def test_the_phases_a_class_defines_are_detected() -> None:
    class RunOnly(Action):
        def run(self) -> None:
            pass

    class FinalizeOnly(Action):
        def finalize(self) -> None:
            pass

    assert (RunOnly.has_run, RunOnly.has_finalize) == (True, False)
    assert (FinalizeOnly.has_run, FinalizeOnly.has_finalize) == (False, True)
    assert (Plain.has_run, Plain.has_finalize) == (False, False)


def test_input_and_output_must_be_pydantic_models() -> None:
    with pytest.raises(ConfigurationError, match="Input must be a pydantic BaseModel"):

        class Bad(Action):
            Input = dict  # type: ignore[assignment]


class _EntryPoint:
    def __init__(self, name: str, load: Any) -> None:
        self.name, self.value, self.load = name, f"{name}_module", load


def test_entry_points_are_loaded_once_and_a_broken_plugin_is_logged_and_skipped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    loaded: list[str] = []

    def broken() -> None:
        raise ImportError("no module named plugin_deps")

    points = [_EntryPoint("broken", broken), _EntryPoint("good", lambda: loaded.append("good"))]
    groups: list[str] = []

    def fake_entry_points(*, group: str) -> list[_EntryPoint]:
        groups.append(group)
        return points

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    with caplog.at_level(logging.WARNING, logger="dynaflow.registry"):
        registry.load_entry_points()
        registry.load_entry_points()
    assert groups == ["dynaflow.actions"]
    assert loaded == ["good"]
    assert "could not load dynaflow plugin 'broken'" in caplog.text
    (record,) = [r for r in caplog.records if "broken" in r.getMessage()]
    assert record.levelno == logging.WARNING and record.exc_info is None  # one line


def test_resolve_loads_entry_points_before_giving_up(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"{__name__}.LatePlugin"

    def load() -> None:
        class LatePlugin(Action):
            pass

        LatePlugin.__qualname__ = "LatePlugin"
        registry.register(LatePlugin)

    monkeypatch.setattr(registry, "entry_points", lambda *, group: [_EntryPoint("late", load)])
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.setattr(registry, "_by_name", dict(registry._by_name))  # restored afterwards
    assert registry.resolve(name).__name__ == "LatePlugin"
