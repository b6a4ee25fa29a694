"""The curated public API: what ``dynaflow`` exports, and where its errors live."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import dynaflow
from dynaflow import exceptions

#: exceptions that are control flow inside dynaflow, never raised to a user
INTERNAL = {
    "dynaflow.events.Suspend",  # a BaseException a suspending run() unwinds with
    # the fast write path hands a batch to the exact one
    "dynaflow.persistence.sql.fastpath.SlowPath",
}


def public_errors() -> list[type[BaseException]]:
    return [
        cls
        for _, cls in inspect.getmembers(exceptions, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == exceptions.__name__
    ]


def test_every_error_is_exported_and_derives_from_dynaflow_error() -> None:
    errors = public_errors()
    assert len(errors) >= 20
    for cls in errors:
        assert cls.__name__ in dynaflow.__all__, f"{cls.__name__} is not in dynaflow.__all__"
        assert getattr(dynaflow, cls.__name__) is cls
        assert issubclass(cls, dynaflow.DynaflowError), cls


def test_every_error_class_of_the_package_is_defined_in_exceptions() -> None:
    """``except dynaflow.DynaflowError`` catches whatever dynaflow raises on purpose: no error
    class hides in another module (InvalidInput lived in executor/steps.py)."""
    elsewhere = []
    for info in pkgutil.walk_packages(dynaflow.__path__, "dynaflow."):
        if ".migrations" in info.name or info.name == exceptions.__name__:
            continue  # alembic scripts, loaded by alembic only
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, BaseException)
                and cls.__module__ == module.__name__
                and f"{cls.__module__}.{cls.__qualname__}" not in INTERNAL
            ):
                elsewhere.append(f"{cls.__module__}.{cls.__qualname__}")
    assert elsewhere == []
    assert dynaflow.InvalidInput.__module__ == "dynaflow.exceptions"


def test_everything_in_all_exists_and_the_public_types_are_there() -> None:
    for name in dynaflow.__all__:
        assert hasattr(dynaflow, name), name
    assert len(set(dynaflow.__all__)) == len(dynaflow.__all__)
    for name in ("PlanFuture", "PhaseContext", "WorldRecord", "Triggered", "ExecutionPlan"):
        assert name in dynaflow.__all__
