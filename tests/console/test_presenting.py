"""What of an action reaches a page: the ``present`` middleware chain around the masking of
the keys an action declares secret."""

from __future__ import annotations

from typing import Any

import pytest

from dynaflow import Action, ConfigurationError, Middleware
from dynaflow.console.presenting import MASK, Presenter, mask
from dynaflow.execution_plan import ActionRecord
from dynaflow.middleware import MiddlewareStack


class Login(Action):
    secret_inputs = ("password", "db.credentials.token", "hosts.key")
    secret_outputs = ("session",)


class Tagged(Middleware):
    """Adds a marker to the view; records the order it ran in."""

    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    def present(self, action: Any, call_next: Any, view: dict[str, Any]) -> Any:
        self.calls.append(f"{self.name}:{action.__name__}")
        shown = call_next(view)
        shown.setdefault("tags", []).append(self.name)
        return shown


def record(cls: str, input: dict[str, Any], output: dict[str, Any] | None = None) -> ActionRecord:
    return ActionRecord(1, cls, input, output or {})


def test_mask_replaces_keys_and_dotted_paths_through_lists() -> None:
    data = {
        "password": "p",
        "db": {"credentials": {"token": "t", "user": "u"}},
        "hosts": [{"key": "k1", "name": "a"}, {"key": "k2"}, "plain"],
        "other": 1,
    }
    assert mask(data, Login.secret_inputs) == {
        "password": MASK,
        "db": {"credentials": {"token": MASK, "user": "u"}},
        "hosts": [{"key": MASK, "name": "a"}, {"key": MASK}, "plain"],
        "other": 1,
    }
    assert mask({"db": "not a dict"}, ("db.token",)) == {"db": "not a dict"}
    assert mask("text", ("x",)) == "text"


def test_secrets_are_masked_and_the_record_is_left_alone() -> None:
    stored = record(
        Login.action_class_name, {"password": "hunter2", "user": "bob"}, {"session": "s"}
    )
    shown = Presenter(MiddlewareStack()).present(stored)
    assert shown == {
        "action_class": Login.action_class_name,
        "input": {"password": MASK, "user": "bob"},
        "output": {"session": MASK},
    }
    assert stored.input["password"] == "hunter2"


def test_world_middleware_runs_outside_the_class_middleware() -> None:
    calls: list[str] = []

    class Audited(Login):
        middleware = [Tagged("class", calls)]

    world = MiddlewareStack([Tagged("world", calls)])
    shown = Presenter(world).present(record(Audited.action_class_name, {"password": "x"}))
    assert calls == ["world:Audited", "class:Audited"]
    assert shown["tags"] == ["class", "world"]
    assert shown["input"] == {"password": MASK}  # the class's masking is innermost


def test_an_unknown_class_is_presented_as_a_plain_action() -> None:
    calls: list[str] = []
    shown = Presenter(MiddlewareStack([Tagged("world", calls)])).present(
        record("gone.module.Missing", {"password": "x"})
    )
    assert calls == ["world:Action"]
    assert shown["input"] == {"password": "x"}  # nothing declared it secret


def test_a_middleware_added_later_is_used() -> None:
    calls: list[str] = []
    world = MiddlewareStack()
    presenter = Presenter(world)
    presenter.present(record(Login.action_class_name, {}))
    world.use(Tagged("late", calls))
    presenter.present(record(Login.action_class_name, {}))
    assert calls == ["late:Login"]


def test_a_middleware_must_return_the_view() -> None:
    class Broken(Middleware):
        def present(self, action: Any, call_next: Any, view: dict[str, Any]) -> Any:
            return "nothing"

    with pytest.raises(TypeError, match="must return the view dict"):
        Presenter(MiddlewareStack([Broken()])).present(record(Login.action_class_name, {}))


@pytest.mark.parametrize("keys", ["password", ("password", 3), ("",), 5])
def test_secret_keys_must_be_a_tuple_of_names(keys: Any) -> None:
    with pytest.raises(ConfigurationError, match="must be a tuple of key names"):
        type("Bad", (Action,), {"secret_inputs": keys})
