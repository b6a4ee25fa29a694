"""Middleware chains: compose() order, stack ordering with before/after/replace, and errors."""

from __future__ import annotations

from typing import Any

import pytest

from dynaflow import ConfigurationError, DynaflowError, Middleware
from dynaflow.middleware import HOOKS, MiddlewareStack, compose


class Recording(Middleware):
    """Records ``name:enter`` / ``name:exit`` around ``run`` into ``log``."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def run(self, action: Any, call_next: Any, *args: Any) -> Any:
        self.log.append(f"{self.name}:enter")
        result = call_next(*args)
        self.log.append(f"{self.name}:exit")
        return result


class A(Middleware):
    pass


class B(Middleware):
    pass


class C(Middleware):
    pass


class D(Middleware):
    pass


def names(stack: MiddlewareStack) -> list[str]:
    return [type(m).__name__ for m in stack]


def test_compose_puts_the_first_middleware_outermost() -> None:
    log: list[str] = []

    def core(target: Any, value: int) -> int:
        log.append(f"core({target},{value})")
        return value * 2

    chain = compose([Recording("outer", log), Recording("inner", log)], "run", core)
    assert chain("act", 21) == 42
    assert log == ["outer:enter", "inner:enter", "core(act,21)", "inner:exit", "outer:exit"]


def test_a_middleware_can_change_arguments_and_results() -> None:
    class Double(Middleware):
        def plan(self, action: Any, call_next: Any, *args: Any, **kwargs: Any) -> Any:
            return call_next(*[a * 2 for a in args], **kwargs) + ["seen"]

    chain = compose([Double()], "plan", lambda target, *args, **kw: [*args, kw])
    assert chain("x", 1, 2, k=3) == [2, 4, {"k": 3}, "seen"]


def test_a_middleware_can_stop_the_chain_by_raising() -> None:
    class Refuse(Middleware):
        def finalize(self, action: Any, call_next: Any) -> Any:
            raise PermissionError("refused")

    called: list[Any] = []
    chain = compose([Refuse()], "finalize", called.append)
    with pytest.raises(PermissionError, match="refused"):
        chain("act")
    assert called == []


def test_hooks_a_middleware_does_not_override_are_left_out() -> None:
    def core(target: Any) -> str:
        return "core"

    assert compose([A(), B()], "run", core) is core


def test_compose_rejects_an_unknown_hook() -> None:
    with pytest.raises(ConfigurationError, match="unknown middleware hook 'walk'"):
        compose([A()], "walk", lambda target: None)


@pytest.mark.parametrize("hook", ["delay"])
def test_hooks_nothing_calls_yet_do_not_exist(hook: str) -> None:
    """delay comes with scheduled plans, which call it."""
    assert not hasattr(Middleware, hook)
    with pytest.raises(ConfigurationError, match=f"unknown middleware hook '{hook}'"):
        compose([A()], hook, lambda target: None)


def test_the_base_class_has_a_pass_through_hook_for_every_phase() -> None:
    assert HOOKS == (
        "plan", "run", "finalize", "plan_phase", "finalize_phase", "hook", "present"
    )  # fmt: skip
    assert all(callable(getattr(Middleware, hook)) for hook in HOOKS)
    base = Middleware()
    assert base.run("act", lambda *a: a, 1, 2) == (1, 2)
    assert base.plan("act", lambda *a, **k: (a, k), 1, k=2) == ((1,), {"k": 2})
    assert base.finalize("act", lambda: "done") == "done"
    assert base.plan_phase("ctx", lambda: "planned") == "planned"
    assert base.finalize_phase("ctx", lambda: "finalized") == "finalized"
    assert base.hook("act", lambda *a: a, "on_success", "plan") == ("on_success", "plan")
    assert base.present("cls", lambda view: view, {"input": {}}) == {"input": {}}


def test_use_appends_and_places_before_after_and_in_place_of() -> None:
    stack = MiddlewareStack([A, B])
    stack.use(C, before=B)
    assert names(stack) == ["A", "C", "B"]
    stack.use(D, after=A)
    assert names(stack) == ["A", "D", "C", "B"]
    replacement = Recording("r", [])
    stack.use(replacement, replace=C)
    assert names(stack) == ["A", "D", "Recording", "B"]
    assert list(stack)[2] is replacement


def test_an_instance_can_be_referenced_by_itself_or_by_its_class() -> None:
    first = A()
    stack = MiddlewareStack([first, B])
    stack.use(C, before=first)
    stack.use(D, after=B)
    assert names(stack) == ["C", "A", "B", "D"]


@pytest.mark.parametrize("where", ["before", "after", "replace"])
def test_a_reference_to_a_missing_middleware_raises_and_changes_nothing(where: str) -> None:
    stack = MiddlewareStack([A])
    with pytest.raises(ConfigurationError, match="'B': it is not in the stack \\(A\\)") as info:
        stack.use(C, **{where: B})
    assert isinstance(info.value, DynaflowError)
    assert names(stack) == ["A"]


def test_at_most_one_placement_and_no_duplicates() -> None:
    stack = MiddlewareStack([A, B])
    with pytest.raises(ConfigurationError, match="at most one of"):
        stack.use(C, before=A, after=B)
    with pytest.raises(ConfigurationError, match="A is already in the stack"):
        stack.use(A)
    assert names(stack) == ["A", "B"]


def test_only_middleware_can_be_registered() -> None:
    with pytest.raises(ConfigurationError, match="not a Middleware subclass or instance"):
        MiddlewareStack([object])
    with pytest.raises(ConfigurationError, match="not a Middleware"):
        MiddlewareStack().use(lambda action, call_next: call_next())  # type: ignore[arg-type]


def test_a_child_stack_extends_its_parent_and_sees_later_parent_changes() -> None:
    parent = MiddlewareStack([A])
    child = MiddlewareStack(parent=parent)
    child.use(B)
    child.use(C, before=A)  # may be placed relative to an inherited middleware
    assert names(child) == ["C", "A", "B"]
    parent.use(D)
    assert names(parent) == ["A", "D"]
    assert names(child) == ["C", "A", "D", "B"]


def test_remove_drops_a_middleware_and_a_missing_one_raises() -> None:
    stack = MiddlewareStack([A, B])
    stack.remove(A)
    assert names(stack) == ["B"]
    with pytest.raises(ConfigurationError, match="not in the stack"):
        stack.remove(C)
